"""PATCH /v2/images/{id}: both JSON-patch media types, with Glance's answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from starlette.testclient import TestClient

from glimpse.db.models import Image
from tests.conftest import as_project

V21 = "application/openstack-images-v2.1-json-patch"
V20 = "application/openstack-images-v2.0-json-patch"
ACCEPT_PATCH = f"{V20}, {V21}"
OWNER = as_project("p-owner")
OTHER = as_project("p-other")


def create(client: TestClient, headers: dict[str, str] = OWNER, **body: Any) -> dict[str, Any]:
    r = client.post("/v2/images", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def patch(client: TestClient, image_id: str, ops: Any, media_type: str | None = V21,
          headers: dict[str, str] = OWNER) -> Any:
    all_headers = dict(headers)
    if media_type is not None:
        all_headers["Content-Type"] = media_type
    return client.patch(f"/v2/images/{image_id}", json=ops, headers=all_headers)


def show(client: TestClient, image_id: str) -> dict[str, Any]:
    r = client.get(f"/v2/images/{image_id}", headers=OWNER)
    assert r.status_code == 200
    return r.json()


def assert_error(r: Any, status: int, text: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "title", "message"}
    if text is not None:
        assert text in body["message"], body["message"]


def test_v21_add_replace_remove(client):
    image = create(client, name="before", os_distro="cirros")
    r = patch(client, image["id"], [
        {"op": "add", "path": "/hw_disk_bus", "value": "scsi"},
        {"op": "replace", "path": "/os_distro", "value": "ubuntu"},
        {"op": "replace", "path": "/name", "value": "after"},
        {"op": "add", "path": "/min_ram", "value": 1024},
        {"op": "replace", "path": "/min_disk", "value": 3},
        {"op": "replace", "path": "/protected", "value": True},
        {"op": "replace", "path": "/os_hidden", "value": True},
        {"op": "replace", "path": "/disk_format", "value": "qcow2"},
        {"op": "add", "path": "/container_format", "value": "bare"},
    ])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    expected = {"hw_disk_bus": "scsi", "os_distro": "ubuntu", "name": "after", "min_ram": 1024,
                "min_disk": 3, "protected": True, "os_hidden": True, "disk_format": "qcow2",
                "container_format": "bare"}
    for key, value in expected.items():
        assert doc[key] == value, key
    assert doc["schema"] == "/v2/schemas/image" and doc["status"] == "queued"
    assert show(client, image["id"]) == doc

    # In v2.1 "add" of an existing property replaces it.
    r = patch(client, image["id"], [{"op": "add", "path": "/os_distro", "value": "fedora"},
                                     {"op": "remove", "path": "/hw_disk_bus"},
                                     {"op": "replace", "path": "/name", "value": None}])
    assert r.status_code == 200
    doc = r.json()
    assert doc["os_distro"] == "fedora" and "hw_disk_bus" not in doc and doc["name"] is None
    # Operations apply in order.
    r = patch(client, image["id"], [{"op": "add", "path": "/tmp", "value": "1"},
                                     {"op": "replace", "path": "/tmp", "value": "2"},
                                     {"op": "remove", "path": "/tmp"},
                                     {"op": "add", "path": "/kept", "value": "3"}])
    assert r.status_code == 200
    assert "tmp" not in r.json() and r.json()["kept"] == "3"


def test_v20_media_type(client):
    image = create(client, name="old")
    r = patch(client, image["id"], [{"add": "/foo", "value": "1"},
                                     {"replace": "/name", "value": "new"}], V20)
    assert r.status_code == 200
    assert r.json()["foo"] == "1" and r.json()["name"] == "new"
    # v2.0 "add" refuses anything that already exists, base attributes included.
    assert_error(patch(client, image["id"], [{"add": "/foo", "value": "2"}], V20), 409,
                 "Property foo already present.")
    assert_error(patch(client, image["id"], [{"add": "/name", "value": "x"}], V20), 409,
                 "Property name already present.")
    r = patch(client, image["id"], [{"replace": "/foo", "value": "2"}, {"remove": "/foo"}], V20)
    assert r.status_code == 200 and "foo" not in r.json()
    assert_error(patch(client, image["id"], [{"replace": "/nope", "value": "x"}], V20), 409)
    assert_error(patch(client, image["id"], [{"add": "/a", "remove": "/b", "value": "x"}],
                       V20), 400, 'only one member named "add", "remove", or "replace"')
    assert_error(patch(client, image["id"], [{"path": "/a", "value": "x"}], V20), 400,
                 'exactly one member named "add", "remove", or "replace"')
    # The v2.1 form is not understood under the v2.0 media type.
    assert_error(patch(client, image["id"], [{"op": "add", "path": "/a", "value": "x"}],
                       V20), 400)
    assert show(client, image["id"])["name"] == "new"


def test_other_media_types_are_415(client):
    image = create(client, name="same")
    for media_type in ("application/json", "application/json-patch+json", "text/plain",
                       "application/openstack-images-v2.2-json-patch", None):
        r = patch(client, image["id"], [{"op": "replace", "path": "/name", "value": "x"}],
                  media_type)
        assert_error(r, 415, "Image PATCH expects Content-Type one of")
        assert r.headers["accept-patch"] == ACCEPT_PATCH
    # Parameters of the media type are ignored, as WebOb does.
    r = patch(client, image["id"], [{"op": "replace", "path": "/name", "value": "y"}],
              f"{V21}; charset=UTF-8")
    assert r.status_code == 200 and "accept-patch" not in r.headers
    assert show(client, image["id"])["name"] == "y"


def test_missing_properties_are_409(client):
    image = create(client, present="1")
    assert_error(patch(client, image["id"], [{"op": "replace", "path": "/nope", "value": "x"}]),
                 409, "Property nope does not exist.")
    assert_error(patch(client, image["id"], [{"op": "remove", "path": "/nope"}]), 409,
                 "Property nope does not exist.")
    assert show(client, image["id"])["present"] == "1"


def test_forbidden_attributes_are_403(client):
    image = create(client, name="keep", tags=["t"])
    for name in ("name", "visibility", "protected", "os_hidden", "tags", "min_ram", "min_disk",
                 "disk_format", "container_format", "owner"):
        assert_error(patch(client, image["id"], [{"op": "remove", "path": f"/{name}"}]), 403,
                     f"Property {name} may not be removed.")
    read_only = {"status": "active", "checksum": "0" * 32, "size": 1, "virtual_size": 1,
                 "id": "00000000-0000-0000-0000-000000000000",
                 "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
                 "os_hash_algo": "sha512", "os_hash_value": "0", "self": "x", "file": "x",
                 "schema": "x", "direct_url": "x"}
    for name, value in read_only.items():
        for op in ({"op": "replace", "path": f"/{name}", "value": value},
                   {"op": "add", "path": f"/{name}", "value": value},
                   {"op": "remove", "path": f"/{name}"}):
            assert_error(patch(client, image["id"], [op]), 403,
                         f"Attribute '{name}' is read-only.")
    for name in ("os_glance_import_task", "os_glance", "location", "deleted", "deleted_at"):
        for op in ({"op": "add", "path": f"/{name}", "value": "x"},
                   {"op": "remove", "path": f"/{name}"}):
            assert_error(patch(client, image["id"], [op]), 403, f"Attribute '{name}' is reserved.")
    after = show(client, image["id"])
    assert after["name"] == "keep" and after["tags"] == ["t"] and after["status"] == "queued"
    assert "os_glance" not in after and "location" not in after


def test_values_are_validated(client):
    image = create(client, name="valid")
    bad_ops = [
        {"op": "replace", "path": "/name", "value": "n" * 256},
        {"op": "replace", "path": "/protected", "value": "yes"},
        {"op": "replace", "path": "/min_ram", "value": "1G"},
        {"op": "replace", "path": "/visibility", "value": "everyone"},
        {"op": "replace", "path": "/disk_format", "value": "floppy"},
        {"op": "replace", "path": "/container_format", "value": "crate"},
        {"op": "add", "path": "/os_distro", "value": 7},
        {"op": "add", "path": "/os_distro", "value": None},
        {"op": "replace", "path": "/tags", "value": "a,b"},
        {"op": "replace", "path": "/tags", "value": ["t" * 256]},
    ]
    for op in bad_ops:
        assert_error(patch(client, image["id"], [op]), 400,
                     "Provided object does not match schema 'image'")
    for name in ("min_ram", "min_disk"):
        assert_error(patch(client, image["id"], [{"op": "replace", "path": f"/{name}",
                                                  "value": -1}]),
                     400, f"Invalid value '-1' for parameter '{name}': Cannot be a negative value")
        assert_error(patch(client, image["id"], [{"op": "replace", "path": f"/{name}",
                                                  "value": 2**40}]), 400)
    assert_error(patch(client, image["id"], [{"op": "add", "path": f"/{'k' * 256}",
                                              "value": "v"}]),
                 400, "Custom property should not be greater than 255 characters.")
    assert_error(patch(client, image["id"], [{"op": "add", "path": "/x", "value": "a\u0000"}]),
                 400)
    after = show(client, image["id"])
    assert after["name"] == "valid" and after["min_ram"] == 0 and "x" not in after


def test_tags_replace(client):
    image = create(client, tags=["old"])
    r = patch(client, image["id"], [{"op": "replace", "path": "/tags", "value": ["b", "a", "b"]}])
    assert r.status_code == 200 and sorted(r.json()["tags"]) == ["a", "b"]
    # "add" of the whole list replaces it too (the attribute always exists).
    r = patch(client, image["id"], [{"op": "add", "path": "/tags", "value": ["c"]}])
    assert r.status_code == 200 and r.json()["tags"] == ["c"]
    r = patch(client, image["id"], [{"op": "replace", "path": "/tags", "value": []}])
    assert r.status_code == 200 and r.json()["tags"] == []
    # Appending one tag through a pointer is not supported by Glance.
    assert_error(patch(client, image["id"], [{"op": "add", "path": "/tags/-", "value": "d"}]),
                 400, "Invalid JSON pointer for this resource: '/tags/-'")
    assert show(client, image["id"])["tags"] == []


def test_formats_are_fixed_once_data_arrives(client):
    image = create(client, disk_format="raw", container_format="bare")
    r = client.put(f"/v2/images/{image['id']}/file", content=b"data",
                   headers={**OWNER, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    for name, value in (("disk_format", "qcow2"), ("container_format", "ovf"),
                        ("disk_format", "raw")):
        assert_error(patch(client, image["id"], [{"op": "replace", "path": f"/{name}",
                                                  "value": value}]),
                     403, f"Attribute {name} can be only replaced for a queued image.")
    r = patch(client, image["id"], [{"op": "replace", "path": "/name", "value": "renamed"}])
    assert r.status_code == 200
    doc = r.json()
    assert (doc["disk_format"], doc["container_format"], doc["name"]) == \
        ("raw", "bare", "renamed")


def test_visibility_and_owner_changes(client):
    image = create(client, visibility="private")
    assert_error(patch(client, image["id"], [{"op": "replace", "path": "/visibility",
                                              "value": "public"}]), 403, "publicize_image")
    for visibility in ("community", "shared", "private"):
        r = patch(client, image["id"], [{"op": "replace", "path": "/visibility",
                                         "value": visibility}])
        assert r.status_code == 200 and r.json()["visibility"] == visibility
    # Glance refuses any owner replace by a non-admin, even to the same owner.
    for owner in ("p-other", "p-owner"):
        assert_error(patch(client, image["id"], [{"op": "replace", "path": "/owner",
                                                  "value": owner}]),
                     403, "Owner can't be updated by non admin.")
    assert_error(patch(client, image["id"], [{"op": "add", "path": "/owner",
                                              "value": "p-other"}]), 403)
    assert show(client, image["id"])["owner"] == "p-owner"
    # An admin may do both.
    r = patch(client, image["id"], [{"op": "replace", "path": "/visibility", "value": "public"},
                                     {"op": "replace", "path": "/owner", "value": "p-other"}],
              headers={})
    assert r.status_code == 200
    assert (r.json()["visibility"], r.json()["owner"]) == ("public", "p-other")


def test_updated_at_moves_forward(client):
    image = create(client, name="clock")
    past = "2001-02-03T04:05:06Z"
    runtime = client.app.state.runtime
    with runtime.db.write() as session, session.begin():
        session.execute(update(Image).where(Image.id == image["id"])
                        .values(updated_at=datetime(2001, 2, 3, 4, 5, 6)))
    assert show(client, image["id"])["updated_at"] == past
    # An empty patch changes nothing, as in Glance.
    r = patch(client, image["id"], [])
    assert r.status_code == 200 and r.json()["updated_at"] == past
    r = patch(client, image["id"], [{"op": "replace", "path": "/name", "value": "tick"}])
    assert r.status_code == 200
    assert r.json()["updated_at"] > past
    assert r.json()["created_at"] == image["created_at"]
    assert show(client, image["id"])["updated_at"] == r.json()["updated_at"]


def test_malformed_requests_are_400(client):
    image = create(client, name="intact")
    url = f"/v2/images/{image['id']}"
    headers = {**OWNER, "Content-Type": V21}
    for raw in (b"", b"{not json", b"[{]", b"\xff\xfe"):
        assert_error(client.patch(url, content=raw, headers=headers), 400)
    cases: list[tuple[Any, str]] = [
        ({"op": "add", "path": "/a", "value": "x"},
         "Request body must be a JSON array of operation objects."),
        (["add"], "Operations must be JSON objects."),
        ([{"path": "/a", "value": "x"}], "Unable to find `op` in JSON Schema change"),
        ([{"op": "move", "path": "/a", "value": "x"}], "Invalid operation: `move`"),
        ([{"op": "test", "path": "/a", "value": "x"}], "Invalid operation: `test`"),
        ([{"op": "add", "value": "x"}], "Unable to find 'path' in JSON Schema change"),
        ([{"op": "add", "path": "a", "value": "x"}], 'does not start with "/"'),
        ([{"op": "add", "path": 5, "value": "x"}], 'does not start with "/"'),
        ([{"op": "add", "path": "/a//b", "value": "x"}], 'contains adjacent "/"'),
        ([{"op": "add", "path": "/a/", "value": "x"}], 'end with "/"'),
        ([{"op": "add", "path": "/a~2b", "value": "x"}], "recognized escape sequence"),
        ([{"op": "add", "path": "/", "value": "x"}], "Invalid JSON pointer"),
        ([{"op": "add", "path": "/a/b", "value": "x"}],
         "Invalid JSON pointer for this resource: '/a/b'"),
        ([{"op": "add", "path": "/a"}], 'Operation "add" requires a member named "value".'),
        ([{"op": "replace", "path": "/name"}],
         'Operation "replace" requires a member named "value".'),
    ]
    for body, message in cases:
        assert_error(patch(client, image["id"], body), 400, message)
    doc = show(client, image["id"])
    assert doc["name"] == "intact" and "a" not in doc


def test_json_pointer_escapes(client):
    image = create(client)
    r = patch(client, image["id"], [{"op": "add", "path": "/a~1b", "value": "slash"},
                                     {"op": "add", "path": "/c~0d", "value": "tilde"}])
    assert r.status_code == 200
    assert r.json()["a/b"] == "slash" and r.json()["c~d"] == "tilde"


def test_changes_are_atomic(client):
    image = create(client, name="original", kept="yes")
    failing = [
        ([{"op": "add", "path": "/a", "value": "1"},
          {"op": "replace", "path": "/name", "value": "changed"},
          {"op": "replace", "path": "/missing", "value": "x"},
          {"op": "add", "path": "/b", "value": "2"}], 409),
        ([{"op": "remove", "path": "/kept"},
          {"op": "replace", "path": "/visibility", "value": "public"}], 403),
        ([{"op": "replace", "path": "/tags", "value": ["x"]},
          {"op": "remove", "path": "/name"}], 403),
        ([{"op": "add", "path": "/a", "value": "1"},
          {"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "add", "path": "/a", "value": "1"},
          {"op": "replace", "path": "/min_ram", "value": "x"}], 400),
    ]
    for ops, status in failing:
        assert_error(patch(client, image["id"], ops), status)
    doc = show(client, image["id"])
    assert doc["name"] == "original" and doc["kept"] == "yes" and doc["tags"] == []
    assert doc["visibility"] == "shared"
    assert "a" not in doc and "b" not in doc


def test_who_may_patch(client):
    private = create(client, visibility="private", name="p")
    shared = create(client, name="s")
    r = client.post(f"/v2/images/{shared['id']}/members", json={"member": "p-other"},
                    headers=OWNER)
    assert r.status_code == 200
    op = [{"op": "replace", "path": "/name", "value": "hijacked"}]
    assert_error(patch(client, private["id"], op, headers=OTHER), 404)
    assert_error(patch(client, shared["id"], op, headers=OTHER), 403)
    assert_error(patch(client, shared["id"], op, headers=as_project("p-owner", "reader")), 403)
    assert_error(patch(client, "00000000-0000-0000-0000-000000000000", op), 404)
    assert show(client, private["id"])["name"] == "p"
    assert show(client, shared["id"])["name"] == "s"
    # Admins may change anyone's image.
    assert patch(client, private["id"], op, headers={}).json()["name"] == "hijacked"
