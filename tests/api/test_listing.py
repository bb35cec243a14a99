"""GET /v2/images: filters, sorting and pagination, as Glance answers them.

Visibility and sharing rules live in test_visibility.py; here every request is
made by the owner or by the admin, so every created image is a candidate.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import create_engine, text

from tests.conftest import as_project

OWNER = as_project("p-list")


def make(client, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:  # noqa: ANN001
    r = client.post("/v2/images", json=body, headers=headers if headers is not None else OWNER)
    assert r.status_code == 201, r.text
    return r.json()


def upload(client, image_id: str, data: bytes,  # noqa: ANN001
           headers: dict[str, str] | None = None) -> None:
    r = client.put(f"/v2/images/{image_id}/file", content=data,
                   headers={"Content-Type": "application/octet-stream",
                            **(headers if headers is not None else OWNER)})
    assert r.status_code == 204, r.text


def listing(client, params: Any = None,  # noqa: ANN001
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.get("/v2/images", params=params,
                   headers=headers if headers is not None else OWNER)
    assert r.status_code == 200, r.text
    return r.json()


def ids(client, params: Any = None, headers: dict[str, str] | None = None,  # noqa: ANN001
        ) -> list[str]:
    return [i["id"] for i in listing(client, params, headers)["images"]]


def assert_bad_request(client, params: Any, headers: dict[str, str] | None = None,  # noqa: ANN001
                       ) -> None:
    r = client.get("/v2/images", params=params,
                   headers=headers if headers is not None else OWNER)
    assert r.status_code == 400, (params, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), params
    body = r.json()
    assert body["code"].startswith("400") and body["message"], (params, body)


def walk(client, params: list[tuple[str, str]],  # noqa: ANN001
         headers: dict[str, str] | None = None) -> list[str]:
    """Follow ``next`` links from the first page to the last; every id seen, in order."""
    seen: list[str] = []
    doc = listing(client, params, headers)
    for _ in range(100):
        seen += [i["id"] for i in doc["images"]]
        if "next" not in doc:
            return seen
        url = urlsplit(doc["next"])
        assert url.path == "/v2/images"
        doc = listing(client, parse_qsl(url.query, keep_blank_values=True), headers)
    raise AssertionError("pagination did not end")


# ---------------------------------------------------------------- document shape


def test_empty_list_document(client):
    r = client.get("/v2/images", headers=OWNER)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"images": [], "first": "/v2/images", "schema": "/v2/schemas/images"}


# ---------------------------------------------------------------- filters


def test_name_filter_exact_and_operators(client):
    alpha = make(client, name="alpha")["id"]
    make(client, name="alphabet")
    colon = make(client, name="a:b")["id"]
    make(client)  # no name
    assert ids(client, {"name": "alpha"}) == [alpha]
    assert ids(client, {"name": "eq:alpha"}) == [alpha]
    # A colon introduces an operator: a literal colon needs the eq: prefix.
    assert ids(client, {"name": "eq:a:b"}) == [colon]
    assert_bad_request(client, {"name": "a:b"})
    assert_bad_request(client, {"name": "gt:alpha"})
    assert ids(client, {"name": "nothing-like-this"}) == []


def test_in_operator_with_quoted_commas(client):
    darkly = make(client, name="glass, darkly")["id"]
    share_me = make(client, name="share me")["id"]
    glass = make(client, name="glass")["id"]
    share = make(client, name="share")["id"]
    assert set(ids(client, {"name": 'in:"glass, darkly",share me'})) == {darkly, share_me}
    assert set(ids(client, {"name": "in:glass,share"})) == {glass, share}
    assert set(ids(client, {"name": 'in:glass,"share"'})) == {glass, share}
    assert ids(client, {"name": "in:"}) == []
    for bad in ('in:"glass', 'in:"glass"x,share', 'in:glass"x",share'):
        assert_bad_request(client, {"name": bad})


def test_in_operator_on_status_formats_and_id(client):
    raw = make(client, name="raw", disk_format="raw", container_format="bare")
    qcow = make(client, name="qcow", disk_format="qcow2", container_format="ovf")
    iso = make(client, name="iso", disk_format="iso", container_format="bare")
    upload(client, raw["id"], b"r" * 10)
    assert set(ids(client, {"status": "in:queued,active"})) == {raw["id"], qcow["id"], iso["id"]}
    assert ids(client, {"status": "in:active,saving"}) == [raw["id"]]
    assert set(ids(client, {"status": "queued"})) == {qcow["id"], iso["id"]}
    assert set(ids(client, {"disk_format": "in:raw,qcow2"})) == {raw["id"], qcow["id"]}
    assert ids(client, {"disk_format": "iso"}) == [iso["id"]]
    assert set(ids(client, {"container_format": "bare"})) == {raw["id"], iso["id"]}
    assert ids(client, {"container_format": "in:ovf,ova"}) == [qcow["id"]]
    wanted = {raw["id"], iso["id"]}
    assert set(ids(client, {"id": "in:" + ",".join(sorted(wanted))})) == wanted
    assert ids(client, {"id": qcow["id"]}) == [qcow["id"]]
    # Filters combine with AND.
    assert ids(client, {"disk_format": "in:raw,qcow2", "container_format": "ovf"}) == [qcow["id"]]


def test_size_range_filters(client):
    sizes = {}
    for n in (10, 100, 1000):
        image = make(client, name=f"s{n}", disk_format="raw", container_format="bare")
        upload(client, image["id"], b"x" * n)
        sizes[n] = image["id"]
    unsized = make(client, name="queued")["id"]
    assert set(ids(client, {"size_min": "100"})) == {sizes[100], sizes[1000]}
    assert set(ids(client, {"size_max": "100"})) == {sizes[10], sizes[100]}
    assert ids(client, {"size_min": "11", "size_max": "999"}) == [sizes[100]]
    assert ids(client, {"size_min": "1001"}) == []
    # An image without data has no size: any size bound leaves it out.
    assert unsized not in ids(client, {"size_min": "-1"})
    assert unsized in ids(client)
    for bad in ({"size_min": "abc"}, {"size_max": "1.5"}, {"size_min": ""}):
        assert_bad_request(client, bad)


def test_checksum_and_os_hash_value_filters(client):
    data = b"checksum me"
    image = make(client, name="summed", disk_format="raw", container_format="bare")
    upload(client, image["id"], data)
    other = make(client, name="other", disk_format="raw", container_format="bare")
    upload(client, other["id"], b"something else")
    assert ids(client, {"checksum": hashlib.md5(data).hexdigest()}) == [image["id"]]
    assert ids(client, {"os_hash_value": hashlib.sha512(data).hexdigest()}) == [image["id"]]
    assert ids(client, {"checksum": "0" * 32}) == []


def test_tag_filter_is_conjunctive(client):
    both = make(client, name="both", tags=["ready", "approved"])["id"]
    ready = make(client, name="ready", tags=["ready"])["id"]
    make(client, name="approved", tags=["approved"])
    make(client, name="untagged")
    assert set(ids(client, {"tag": "ready"})) == {both, ready}
    assert ids(client, [("tag", "ready"), ("tag", "approved")]) == [both]
    assert ids(client, [("tag", "ready"), ("tag", "missing")]) == []
    assert set(ids(client, {"tag": " ready "})) == {both, ready}  # Glance strips tags


def test_protected_filter_accepts_only_lowercase_booleans(client):
    locked = make(client, name="locked", protected=True)["id"]
    loose = make(client, name="loose")["id"]
    assert ids(client, {"protected": "true"}) == [locked]
    assert ids(client, {"protected": "false"}) == [loose]
    for bad in ("True", "yes", "1", ""):
        assert_bad_request(client, {"protected": bad})


def test_hidden_images_are_left_out_unless_asked_for(client):
    hidden = make(client, name="hidden", os_hidden=True)["id"]
    shown = make(client, name="shown")["id"]
    assert ids(client) == [shown]
    assert ids(client, {"os_hidden": "false"}) == [shown]
    assert ids(client, {"os_hidden": "true"}) == [hidden]
    assert ids(client, {"os_hidden": "TRUE"}) == [hidden]
    assert client.get(f"/v2/images/{hidden}", headers=OWNER).status_code == 200
    for bad in ("yes", "1", ""):
        assert_bad_request(client, {"os_hidden": bad})


def test_additional_property_filters(client):
    ubuntu = make(client, name="u", os_distro="ubuntu", os_version="24.04")["id"]
    old_ubuntu = make(client, name="u-old", os_distro="ubuntu", os_version="20.04")["id"]
    make(client, name="fedora", os_distro="fedora", os_version="24.04")
    make(client, name="plain")
    assert set(ids(client, {"os_distro": "ubuntu"})) == {ubuntu, old_ubuntu}
    assert ids(client, {"os_distro": "ubuntu", "os_version": "24.04"}) == [ubuntu]
    assert ids(client, {"os_distro": "debian"}) == []
    assert ids(client, {"hw_machine_type": "q35"}) == []


def test_owner_and_core_column_filters(client):
    mine = make(client, name="mine", min_ram=512, min_disk=2)["id"]
    theirs = make(client, as_project("p-other"), name="theirs", visibility="private")["id"]
    assert ids(client, {"owner": "p-list"}, headers={}) == [mine]
    assert ids(client, {"owner": "p-other"}, headers={}) == [theirs]
    # Core attributes other than the special ones filter on the column, not a property.
    assert ids(client, {"min_ram": "512"}) == [mine]
    assert ids(client, {"min_disk": "3"}) == []
    assert_bad_request(client, {"min_ram": "lots"})


def _next_second() -> None:
    """Sleep past the next whole second, so rendered timestamps differ."""
    now = datetime.now(UTC)
    time.sleep(1.05 - now.microsecond / 1_000_000)


def test_created_at_and_updated_at_comparisons(client):
    early = make(client, name="early")
    _next_second()
    late = make(client, name="late")
    boundary = late["created_at"]  # whole seconds: early < boundary <= late
    moment = datetime.strptime(boundary, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    as_plus_one = (moment.astimezone(UTC) + timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%S+01:00")
    both = {early["id"], late["id"]}
    for field in ("created_at", "updated_at"):
        assert ids(client, {field: f"gte:{boundary}"}) == [late["id"]]
        assert ids(client, {field: f"gt:{boundary}"}) == [late["id"]]
        assert ids(client, {field: f"lt:{boundary}"}) == [early["id"]]
        assert ids(client, {field: f"lte:{boundary}"}) == [early["id"]]
        # The same instant written with an offset means the same thing.
        assert ids(client, {field: f"gte:{as_plus_one}"}) == [late["id"]]
        assert set(ids(client, {field: "gt:2000-01-01T00:00:00Z"})) == both
        assert set(ids(client, {field: "neq:2000-01-01T00:00:00Z"})) == both
        assert ids(client, {field: "eq:2000-01-01T00:00:00Z"}) == []
        assert ids(client, {field: "2000-01-01T00:00:00Z"}) == []
        assert ids(client, {field: "lt:2000-01-01"}) == []
        for bad in ("gt:yesterday", "gt:", "foo:2000-01-01T00:00:00Z", "in:2000-01-01"):
            assert_bad_request(client, {field: bad})


def test_killed_images_are_never_listed(client, db_url):
    alive = make(client, name="alive")["id"]
    dead = make(client, name="dead")["id"]
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE images SET status = 'killed' WHERE id = :id"),
                         {"id": dead})
    finally:
        engine.dispose()
    assert ids(client) == [alive]
    assert ids(client, {"status": "killed"}) == []
    assert ids(client, {"visibility": "all"}, headers={}) == [alive]
    assert client.get(f"/v2/images/{dead}", headers=OWNER).json()["status"] == "killed"


def test_deleted_images_are_never_listed(client):
    kept = make(client, name="kept")["id"]
    gone = make(client, name="gone")["id"]
    assert client.delete(f"/v2/images/{gone}", headers=OWNER).status_code == 204
    assert ids(client) == [kept]
    assert ids(client, {"deleted": "true"}, headers={}) == [kept]


def test_invalid_query_values_are_json_400s(client):
    make(client, name="present")
    bad_queries: list[Any] = [
        {"limit": "-1"}, {"limit": "abc"}, {"limit": "1.5"}, {"limit": ""},
        {"visibility": "everyone"}, {"member_status": "maybe"},
        {"sort_key": "nonsense"}, {"sort_key": "name", "sort_dir": "sideways"},
        {"sort_dir": "up"}, {"sort": "name:up"}, {"sort": "nonsense:asc"}, {"sort": ""},
        {"sort": "name:asc", "sort_key": "id"}, {"sort": "name:asc", "sort_dir": "asc"},
        [("sort_key", "name"), ("sort_key", "id"), ("sort_dir", "asc"),
         ("sort_dir", "desc"), ("sort_dir", "asc")],
        [("sort_dir", "asc"), ("sort_dir", "desc")],
        {"size_min": "big"}, {"protected": "perhaps"}, {"os_hidden": "perhaps"},
        {"created_at": "gt:notatime"}, {"updated_at": "around:2020-01-01T00:00:00Z"},
        {"name": 'in:"unterminated'}, {"status": "like:active"},
        {"changes-since": "2020-01-01T00:00:00Z"},
        {"marker": "00000000-0000-0000-0000-000000000000"}, {"marker": "x" * 300},
    ]
    for params in bad_queries:
        assert_bad_request(client, params)


def test_odd_values_are_answered_never_server_errors(client):
    image = make(client, name="\U0001f600 smile", os_distro="\u00e9t\u00e9")["id"]
    answers = {
        "name=\U0001f600 smile": [image], "os_distro=\u00e9t\u00e9": [image],
        "name=" + "x" * 1000: [], "tag=" + "t" * 1000: [], "os_distro=" + "d" * 1000: [],
        "created_at=gt:0001-01-01T00:00:00Z": [image],
        "created_at=lt:9999-12-31T23:59:59Z": [image],
        "limit=99999999999999999999999": [image],
    }
    for query, expected in answers.items():
        key, _, value = query.partition("=")
        assert ids(client, {key: value}) == expected, query
    for key, value in (("name", "a\x00b"), ("os_distro", "\x00"), ("marker", "\x00"),
                       ("size_min", "9" * 30), ("min_ram", "9" * 30),
                       ("created_at", "gt:0001-01-01T00:00:00+01:00"),
                       ("marker", "\U0001f600" * 40)):
        assert_bad_request(client, {key: value})


# ---------------------------------------------------------------- sorting


def test_default_order_is_newest_first(client):
    created = [make(client, name=f"n{i}")["id"] for i in range(4)]
    assert ids(client) == created[::-1]
    assert ids(client, {"sort_dir": "asc"}) == created


def test_sort_key_and_sort_dir(client):
    by_name = {n: make(client, name=n, min_ram=r)["id"] for n, r in
               (("charlie", 1), ("alpha", 3), ("bravo", 2))}
    a, b, c = by_name["alpha"], by_name["bravo"], by_name["charlie"]
    assert ids(client, {"sort_key": "name", "sort_dir": "asc"}) == [a, b, c]
    assert ids(client, {"sort_key": "name"}) == [c, b, a]  # desc by default
    assert ids(client, {"sort": "name:asc"}) == [a, b, c]
    assert ids(client, {"sort": "name"}) == [c, b, a]
    assert ids(client, {"sort": " name : asc "}) == [a, b, c]
    assert ids(client, {"sort": "id:asc"}) == sorted([a, b, c])
    assert ids(client, {"sort_key": "id", "sort_dir": "desc"}) == sorted([a, b, c])[::-1]


def test_multiple_sort_keys(client):
    x1 = make(client, name="x", disk_format="raw")["id"]
    y1 = make(client, name="y", disk_format="raw")["id"]
    x2 = make(client, name="x", disk_format="qcow2")["id"]
    y2 = make(client, name="y", disk_format="qcow2")["id"]
    classic = [("sort_key", "disk_format"), ("sort_key", "name"),
               ("sort_dir", "asc"), ("sort_dir", "desc")]
    assert ids(client, classic) == [y2, x2, y1, x1]
    assert ids(client, {"sort": "disk_format:asc,name:desc"}) == [y2, x2, y1, x1]
    # One sort_dir applies to every sort_key.
    one_dir = [("sort_key", "name"), ("sort_key", "disk_format"), ("sort_dir", "asc")]
    assert ids(client, one_dir) == [x2, x1, y2, y1]
    assert ids(client, {"sort": "name:asc,disk_format:desc"}) == [x1, x2, y1, y2]


def test_ties_break_on_created_at_then_id(client):
    created = [make(client, name="same")["id"] for _ in range(4)]
    # Glance appends created_at and id; their direction is the single sort_dir
    # given, otherwise desc.
    assert ids(client, {"sort_key": "name", "sort_dir": "asc"}) == created
    assert ids(client, {"sort_key": "name"}) == created[::-1]
    assert ids(client, {"sort": "name:asc"}) == created
    assert ids(client, {"sort": "name:asc,status:asc"}) == created[::-1]
    assert ids(client, [("sort_key", "name"), ("sort_key", "status"),
                        ("sort_dir", "asc")]) == created
    # The order is stable: asking twice gives the same answer.
    assert ids(client, {"sort": "status:asc"}) == ids(client, {"sort": "status:asc"})


# ---------------------------------------------------------------- pagination


def test_links_first_next_schema(client):
    created = [make(client, name="page", disk_format="raw")["id"] for _ in range(3)]
    newest_first = created[::-1]
    doc = listing(client, [("limit", "2"), ("name", "page")])
    assert [i["id"] for i in doc["images"]] == newest_first[:2]
    assert doc["first"] == "/v2/images?limit=2&name=page"
    assert doc["schema"] == "/v2/schemas/images"
    assert doc["next"] == f"/v2/images?limit=2&name=page&marker={newest_first[1]}"
    doc = listing(client, [("limit", "2"), ("name", "page"), ("marker", newest_first[1])])
    assert [i["id"] for i in doc["images"]] == newest_first[2:]
    assert doc["first"] == "/v2/images?limit=2&name=page"
    assert "next" not in doc
    # A page exactly full still offers "next", which then leads to an empty page.
    doc = listing(client, {"limit": "3"})
    assert doc["next"] == f"/v2/images?limit=3&marker={newest_first[2]}"
    last = listing(client, {"limit": "3", "marker": newest_first[2]})
    assert last["images"] == [] and "next" not in last
    # limit=0 is valid: an empty page, and nothing next.
    doc = listing(client, {"limit": "0"})
    assert doc["images"] == [] and "next" not in doc
    # Special characters are URL-encoded in the links.
    doc = listing(client, {"name": "a b&c", "limit": "1"})
    assert doc["first"] == "/v2/images?name=a+b%26c&limit=1"
    assert "next" not in doc


def test_next_link_keeps_repeated_parameters(client):
    created = [make(client, name="t", tags=["x", "y"])["id"] for _ in range(3)]
    params = [("tag", "x"), ("tag", "y"), ("limit", "2")]
    doc = listing(client, params)
    assert doc["next"] == f"/v2/images?tag=x&tag=y&limit=2&marker={created[1]}"
    assert walk(client, params) == created[::-1]


def test_marker_must_be_a_visible_undeleted_image(client):
    visible = make(client, name="v")["id"]
    deleted = make(client, name="d")["id"]
    assert client.delete(f"/v2/images/{deleted}", headers=OWNER).status_code == 204
    secret = make(client, as_project("p-secret"), name="s", visibility="private")["id"]
    assert ids(client, {"marker": visible}) == []
    assert_bad_request(client, {"marker": deleted})
    assert_bad_request(client, {"marker": secret})
    assert_bad_request(client, {"marker": "not-an-image"})
    # The admin sees the private image, so it is a valid marker there.
    assert client.get("/v2/images", params={"marker": secret}).status_code == 200


def test_limit_is_clamped_to_api_limit_max(app_factory):
    client = app_factory(api_limit_max=3)
    created = [make(client, name=f"c{i}")["id"] for i in range(5)]
    doc = listing(client, {"limit": "10"})
    assert [i["id"] for i in doc["images"]] == created[::-1][:3]
    assert doc["next"] == f"/v2/images?limit=10&marker={created[2]}"
    doc = listing(client)  # limit_param_default (25) is clamped too
    assert len(doc["images"]) == 3
    assert walk(client, [("limit", "1000")]) == created[::-1]


def test_limit_param_default_applies(app_factory):
    client = app_factory(limit_param_default=2)
    created = [make(client, name=f"d{i}")["id"] for i in range(3)]
    doc = listing(client)
    assert [i["id"] for i in doc["images"]] == created[::-1][:2]
    assert doc["first"] == "/v2/images"
    assert doc["next"] == f"/v2/images?marker={created[1]}"
    assert len(listing(client, {"limit": "3"})["images"]) == 3
    assert walk(client, []) == created[::-1]


SORTS: list[list[tuple[str, str]]] = [
    [],
    [("sort", "name:asc")],
    [("sort", "name:desc")],
    [("sort", "size:asc")],
    [("sort", "size:desc,name:asc")],
    [("sort", "disk_format:asc,size:desc")],
    [("sort", "container_format:desc,name:desc")],
    [("sort", "status:asc,size:asc,name:asc")],
    [("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc"), ("sort_dir", "desc")],
    [("sort_key", "size"), ("sort_dir", "asc")],
    [("sort_key", "updated_at"), ("sort_dir", "asc")],
    [("sort_key", "created_at"), ("sort_dir", "desc")],
    [("sort_key", "id"), ("sort_dir", "asc")],
    [("sort_key", "virtual_size"), ("sort_key", "min_ram"), ("sort_dir", "desc")],
]


def test_walking_pages_yields_every_image_once_for_every_sort(client):
    # Ties and NULLs on purpose: no name, no size, no disk_format, repeated names.
    specs = [
        {"name": None}, {"name": "b"}, {"name": "b"}, {"name": "a", "disk_format": "raw"},
        {"disk_format": "qcow2"}, {"name": "c", "container_format": "bare"},
        {"name": "b", "disk_format": "raw", "container_format": "bare"}, {"name": ""},
    ]
    expected = []
    for n, spec in enumerate(specs):
        image = make(client, **{k: v for k, v in spec.items() if v is not None})
        if n % 3 == 0:  # some get data, hence a size
            patch = [{"op": "add", "path": f"/{attr}", "value": value}
                     for attr, value in (("disk_format", "raw"), ("container_format", "bare"))
                     if not image.get(attr)]
            if patch:
                r = client.patch(f"/v2/images/{image['id']}", json=patch, headers={
                    "Content-Type": "application/openstack-images-v2.1-json-patch", **OWNER})
                assert r.status_code == 200, r.text
            upload(client, image["id"], b"z" * (n % 2 + 1))
        expected.append(image["id"])
    for n, sort in enumerate(SORTS):
        whole = ids(client, [*sort, ("limit", "100")])
        assert sorted(whole) == sorted(expected), sort
        for limit in ("3", "1") if n % 4 == 1 else ("3",):
            seen = walk(client, [*sort, ("limit", limit)])
            assert seen == whole, (sort, limit)
