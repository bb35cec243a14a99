"""Image members: sharing a 'shared' image with other projects, as Glance does."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from tests.conftest import as_project

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MEMBER_KEYS = {"image_id", "member_id", "status", "created_at", "updated_at", "schema"}
OWNER = as_project("p-owner")
BOB = as_project("p-bob")
CAROL = as_project("p-carol")
STRANGER = as_project("p-stranger")


def create(client: TestClient, headers: dict[str, str] = OWNER, **body: Any) -> dict[str, Any]:
    r = client.post("/v2/images", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def add_member(client: TestClient, image_id: str, member: Any,
               headers: dict[str, str] = OWNER) -> Any:
    return client.post(f"/v2/images/{image_id}/members", json={"member": member},
                       headers=headers)


def set_status(client: TestClient, image_id: str, member: str, status: Any,
               headers: dict[str, str]) -> Any:
    return client.put(f"/v2/images/{image_id}/members/{member}", json={"status": status},
                      headers=headers)


def assert_error(r: Any, status: int, text: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "title", "message"}
    if text is not None:
        assert text in body["message"], body["message"]


def test_add_member_document_and_duplicates(client):
    image = create(client)
    r = add_member(client, image["id"], "p-bob")
    assert r.status_code == 200  # Glance answers 200, not 201
    assert r.headers["content-type"].startswith("application/json")
    member = r.json()
    assert set(member) == MEMBER_KEYS
    assert member["image_id"] == image["id"] and member["member_id"] == "p-bob"
    assert member["status"] == "pending"
    assert member["schema"] == "/v2/schemas/member"
    assert TIMESTAMP.match(member["created_at"]) and TIMESTAMP.match(member["updated_at"])

    assert_error(add_member(client, image["id"], "p-bob"), 409,
                 f"Member p-bob is duplicated for image {image['id']}")
    listed = client.get(f"/v2/images/{image['id']}/members", headers=OWNER)
    assert listed.status_code == 200
    assert listed.json() == {"members": [member], "schema": "/v2/schemas/members"}
    shown = client.get(f"/v2/images/{image['id']}/members/p-bob", headers=OWNER)
    assert shown.status_code == 200 and shown.json() == member


def test_members_only_for_shared_images(client):
    private = create(client, visibility="private")
    community = create(client, visibility="community")
    public = create(client, headers={}, visibility="public")
    for image, headers in ((private, OWNER), (community, OWNER), (public, {})):
        url = f"/v2/images/{image['id']}/members"
        assert_error(add_member(client, image["id"], "p-bob", headers), 403,
                     "Not allowed to create members for image")
        assert_error(client.get(url, headers=headers), 403,
                     "Only shared images have members.")
        # Glance turns a refused show into 404.
        assert_error(client.get(f"{url}/p-bob", headers=headers), 404)
        assert_error(set_status(client, image["id"], "p-bob", "accepted", headers), 403)
        assert_error(client.delete(f"{url}/p-bob", headers=headers), 403)
    r = client.patch(f"/v2/images/{private['id']}",
                     json=[{"op": "replace", "path": "/visibility", "value": "shared"}],
                     headers={**OWNER,
                              "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert r.status_code == 200
    assert add_member(client, private["id"], "p-bob").status_code == 200


def test_add_member_bad_bodies(client):
    image = create(client)
    url = f"/v2/images/{image['id']}/members"
    assert_error(client.post(url, json={}, headers=OWNER), 400,
                 "Member to be added not specified")
    assert_error(client.post(url, json={"member": ""}, headers=OWNER), 400,
                 "Member can't be empty")
    for body in ([], "p-bob", {"member": 5}, {"member": ["p-bob"]}, {"member": "m" * 256}):
        assert_error(client.post(url, json=body, headers=OWNER), 400)
    assert_error(client.post(url, content=b"{nope", headers=OWNER), 400)
    assert_error(client.post(url, content=b"", headers=OWNER), 400)
    assert_error(add_member(client, image["id"], "a\u0000b"), 400)
    assert client.get(url, headers=OWNER).json()["members"] == []


def test_who_may_add_members(client):
    image = create(client)
    assert add_member(client, image["id"], "p-bob").status_code == 200
    # A member, a reader of the owner project, and a stranger may not share it.
    assert_error(add_member(client, image["id"], "p-carol", BOB), 403)
    assert_error(add_member(client, image["id"], "p-carol", as_project("p-owner", "reader")),
                 403)
    assert_error(add_member(client, image["id"], "p-carol", STRANGER), 404)
    assert_error(add_member(client, "00000000-0000-0000-0000-000000000000", "p-bob"), 404)
    # An admin may.
    assert add_member(client, image["id"], "p-carol", {}).status_code == 200
    members = client.get(f"/v2/images/{image['id']}/members", headers=OWNER).json()["members"]
    assert sorted(m["member_id"] for m in members) == ["p-bob", "p-carol"]


def test_what_each_project_sees(client):
    image = create(client, visibility="shared")
    url = f"/v2/images/{image['id']}/members"
    for member in ("p-bob", "p-carol"):
        assert add_member(client, image["id"], member).status_code == 200
    # The owner sees every member.
    members = client.get(url, headers=OWNER).json()["members"]
    assert sorted(m["member_id"] for m in members) == ["p-bob", "p-carol"]
    assert client.get(f"{url}/p-carol", headers=OWNER).status_code == 200
    assert_error(client.get(f"{url}/p-nobody", headers=OWNER), 404)
    # A member, even while pending, sees the image and only its own membership.
    assert client.get(f"/v2/images/{image['id']}", headers=BOB).status_code == 200
    own = client.get(url, headers=BOB)
    assert own.status_code == 200
    assert [m["member_id"] for m in own.json()["members"]] == ["p-bob"]
    assert client.get(f"{url}/p-bob", headers=BOB).json()["status"] == "pending"
    assert_error(client.get(f"{url}/p-carol", headers=BOB), 404)
    # Anyone else cannot see the image at all.
    assert_error(client.get(url, headers=STRANGER), 404)
    assert_error(client.get(f"{url}/p-bob", headers=STRANGER), 404)
    assert_error(client.get(f"/v2/images/{image['id']}", headers=STRANGER), 404)


def test_member_status_changes(client):
    image = create(client)
    url = f"/v2/images/{image['id']}/members"
    for member in ("p-bob", "p-carol"):
        assert add_member(client, image["id"], member).status_code == 200

    r = set_status(client, image["id"], "p-bob", "accepted", BOB)
    assert r.status_code == 200
    assert set(r.json()) == MEMBER_KEYS
    assert r.json()["status"] == "accepted" and r.json()["member_id"] == "p-bob"
    assert client.get(f"{url}/p-bob", headers=OWNER).json()["status"] == "accepted"
    for status in ("rejected", "pending", "accepted"):
        r = set_status(client, image["id"], "p-bob", status, BOB)
        assert r.status_code == 200 and r.json()["status"] == status

    # Only the member decides: the owner gets 403, another member does not see the row.
    assert_error(set_status(client, image["id"], "p-bob", "rejected", OWNER), 403)
    assert_error(set_status(client, image["id"], "p-carol", "accepted", BOB), 404)
    assert_error(set_status(client, image["id"], "p-bob", "accepted", STRANGER), 404)
    assert_error(set_status(client, image["id"], "p-nobody", "accepted", OWNER), 404)
    assert client.get(f"{url}/p-carol", headers=OWNER).json()["status"] == "pending"

    for bad in ("maybe", "ACCEPTED", None, 1, ["accepted"]):
        assert_error(set_status(client, image["id"], "p-bob", bad, BOB), 400,
                     'Status must be "pending", "accepted" or "rejected".')
    assert_error(client.put(f"{url}/p-bob", json={}, headers=BOB), 400, "Status not specified")
    assert_error(client.put(f"{url}/p-bob", json=["accepted"], headers=BOB), 400)
    assert_error(client.put(f"{url}/p-bob", content=b"{", headers=BOB), 400)
    assert client.get(f"{url}/p-bob", headers=OWNER).json()["status"] == "accepted"


def test_accepted_image_is_listed_for_the_member(client):
    image = create(client, name="for-bob")
    assert add_member(client, image["id"], "p-bob").status_code == 200

    def listed() -> list[str]:
        return [i["id"] for i in client.get("/v2/images", headers=BOB).json()["images"]]

    assert image["id"] not in listed()
    assert set_status(client, image["id"], "p-bob", "accepted", BOB).status_code == 200
    assert image["id"] in listed()
    assert set_status(client, image["id"], "p-bob", "rejected", BOB).status_code == 200
    assert image["id"] not in listed()


def test_delete_member(client):
    image = create(client)
    url = f"/v2/images/{image['id']}/members"
    for member in ("p-bob", "p-carol"):
        assert add_member(client, image["id"], member).status_code == 200
    # A member may not remove itself or others; strangers see nothing.
    assert_error(client.delete(f"{url}/p-bob", headers=BOB), 403)
    assert_error(client.delete(f"{url}/p-carol", headers=BOB), 404)
    assert_error(client.delete(f"{url}/p-bob", headers=STRANGER), 404)

    r = client.delete(f"{url}/p-bob", headers=OWNER)
    assert r.status_code == 204 and r.content == b""
    assert_error(client.get(f"{url}/p-bob", headers=OWNER), 404)
    assert_error(client.delete(f"{url}/p-bob", headers=OWNER), 404)
    # The removed project loses sight of the image.
    assert_error(client.get(f"/v2/images/{image['id']}", headers=BOB), 404)
    assert [m["member_id"] for m in client.get(url, headers=OWNER).json()["members"]] == \
        ["p-carol"]
    # It can be shared again, starting over as pending.
    r = add_member(client, image["id"], "p-bob")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    # Admins may remove members too.
    assert client.delete(f"{url}/p-carol").status_code == 204


def test_deleting_the_image_removes_memberships(client):
    image = create(client)
    assert add_member(client, image["id"], "p-bob").status_code == 200
    assert client.delete(f"/v2/images/{image['id']}", headers=OWNER).status_code == 204
    assert_error(client.get(f"/v2/images/{image['id']}/members", headers=OWNER), 404)
    assert_error(client.get(f"/v2/images/{image['id']}/members/p-bob", headers=BOB), 404)
