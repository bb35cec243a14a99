"""Locations and multi-store operations with Glance's semantics: DELETE
/v2/stores/{store}/{image}, PATCH /locations, the Images API 2.17 locations
calls, location order and the download's fallback to the next location.

File stores and the read-only http store against a local HTTP server (real
servers: tests/stores/test_multistore_locations.py)."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import as_project
from tests.imports.conftest import RAW, image, new_image, wait_task_done
from tests.stores.http_server import RangeServer

DATA = b"locations " * 20_000
ADMIN = {
    "X-Identity-Status": "Confirmed",
    "X-Project-Id": "admin-p",
    "X-User-Id": "admin-u",
    "X-Roles": "admin,member,reader",
}
OWNER = as_project("p1")
SERVICE = {
    "X-Identity-Status": "Confirmed",
    "X-Project-Id": "service-p",
    "X-User-Id": "nova",
    "X-Roles": "service,member,reader",
}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


class Web:
    """The http store's test server (HEAD and Range, as real web servers)."""

    def __init__(self, server: RangeServer):
        self.server = server
        self.port = int(server.url.rsplit(":", 1)[1])

    def data(self, path: str, body: bytes) -> str:
        return self.server.put(path.lstrip("/"), body)

    def url(self, path: str) -> str:
        return f"{self.server.url}/o/{path.lstrip('/')}"


@pytest.fixture
def web() -> Web:
    return Web(RangeServer.shared())


def config(tmp_path, web, *, weights: dict[str, int] | None = None, extra: str = "") -> str:
    names = ["fast", "cheap"]
    lines = [
        "[DEFAULT]",
        "enabled_backends = fast:file,cheap:file,web:http",
        "show_multiple_locations = true",
        "show_image_direct_url = true",
        "[glance_store]",
        "default_backend = fast",
    ]
    for name in names:
        lines += [
            f"[{name}]",
            f"filesystem_store_datadir = {tmp_path / 'stores' / name}",
            f"store_description = {name} store",
            f"weight = {(weights or {}).get(name, 0)}",
        ]
    lines += [
        "[web]",
        "store_description = web store",
        "[os_glance_staging_store]",
        f"filesystem_store_datadir = {tmp_path / 'st'}",
        "[os_glance_tasks_store]",
        f"filesystem_store_datadir = {tmp_path / 'tk'}",
        "[import_filtering_opts]",
        "allowed_hosts = [127.0.0.1]",
        f"allowed_ports = [80,443,{web.port}]",
    ]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def app(make_app, tmp_path, web):
    return make_app(config(tmp_path, web))


def uploaded(client, store: str = "fast", headers: dict | None = None) -> str:
    image_id = new_image(client, headers=headers or OWNER)
    r = client.put(
        f"/v2/images/{image_id}/file",
        content=DATA,
        headers={"Content-Type": RAW, "X-Image-Meta-Store": store, **(headers or OWNER)},
    )
    assert r.status_code == 204, r.text
    return image_id


def copied(client, image_id: str, store: str) -> None:
    r = client.post(
        f"/v2/images/{image_id}/import",
        headers=ADMIN,
        json={"method": {"name": "copy-image"}, "stores": [store]},
    )
    assert r.status_code == 202, r.text
    assert wait_task_done(client, image_id)["status"] == "success"


def patch(client, image_id: str, ops: list, headers: dict | None = None):
    return client.patch(f"/v2/images/{image_id}", json=ops, headers={**PATCH, **(headers or OWNER)})


# ---------------------------------------------------------------- DELETE /v2/stores


def test_delete_from_store(app, tmp_path):
    image_id = uploaded(app)
    copied(app, image_id, "cheap")
    assert image(app, image_id, OWNER)["stores"] == "fast,cheap"
    # delete_image_location is admin-only by default; the owner sees it exists: 403
    r = app.delete(f"/v2/stores/fast/{image_id}", headers=OWNER)
    assert r.status_code == 403
    # another project does not even see the image: 404
    r = app.delete(f"/v2/stores/fast/{image_id}", headers=as_project("p2"))
    assert r.status_code == 404
    assert app.delete(f"/v2/stores/nowhere/{image_id}", headers=ADMIN).status_code == 409
    assert app.delete(f"/v2/stores/web/{image_id}", headers=ADMIN).status_code == 404
    r = app.delete(f"/v2/stores/fast/{image_id}", headers=ADMIN)
    assert r.status_code == 204, r.text
    assert not (tmp_path / "stores" / "fast" / image_id).exists()
    doc = image(app, image_id, OWNER)
    assert doc["stores"] == "cheap"
    assert [loc["metadata"]["store"] for loc in doc["locations"]] == ["cheap"]
    # the last copy stays: 403
    r = app.delete(f"/v2/stores/cheap/{image_id}", headers=ADMIN)
    assert r.status_code == 403
    assert "only store" in r.json()["message"]
    assert app.get(f"/v2/images/{image_id}/file", headers=OWNER).content == DATA


def test_delete_from_store_not_active_and_single_store(app, make_app, tmp_path):
    image_id = new_image(app, headers=OWNER)
    assert app.delete(f"/v2/stores/fast/{image_id}", headers=ADMIN).status_code == 409
    single = make_app("")
    assert single.delete(f"/v2/stores/fast/{image_id}", headers=ADMIN).status_code == 404


# ---------------------------------------------------------------- showing locations


def test_locations_order_by_weight_and_deactivated(make_app, tmp_path, web):
    client = make_app(config(tmp_path, web, weights={"cheap": 10, "fast": 1}))
    image_id = uploaded(client, "fast")
    copied(client, image_id, "cheap")
    doc = image(client, image_id, OWNER)
    assert [loc["metadata"]["store"] for loc in doc["locations"]] == ["cheap", "fast"]
    assert doc["direct_url"] == doc["locations"][0]["url"]
    assert doc["stores"] == "cheap,fast"
    # get_image_location: another project sees a public image but not its locations
    assert (
        patch(
            client, image_id, [{"op": "replace", "path": "/visibility", "value": "public"}], ADMIN
        ).status_code
        == 200
    )
    other = image(client, image_id, as_project("p2"))
    assert other["locations"] == [] and "direct_url" not in other
    assert other["stores"] == "cheap,fast"
    assert (
        client.post(f"/v2/images/{image_id}/actions/deactivate", headers=ADMIN).status_code == 204
    )
    hidden = image(client, image_id, OWNER)
    assert hidden["locations"] == [] and "direct_url" not in hidden and "stores" not in hidden


def test_store_type_strategy(make_app, tmp_path, web):
    extra = (
        "[DEFAULT]\nlocation_strategy = store_type\n"
        "[store_type_location_strategy]\nstore_type_preference = http,file\n"
    )
    client = make_app(config(tmp_path, web, extra=extra))
    image_id = uploaded(client, "fast")
    url = web.data("/same", DATA)
    r = patch(
        client,
        image_id,
        [{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}],
    )
    assert r.status_code == 200, r.text
    stores = [loc["metadata"]["store"] for loc in image(client, image_id, OWNER)["locations"]]
    assert stores == ["web", "fast"]


# ---------------------------------------------------------------- PATCH /locations


def test_patch_add_location_activates_queued_image(app, web):
    image_id = new_image(app, headers=OWNER)
    url = web.data("/img", DATA)
    md5 = hashlib.md5(DATA).hexdigest()
    sha = hashlib.sha512(DATA).hexdigest()
    value = {
        "url": url,
        "metadata": {"foo": "bar"},
        "validation_data": {"checksum": md5, "os_hash_algo": "sha512", "os_hash_value": sha},
    }
    r = patch(app, image_id, [{"op": "add", "path": "/locations/-", "value": value}])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "active" and doc["size"] == len(DATA)
    assert doc["checksum"] == md5 and doc["os_hash_value"] == sha
    assert doc["locations"] == [{"url": url, "metadata": {"foo": "bar", "store": "web"}}]
    assert doc["stores"] == "web"
    assert app.get(f"/v2/images/{image_id}/file", headers=OWNER).content == DATA
    # a different value for a hash already set: 409; the same one: accepted
    second = {
        "url": url + "#2",
        "metadata": {},
        "validation_data": {"checksum": "2" * 32, "os_hash_algo": "sha512", "os_hash_value": sha},
    }
    r = patch(app, image_id, [{"op": "add", "path": "/locations/-", "value": second}])
    assert r.status_code == 409
    second["validation_data"]["checksum"] = md5
    r = patch(app, image_id, [{"op": "add", "path": "/locations/-", "value": second}])
    assert r.status_code == 200, r.text
    assert len(r.json()["locations"]) == 2
    # duplicate: 400; remove one: 200; the last one stays: 403
    r = patch(
        app,
        image_id,
        [{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {"foo": "bar"}}}],
    )
    assert r.status_code == 400
    r = patch(app, image_id, [{"op": "remove", "path": "/locations/1"}], ADMIN)
    assert r.status_code == 200, r.text
    assert [loc["url"] for loc in r.json()["locations"]] == [url]
    r = patch(app, image_id, [{"op": "remove", "path": "/locations/0"}], ADMIN)
    assert r.status_code == 403
    # remove is delete_image_location: admin only by default
    r = patch(app, image_id, [{"op": "remove", "path": "/locations/0"}])
    assert r.status_code == 403


def test_patch_replace_locations(app, web):
    image_id = uploaded(app)
    doc = image(app, image_id, OWNER)
    locs = doc["locations"]
    locs[0]["metadata"]["date"] = "2015-10-15"
    r = patch(app, image_id, [{"op": "replace", "path": "/locations", "value": locs}])
    assert r.status_code == 200, r.text
    assert r.json()["locations"][0]["metadata"] == {"date": "2015-10-15", "store": "fast"}
    other = web.data("/other", DATA)
    r = patch(
        app,
        image_id,
        [{"op": "replace", "path": "/locations", "value": [{"url": other, "metadata": {}}]}],
    )
    assert r.status_code == 400
    r = patch(app, image_id, [{"op": "replace", "path": "/locations", "value": []}])
    assert r.status_code == 403


def test_patch_location_refusals(make_app, tmp_path, web):
    client = make_app(config(tmp_path, web, extra="[DEFAULT]\nimage_location_quota = 1\n"))
    image_id = new_image(client, headers=OWNER)
    add = [{"op": "add", "path": "/locations/-"}]
    for url in (
        "gopher://info.cern.ch",
        f"file://{tmp_path}/x",
        web.url("/missing"),  # no data there
        "http://127.0.0.2:9/x",  # loopback, not in allowed_hosts
        "http://169.254.169.254/latest/meta-data",
    ):
        r = patch(client, image_id, [{**add[0], "value": {"url": url, "metadata": {}}}])
        assert r.status_code == 400, (url, r.text)
    url = web.data("/a", DATA)
    r = patch(
        client,
        image_id,
        [{"op": "add", "path": "/locations/7", "value": {"url": url, "metadata": {}}}],
    )
    assert r.status_code == 200, r.text  # Glance inserts at any index (list.insert)
    r = patch(client, image_id, [{**add[0], "value": {"url": url + "#b", "metadata": {}}}])
    assert r.status_code == 413
    assert image(client, image_id, OWNER)["status"] == "active"


def test_patch_locations_need_show_multiple_locations(make_app, tmp_path, web):
    client = make_app(config(tmp_path, web), show_multiple_locations=False)
    image_id = new_image(client, headers=OWNER)
    r = patch(
        client,
        image_id,
        [
            {
                "op": "add",
                "path": "/locations/-",
                "value": {"url": web.data("/a", DATA), "metadata": {}},
            }
        ],
    )
    assert r.status_code == 403
    assert "invisible" in r.json()["message"]


# ---------------------------------------------------------------- Images API 2.17


def test_add_location_with_validation_data(app, web):
    url = web.data("/img", DATA)
    sha256 = hashlib.sha256(DATA).hexdigest()
    image_id = new_image(app, headers=OWNER)
    bad = [
        {"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab" * 10}},
        {"url": url, "validation_data": {"os_hash_value": sha256}},
        {"url": url, "validation_data": {"os_hash_algo": "sha123", "os_hash_value": sha256}},
        {"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": sha256}},
        {
            "url": url,
            "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha256, "x": 1},
        },
        {"validation_data": {}},
    ]
    for body in bad:
        r = app.post(f"/v2/images/{image_id}/locations", json=body, headers=OWNER)
        assert r.status_code == 400, (body, r.text)
    body = {"url": url, "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha256}}
    r = app.post(f"/v2/images/{image_id}/locations", json=body, headers=OWNER)
    assert r.status_code == 202, r.text
    assert wait_task_done(app, image_id)["status"] == "success"
    doc = image(app, image_id, OWNER)
    assert doc["status"] == "active" and doc["os_hash_algo"] == "sha256"
    assert doc["os_hash_value"] == sha256 and doc["checksum"] == hashlib.md5(DATA).hexdigest()
    assert doc["stores"] == "web" and doc["size"] == len(DATA)
    # only a queued image
    r = app.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=OWNER)
    assert r.status_code == 409
    # GET: services only, a bare list
    assert app.get(f"/v2/images/{image_id}/locations", headers=OWNER).status_code == 403
    r = app.get(f"/v2/images/{image_id}/locations", headers=SERVICE)
    assert r.status_code == 404  # the service's project does not see a private image
    r = app.get(f"/v2/images/{image_id}/locations", headers={**SERVICE, "X-Project-Id": "p1"})
    assert r.status_code == 200, r.text
    assert r.json() == [{"url": url, "metadata": {"store": "web"}}]


def test_add_location_wrong_hash_goes_back_to_queued(app, web):
    url = web.data("/img", DATA)
    image_id = new_image(app, headers=OWNER)
    body = {
        "url": url,
        "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "beefdead" * 16},
    }
    assert app.post(f"/v2/images/{image_id}/locations", json=body, headers=OWNER).status_code == 202
    assert wait_task_done(app, image_id)["status"] == "failure"
    doc = image(app, image_id, OWNER)
    assert doc["status"] == "queued"
    assert doc["checksum"] is None and doc["os_hash_algo"] is None
    assert doc["stores"] == "web"  # as Glance: an http location stays


def test_add_location_without_validation_data(app, web):
    url = web.data("/img", DATA)
    image_id = new_image(app, headers=OWNER)
    assert (
        app.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=OWNER).status_code
        == 202
    )
    assert wait_task_done(app, image_id)["status"] == "success"
    doc = image(app, image_id, OWNER)
    assert doc["status"] == "active" and doc["os_hash_algo"] == "sha512"
    assert doc["os_hash_value"] == hashlib.sha512(DATA).hexdigest()


def test_add_location_without_secure_hash(make_app, tmp_path, web):
    client = make_app(config(tmp_path, web), do_secure_hash=False)
    url = web.data("/img", DATA)
    image_id = new_image(client, headers=OWNER)
    body = {
        "url": url,
        "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "beefdead" * 16},
    }
    assert (
        client.post(f"/v2/images/{image_id}/locations", json=body, headers=OWNER).status_code == 202
    )
    assert wait_task_done(client, image_id)["status"] == "success"
    doc = image(client, image_id, OWNER)
    assert doc["status"] == "active" and doc["os_hash_value"] == "beefdead" * 16
    assert doc["checksum"] is None


def test_add_location_member_limited_to_http(app, tmp_path):
    donor = uploaded(app, "cheap")
    url = image(app, donor, OWNER)["locations"][0]["url"]
    image_id = new_image(app, headers=OWNER)
    r = app.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=OWNER)
    assert r.status_code == 403
    assert "http store" in r.json()["message"]


# ---------------------------------------------------------------- download fallback


def test_download_falls_back_to_next_location(make_app, tmp_path, web, caplog):
    client = make_app(config(tmp_path, web, weights={"fast": 10, "cheap": 1}))
    image_id = uploaded(client, "fast")
    copied(client, image_id, "cheap")
    (tmp_path / "stores" / "fast" / image_id).unlink()  # lost behind Glimpse's back
    r = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert r.status_code == 200 and r.content == DATA
    r = client.get(f"/v2/images/{image_id}/file", headers={**OWNER, "Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == DATA[10:20]
    assert any("next location" in rec.getMessage() for rec in caplog.records)
    (tmp_path / "stores" / "cheap" / image_id).unlink()
    r = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert r.status_code == 404


# ---------------------------------------------------------------- lock and recovery


def _location_task(client, image_id: str, status: str, worker: str, url: str) -> str:
    import uuid

    from glimpse.db import tasks_repo
    from glimpse.imports.tasks import host_identity

    rt = client.runtime
    task_id = str(uuid.uuid4())
    with rt.db.write() as session, session.begin():
        tasks_repo.create_task(session, {
            "id": task_id, "type": "location_import", "status": status, "owner": "p1",
            "image_id": image_id,
            "input": {"image_id": image_id, "loc_url": url, "validation_data": {}},
            "host": host_identity(rt), "worker": worker})
        assert tasks_repo.acquire_import_lock(session, image_id, task_id)
    return task_id


def test_add_location_waits_for_the_import_lock(app, web):
    url = web.data("/img", DATA)
    image_id = new_image(app, headers=OWNER)
    _location_task(app, image_id, "processing", app.runtime.runner.worker, url)
    r = app.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=OWNER)
    assert r.status_code == 409


def test_interrupted_location_import_is_reverted_at_start(make_app, tmp_path, web):
    from glimpse.db import repository as repo
    from tests.imports.test_lock_and_recovery import dead_worker

    client = make_app(config(tmp_path, web))
    url = web.data("/img", DATA)
    image_id = new_image(client, headers=OWNER)
    task_id = _location_task(client, image_id, "processing", dead_worker(), url)
    with client.runtime.db.write() as session, session.begin():
        assert repo.set_status(session, image_id, "queued", "importing",
                               os_hash_algo="sha512")
    restarted = make_app(config(tmp_path, web))
    assert restarted.get(f"/v2/tasks/{task_id}", headers=ADMIN).json()["status"] == "failure"
    doc = image(restarted, image_id, OWNER)
    assert doc["status"] == "queued" and doc["os_hash_algo"] is None
    assert "os_glance_import_task" not in doc
