"""Per-image quotas under Glance's option names: 413 when exceeded, -1 = unlimited."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.conftest import as_project

V21 = "application/openstack-images-v2.1-json-patch"
OWNER = as_project("p-owner")


def create(client: TestClient, **body: Any) -> Any:
    return client.post("/v2/images", json=body, headers=OWNER)


def patch(client: TestClient, image_id: str, ops: list[dict[str, Any]]) -> Any:
    return client.patch(f"/v2/images/{image_id}", json=ops,
                        headers={**OWNER, "Content-Type": V21})


def assert_too_large(r: Any, kind: str, attempted: int, maximum: int) -> None:
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["code"] == "413 Request Entity Too Large"
    assert body["title"] == "Request Entity Too Large"
    assert f"number of allowed {kind}" in body["message"]
    assert f"Attempted: {attempted}, Maximum: {maximum}" in body["message"]


def test_property_quota(app_factory):
    client = app_factory(image_property_quota=2)
    assert_too_large(create(client, a="1", b="2", c="3"), "image properties", 3, 2)
    # Base attributes and tags do not count.
    r = create(client, name="n", min_ram=1, tags=["x", "y", "z"], a="1", b="2")
    assert r.status_code == 201
    image = r.json()
    assert_too_large(patch(client, image["id"], [{"op": "add", "path": "/c", "value": "3"}]),
                     "image properties", 3, 2)
    # Replacing, or removing one to make room, stays within the quota.
    r = patch(client, image["id"], [{"op": "replace", "path": "/a", "value": "changed"},
                                     {"op": "remove", "path": "/b"},
                                     {"op": "add", "path": "/c", "value": "3"}])
    assert r.status_code == 200
    doc = r.json()
    assert (doc["a"], doc["c"]) == ("changed", "3") and "b" not in doc
    # A refused change leaves nothing behind.
    r = patch(client, image["id"], [{"op": "remove", "path": "/a"},
                                     {"op": "add", "path": "/d", "value": "4"},
                                     {"op": "add", "path": "/e", "value": "5"}])
    assert_too_large(r, "image properties", 3, 2)
    doc = client.get(f"/v2/images/{image['id']}", headers=OWNER).json()
    assert (doc["a"], doc["c"]) == ("changed", "3") and "d" not in doc and "e" not in doc


def test_property_quota_zero_and_unlimited(app_factory):
    none_allowed = app_factory(image_property_quota=0)
    assert create(none_allowed, name="bare").status_code == 201
    assert_too_large(create(none_allowed, a="1"), "image properties", 1, 0)
    unlimited = app_factory(image_property_quota=-1)
    many = {f"p{i}": str(i) for i in range(150)}
    r = create(unlimited, **many)
    assert r.status_code == 201
    assert all(r.json()[k] == v for k, v in many.items())


def test_tag_quota(app_factory):
    client = app_factory(image_tag_quota=2)
    assert_too_large(create(client, tags=["a", "b", "c"]), "image tags", 3, 2)
    r = create(client, tags=["a", "b", "a"])  # duplicates count once
    assert r.status_code == 201
    image_id = r.json()["id"]
    url = f"/v2/images/{image_id}"
    assert_too_large(client.put(f"{url}/tags/c", headers=OWNER), "image tags", 3, 2)
    assert client.put(f"{url}/tags/a", headers=OWNER).status_code == 204  # already there
    assert_too_large(patch(client, image_id, [{"op": "replace", "path": "/tags",
                                               "value": ["x", "y", "z"]}]), "image tags", 3, 2)
    assert sorted(client.get(url, headers=OWNER).json()["tags"]) == ["a", "b"]
    assert client.delete(f"{url}/tags/a", headers=OWNER).status_code == 204
    assert client.put(f"{url}/tags/c", headers=OWNER).status_code == 204
    assert sorted(client.get(url, headers=OWNER).json()["tags"]) == ["b", "c"]

    unlimited = app_factory(image_tag_quota=-1)
    tags = [f"t{i}" for i in range(150)]
    r = create(unlimited, tags=tags)
    assert r.status_code == 201 and sorted(r.json()["tags"]) == sorted(tags)


def test_member_quota(app_factory):
    client = app_factory(image_member_quota=2)
    image_id = create(client).json()["id"]
    url = f"/v2/images/{image_id}/members"
    for member in ("p-a", "p-b"):
        assert client.post(url, json={"member": member}, headers=OWNER).status_code == 200
    assert_too_large(client.post(url, json={"member": "p-c"}, headers=OWNER),
                     "image members", 3, 2)
    assert len(client.get(url, headers=OWNER).json()["members"]) == 2
    assert client.delete(f"{url}/p-a", headers=OWNER).status_code == 204
    assert client.post(url, json={"member": "p-c"}, headers=OWNER).status_code == 200

    none_allowed = app_factory(image_member_quota=0)
    assert_too_large(none_allowed.post(url, json={"member": "p-d"}, headers=OWNER),
                     "image members", 3, 0)
    unlimited = app_factory(image_member_quota=-1)
    for i in range(5):
        r = unlimited.post(url, json={"member": f"p-more-{i}"}, headers=OWNER)
        assert r.status_code == 200
    assert len(unlimited.get(url, headers=OWNER).json()["members"]) == 7
