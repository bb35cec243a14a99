"""Image records through the API: create, show, delete, (de)activate and tags.

Expected answers are Glance's (see docs/notes/glance-api-facts.md).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from starlette.testclient import TestClient

from tests.conftest import as_project

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
IMAGE_KEYS = {
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
    "os_hash_algo", "os_hash_value", "size", "virtual_size", "min_disk", "min_ram",
    "disk_format", "container_format", "owner", "created_at", "updated_at", "tags",
    "self", "file", "schema",
}
OWNER = as_project("p-owner")
OTHER = as_project("p-other")


def create(client: TestClient, body: dict[str, Any] | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.post("/v2/images", json=body or {}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def create_active(client: TestClient, data: bytes = b"glimpse-data",
                  headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    image = create(client, {"disk_format": "raw", "container_format": "bare", **body},
                   headers)
    r = client.put(f"/v2/images/{image['id']}/file", content=data,
                   headers={**(headers or {}), "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return client.get(f"/v2/images/{image['id']}", headers=headers).json()


def assert_error(r: Any, status: int, text: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "title", "message"}
    if text is not None:
        assert text in body["message"]


# ---------------------------------------------------------------- create + show


def test_create_defaults_headers_and_show_document(client):
    r = client.post("/v2/images", json={}, headers=OWNER)
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("application/json")
    image = r.json()
    assert set(image) == IMAGE_KEYS
    assert uuid.UUID(image["id"])
    assert image["status"] == "queued"
    assert image["visibility"] == "shared"
    assert image["protected"] is False and image["os_hidden"] is False
    assert image["min_disk"] == 0 and image["min_ram"] == 0
    assert image["owner"] == "p-owner"
    assert image["tags"] == []
    for unset in ("name", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
                  "disk_format", "container_format"):
        assert image[unset] is None, unset
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert image["schema"] == "/v2/schemas/image"
    assert TIMESTAMP.match(image["created_at"]) and TIMESTAMP.match(image["updated_at"])
    # WebOb turns Glance's Location into an absolute URL.
    assert r.headers["location"] == f"http://testserver/v2/images/{image['id']}"
    assert r.headers["openstack-image-import-methods"] == \
        "glance-direct,web-download,copy-image"
    assert "openstack-image-store-ids" not in r.headers

    shown = client.get(f"/v2/images/{image['id']}", headers=OWNER)
    assert shown.status_code == 200
    assert shown.headers["content-type"].startswith("application/json")
    assert shown.json() == image


def test_import_methods_header_follows_config(app_factory):
    client = app_factory(enabled_import_methods=["web-download"])
    r = client.post("/v2/images", json={})
    assert r.headers["openstack-image-import-methods"] == "web-download"
    client = app_factory(enabled_import_methods=[])
    r = client.post("/v2/images", json={})
    assert r.status_code == 201
    assert "openstack-image-import-methods" not in r.headers


def test_create_with_attributes_properties_and_tags(client):
    body = {
        "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "min_disk": 5, "min_ram": 512, "protected": True, "os_hidden": True,
        "visibility": "private", "tags": ["b", "a", "b"],
        "os_distro": "cirros", "hw_disk_bus": "scsi", "empty": "",
    }
    image = create(client, body, OWNER)
    assert set(image) == IMAGE_KEYS | {"os_distro", "hw_disk_bus", "empty"}
    for key in ("name", "disk_format", "container_format", "min_disk", "min_ram",
                "protected", "os_hidden", "visibility", "os_distro", "hw_disk_bus", "empty"):
        assert image[key] == body[key], key
    assert sorted(image["tags"]) == ["a", "b"]
    shown = client.get(f"/v2/images/{image['id']}", headers=OWNER).json()
    assert sorted(shown.pop("tags")) == ["a", "b"]
    image.pop("tags")
    assert shown == image


def test_create_with_client_chosen_id(client):
    image_id = str(uuid.uuid4())
    r = client.post("/v2/images", json={"id": image_id, "name": "mine"}, headers=OWNER)
    assert r.status_code == 201
    assert r.json()["id"] == image_id
    assert r.headers["location"].endswith(f"/v2/images/{image_id}")
    assert client.get(f"/v2/images/{image_id}", headers=OWNER).json()["name"] == "mine"

    again = client.post("/v2/images", json={"id": image_id}, headers=OTHER)
    assert_error(again, 409, image_id)
    # Ids of deleted images are never reused.
    assert client.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 204
    assert_error(client.post("/v2/images", json={"id": image_id}, headers=OWNER), 409)

    for bad in ("not-a-uuid", image_id + "0", image_id.replace("-", "")):
        assert_error(client.post("/v2/images", json={"id": bad}), 400,
                     "Provided object does not match schema 'image'")


def test_create_refuses_bad_values(client):
    bad_bodies: list[Any] = [
        {"disk_format": "floppy"},
        {"container_format": "crate"},
        {"name": "n" * 256},
        {"min_ram": "lots"},
        {"min_disk": 1.5},
        {"protected": "yes"},
        {"os_hidden": 1},
        {"visibility": "everyone"},
        {"tags": "a,b"},
        {"tags": ["t" * 256]},
        {"tags": [1]},
        {"os_distro": 7},
        {"os_distro": None},
        {"os_distro": ["x"]},
        {"owner": "o" * 256},
        [],
        "image",
        7,
    ]
    for body in bad_bodies:
        r = client.post("/v2/images", json=body, headers=OWNER)
        assert_error(r, 400, "Provided object does not match schema 'image'")
    assert_error(client.post("/v2/images", json={"k" * 256: "v"}, headers=OWNER), 400,
                 "Custom property should not be greater than 255 characters.")
    for name in ("min_ram", "min_disk"):
        assert_error(client.post("/v2/images", json={name: -1}, headers=OWNER), 400,
                     f"Invalid value '-1' for parameter '{name}': Cannot be a negative value")
        # Beyond the 32-bit column: a 400, not the database's overflow (found by
        # tests/api/test_openapi_fuzz.py); the largest value still fits.
        assert_error(client.post("/v2/images", json={name: 2**31}, headers=OWNER), 400,
                     f"'{name}' value out of range, must not exceed 2147483647.")
        assert_error(client.post("/v2/images", json={name: 10**30}, headers=OWNER), 400)
    # PostgreSQL cannot store NUL characters: refused, never a 500.
    assert_error(client.post("/v2/images", json={"os_distro": "a\u0000b"}, headers=OWNER), 400)
    assert_error(client.post("/v2/images", json={"name": "a\u0000b"}, headers=OWNER), 400)
    # Nothing was created by the refused requests.
    assert client.get("/v2/images", headers=OWNER).json()["images"] == []
    # The limits themselves are fine.
    image = create(client, {"name": "n" * 255, "k" * 255: "v", "tags": ["t" * 255],
                            "min_ram": 2**31 - 1}, OWNER)
    assert image["name"] == "n" * 255 and image["k" * 255] == "v"
    assert image["min_ram"] == 2**31 - 1


def test_disk_and_container_formats_come_from_config(app_factory):
    client = app_factory(**{"image_format.disk_formats": ["raw"],
                            "image_format.container_formats": ["bare", "ovf"]})
    assert_error(client.post("/v2/images", json={"disk_format": "qcow2"}), 400)
    assert_error(client.post("/v2/images", json={"container_format": "docker"}), 400)
    image = create(client, {"disk_format": "raw", "container_format": "ovf"})
    assert (image["disk_format"], image["container_format"]) == ("raw", "ovf")
    schema = client.get("/v2/schemas/image").json()
    assert schema["properties"]["disk_format"]["enum"] == [None, "raw"]
    assert schema["properties"]["container_format"]["enum"] == [None, "bare", "ovf"]


def test_create_refuses_read_only_and_reserved_attributes(client):
    read_only = {
        "status": "active", "checksum": "0" * 32, "size": 5, "virtual_size": 5,
        "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
        "self": "/v2/images/x", "file": "/v2/images/x/file", "schema": "/v2/schemas/image",
        "direct_url": "file:///etc/passwd", "stores": "local",
    }
    for name, value in read_only.items():
        r = client.post("/v2/images", json={"name": "x", name: value}, headers=OWNER)
        assert_error(r, 403, f"Attribute '{name}' is read-only.")
    reserved = {"os_glance_import_task": "t", "os_glance": "x", "os_glancefoo": "x",
                "location": "file:///x", "deleted": "true", "deleted_at": "now",
                "locations": []}
    for name, value in reserved.items():
        r = client.post("/v2/images", json={name: value}, headers=OWNER)
        assert_error(r, 403, f"Attribute '{name}' is reserved.")
    assert client.get("/v2/images", headers=OWNER).json()["images"] == []
    # Glance silently ignores the hash attributes in a create body.
    image = create(client, {"os_hash_algo": "md5", "os_hash_value": "abc"}, OWNER)
    assert image["os_hash_algo"] is None and image["os_hash_value"] is None


def test_create_visibility_and_ownership_rules(client):
    r = client.post("/v2/images", json={"visibility": "public"}, headers=OWNER)
    assert_error(r, 403, "publicize_image")
    for visibility in ("community", "private", "shared"):
        image = create(client, {"visibility": visibility}, OWNER)
        assert image["visibility"] == visibility and image["owner"] == "p-owner"
    # Only an admin creates public images or images owned by another project.
    assert_error(client.post("/v2/images", json={"owner": "p-other"}, headers=OWNER), 403)
    assert create(client, {"owner": "p-owner"}, OWNER)["owner"] == "p-owner"
    admin = as_project("p-admin", "admin,member,reader")
    assert create(client, {"visibility": "public"}, admin)["visibility"] == "public"
    assert create(client, {"owner": "p-other"}, admin)["owner"] == "p-other"
    # A reader may not create images at all.
    assert_error(client.post("/v2/images", json={}, headers=as_project("p-owner", "reader")),
                 403)
    # The noauth admin has no project: its images have no owner.
    assert create(client)["owner"] is None


def test_show_active_image_and_who_sees_it(client):
    data = b"0123456789" * 1000
    image = create_active(client, data, OWNER, name="active", visibility="private")
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert "locations" not in image and "direct_url" not in image
    assert TIMESTAMP.match(image["updated_at"])
    assert image["updated_at"] >= image["created_at"]
    assert_error(client.get(f"/v2/images/{image['id']}", headers=OTHER), 404,
                 f"No image found with ID {image['id']}")
    # Admins see every image.
    assert client.get(f"/v2/images/{image['id']}").status_code == 200
    community = create(client, {"visibility": "community"}, OWNER)
    assert client.get(f"/v2/images/{community['id']}", headers=OTHER).status_code == 200


def test_locations_and_direct_url_only_when_configured(app_factory):
    client = app_factory(show_image_direct_url=True, show_multiple_locations=True)
    image = create_active(client, b"abc", OWNER, visibility="community")
    assert image["direct_url"].startswith("file://")
    assert len(image["locations"]) == 1
    location = image["locations"][0]
    assert set(location) == {"url", "metadata"}
    assert location["url"] == image["direct_url"]
    assert isinstance(location["metadata"], dict)
    # Another project may see the image but not where its data lives
    # (policy get_image_location).
    seen = client.get(f"/v2/images/{image['id']}", headers=OTHER).json()
    assert seen["locations"] == [] and "direct_url" not in seen
    # A queued image has no data: an empty list and no direct_url.
    queued = create(client, {}, OWNER)
    assert queued["locations"] == [] and "direct_url" not in queued

    direct_only = app_factory(show_image_direct_url=True)
    shown = direct_only.get(f"/v2/images/{image['id']}", headers=OWNER).json()
    assert shown["direct_url"] == image["direct_url"] and "locations" not in shown
    default = app_factory()
    shown = default.get(f"/v2/images/{image['id']}", headers=OWNER).json()
    assert "direct_url" not in shown and "locations" not in shown


# ---------------------------------------------------------------- delete


def test_delete_image(client):
    image = create(client, {"name": "doomed"}, OWNER)
    r = client.delete(f"/v2/images/{image['id']}", headers=OWNER)
    assert r.status_code == 204 and r.content == b""
    assert_error(client.get(f"/v2/images/{image['id']}", headers=OWNER), 404)
    assert_error(client.delete(f"/v2/images/{image['id']}", headers=OWNER), 404)
    assert_error(client.delete(f"/v2/images/{image['id']}"), 404)
    active = create_active(client, b"bytes", OWNER)
    assert client.delete(f"/v2/images/{active['id']}", headers=OWNER).status_code == 204
    assert_error(client.get(f"/v2/images/{active['id']}/file", headers=OWNER), 404)


def test_protected_image_cannot_be_deleted(client):
    image = create(client, {"protected": True}, OWNER)
    assert_error(client.delete(f"/v2/images/{image['id']}", headers=OWNER), 403,
                 f"Image {image['id']} is protected and cannot be deleted.")
    assert_error(client.delete(f"/v2/images/{image['id']}"), 403)  # admins too
    assert client.get(f"/v2/images/{image['id']}", headers=OWNER).status_code == 200
    r = client.patch(f"/v2/images/{image['id']}", headers={
        **OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "replace", "path": "/protected", "value": False}])
    assert r.status_code == 200
    assert client.delete(f"/v2/images/{image['id']}", headers=OWNER).status_code == 204


def test_who_may_delete(client):
    private = create(client, {"visibility": "private"}, OWNER)
    assert_error(client.delete(f"/v2/images/{private['id']}", headers=OTHER), 404)
    shared = create(client, {"visibility": "shared"}, OWNER)
    r = client.post(f"/v2/images/{shared['id']}/members", json={"member": "p-other"},
                    headers=OWNER)
    assert r.status_code == 200
    # The member can see the image, so it is told it may not delete it.
    assert_error(client.delete(f"/v2/images/{shared['id']}", headers=OTHER), 403)
    community = create(client, {"visibility": "community"}, OWNER)
    assert_error(client.delete(f"/v2/images/{community['id']}", headers=OTHER), 403)
    reader = as_project("p-owner", "reader")
    assert_error(client.delete(f"/v2/images/{shared['id']}", headers=reader), 403)
    for image in (private, shared, community):
        assert client.get(f"/v2/images/{image['id']}", headers=OWNER).status_code == 200
    # An admin deletes anyone's image.
    assert client.delete(f"/v2/images/{private['id']}").status_code == 204


# ---------------------------------------------------------------- deactivate / reactivate


def test_deactivate_and_reactivate(client):
    data = b"deactivate me"
    image = create_active(client, data, OWNER)
    url = f"/v2/images/{image['id']}"
    r = client.post(f"{url}/actions/deactivate", headers=OWNER)
    assert r.status_code == 204 and r.content == b""
    assert client.get(url, headers=OWNER).json()["status"] == "deactivated"
    assert client.post(f"{url}/actions/deactivate", headers=OWNER).status_code == 204
    assert client.get(url, headers=OWNER).json()["status"] == "deactivated"
    # Only admins may read the data of a deactivated image (see the next test).
    assert_error(client.get(f"{url}/file", headers=OWNER), 403,
                 "The requested image has been deactivated. Image data download is forbidden.")
    # Metadata can still change while deactivated.
    r = client.patch(url, headers={
        **OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "add", "path": "/note", "value": "paused"}])
    assert r.status_code == 200 and r.json()["status"] == "deactivated"

    assert client.post(f"{url}/actions/reactivate", headers=OWNER).status_code == 204
    assert client.get(url, headers=OWNER).json()["status"] == "active"
    assert client.post(f"{url}/actions/reactivate", headers=OWNER).status_code == 204
    assert client.get(url, headers=OWNER).json()["status"] == "active"
    assert client.get(f"{url}/file", headers=OWNER).content == data


def test_admin_downloads_deactivated_image(client):
    image = create_active(client, b"still here", OWNER)
    url = f"/v2/images/{image['id']}"
    assert client.post(f"{url}/actions/deactivate", headers=OWNER).status_code == 204
    r = client.get(f"{url}/file")
    assert r.status_code == 200 and r.content == b"still here"


def test_deactivate_needs_active_image(client):
    image = create(client, {}, OWNER)
    for action in ("deactivate", "reactivate"):
        r = client.post(f"/v2/images/{image['id']}/actions/{action}", headers=OWNER)
        assert_error(r, 403, f"Not allowed to {action} image in status 'queued'")
    assert client.get(f"/v2/images/{image['id']}", headers=OWNER).json()["status"] == "queued"


def test_deactivate_permissions(client):
    private = create_active(client, b"p", OWNER, visibility="private")
    community = create_active(client, b"c", OWNER, visibility="community")
    for action in ("deactivate", "reactivate"):
        r = client.post(f"/v2/images/{private['id']}/actions/{action}", headers=OTHER)
        assert_error(r, 404)
        r = client.post(f"/v2/images/{community['id']}/actions/{action}", headers=OTHER)
        assert_error(r, 403)
    assert client.get(f"/v2/images/{community['id']}", headers=OWNER).json()["status"] == \
        "active"
    assert_error(client.post(f"/v2/images/{uuid.uuid4()}/actions/deactivate"), 404)
    # Admins may deactivate anyone's image.
    assert client.post(f"/v2/images/{private['id']}/actions/deactivate").status_code == 204


# ---------------------------------------------------------------- tags


def test_tags_add_and_delete(client):
    image = create(client, {"tags": ["one"]}, OWNER)
    url = f"/v2/images/{image['id']}"
    r = client.put(f"{url}/tags/two", headers=OWNER)
    assert r.status_code == 204 and r.content == b""
    assert client.put(f"{url}/tags/two", headers=OWNER).status_code == 204  # idempotent
    assert client.put(f"{url}/tags/with space", headers=OWNER).status_code == 204
    assert client.put(f"{url}/tags/%C3%BCml%C3%A4ut", headers=OWNER).status_code == 204
    assert sorted(client.get(url, headers=OWNER).json()["tags"]) == \
        sorted(["one", "two", "with space", "ümläut"])

    assert client.delete(f"{url}/tags/one", headers=OWNER).status_code == 204
    assert_error(client.delete(f"{url}/tags/one", headers=OWNER), 404)
    assert_error(client.delete(f"{url}/tags/never", headers=OWNER), 404)
    assert_error(client.delete(f"{url}/tags/TWO", headers=OWNER), 404)  # case matters
    assert sorted(client.get(url, headers=OWNER).json()["tags"]) == \
        sorted(["two", "with space", "ümläut"])

    assert_error(client.put(f"{url}/tags/{'t' * 256}", headers=OWNER), 400)
    assert client.put(f"{url}/tags/{'t' * 255}", headers=OWNER).status_code == 204


def test_tags_permissions(client):
    private = create(client, {"visibility": "private"}, OWNER)
    community = create(client, {"visibility": "community", "tags": ["keep"]}, OWNER)
    assert_error(client.put(f"/v2/images/{private['id']}/tags/x", headers=OTHER), 404)
    assert_error(client.delete(f"/v2/images/{private['id']}/tags/x", headers=OTHER), 404)
    assert_error(client.put(f"/v2/images/{community['id']}/tags/x", headers=OTHER), 403)
    assert_error(client.delete(f"/v2/images/{community['id']}/tags/keep", headers=OTHER), 403)
    assert client.get(f"/v2/images/{community['id']}", headers=OWNER).json()["tags"] == \
        ["keep"]
    assert_error(client.put(f"/v2/images/{uuid.uuid4()}/tags/x", headers=OWNER), 404)


def test_names_are_case_sensitive(client):
    image = create(client, {"Foo": "upper", "foo": "lower", "tags": ["a", "A"]}, OWNER)
    assert (image["Foo"], image["foo"]) == ("upper", "lower")
    assert sorted(image["tags"]) == ["A", "a"]
    url = f"/v2/images/{image['id']}"
    assert client.put(f"{url}/tags/B", headers=OWNER).status_code == 204
    assert client.put(f"{url}/tags/b", headers=OWNER).status_code == 204
    assert sorted(client.get(url, headers=OWNER).json()["tags"]) == ["A", "B", "a", "b"]
    for member in ("p-x", "P-X"):
        r = client.post(f"{url}/members", json={"member": member}, headers=OWNER)
        assert r.status_code == 200 and r.json()["member_id"] == member
