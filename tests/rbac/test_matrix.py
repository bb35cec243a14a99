"""Every Images API operation x every kind of caller, against real Keystone tokens.

One live Glimpse (auth_strategy = keystone) validates the tokens of fresh
Keystone users (see conftest.py). Each cell of the matrix is one test: it sets
up its own image(s) as a member of project A, makes one request as the persona,
checks the status code, then checks (as A's admin) that the operation took
effect exactly when it was allowed.

Expected outcomes are Glance's secure-RBAC defaults (enforce_new_defaults and
enforce_scope on; glimpse/policy.py holds the same check strings, verified
against Glance 33), together with Glance's rule that a caller who may not even
see an image gets 404 instead of 403 (glance/api/v2/policy.py,
ImageAPIPolicy._enforce; MemberAPIPolicy checks get_image first).

Personas:
  a_admin               admin of project A (Keystone implies member and reader)
  a_member              member of project A
  a_reader              reader of project A
  b_member              member of project B (for the member calls, B is a member
                        of A's shared image; otherwise A's image is private)
  service_for_a_member  X-Auth-Token of a_member + X-Service-Token of a user with
                        the service role: acts exactly as a_member
  no_token              no X-Auth-Token: 401 with WWW-Authenticate: Keystone uri=...
  invalid_token         a token Keystone does not know: 401
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.rbac.conftest import Identities

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
DATA = b"glimpse rbac matrix image data\n" * 64
TAG = "rbac-tag"
INVALID_TOKEN = "gAAAAAB-glimpse-rbac-not-a-token-" + uuid.uuid4().hex

KEYSTONE_PERSONAS = ("a_admin", "a_member", "a_reader", "b_member", "service_for_a_member")
PERSONAS = (*KEYSTONE_PERSONAS, "no_token", "invalid_token")


class World:
    """The server, the identities, and project A's side of every case."""

    def __init__(self, api: httpx.Client, ids: Identities):
        self.api = api
        self.ids = ids
        self.owner = ids["a_member"].headers()
        self.admin = ids["a_admin"].headers()

    def headers(self, persona: str) -> dict[str, str]:
        if persona == "no_token":
            return {}
        if persona == "invalid_token":
            return {"X-Auth-Token": INVALID_TOKEN}
        if persona == "service_for_a_member":
            return {"X-Auth-Token": self.ids["a_member"].token,
                    "X-Service-Token": self.ids["service"].token}
        return self.ids[persona].headers()

    def project_of(self, persona: str) -> str:
        """The project a persona's new images belong to."""
        return self.ids.project_b if persona == "b_member" else self.ids.project_a

    # --- set-up, as a member of project A

    def image(self, visibility: str = "private", data: bool = False, deactivated: bool = False,
              tags: tuple[str, ...] = (), members: tuple[str, ...] = ()) -> dict[str, Any]:
        body = {"name": "rbac-" + uuid.uuid4().hex[:12], "disk_format": "raw",
                "container_format": "bare", "visibility": visibility, "tags": list(tags)}
        r = self.api.post("/v2/images", json=body, headers=self.owner)
        assert r.status_code == 201, r.text
        image = r.json()
        if data:
            r = self.api.put(f"/v2/images/{image['id']}/file", content=DATA,
                             headers={**self.owner, "Content-Type": "application/octet-stream"})
            assert r.status_code == 204, r.text
        if deactivated:
            r = self.api.post(f"/v2/images/{image['id']}/actions/deactivate", headers=self.owner)
            assert r.status_code == 204, r.text
        for member in members:
            r = self.api.post(f"/v2/images/{image['id']}/members", json={"member": member},
                              headers=self.owner)
            assert r.status_code == 200, r.text
        return image

    # --- the truth, as A's admin

    def show(self, image_id: str) -> dict[str, Any] | None:
        r = self.api.get(f"/v2/images/{image_id}", headers=self.admin)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def named(self, name: str) -> list[dict[str, Any]]:
        # visibility=all: a plain list leaves out other projects' community images.
        r = self.api.get("/v2/images", params={"name": name, "visibility": "all"},
                         headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["images"]

    def members(self, image_id: str) -> dict[str, str]:
        """member project -> status."""
        r = self.api.get(f"/v2/images/{image_id}/members", headers=self.admin)
        assert r.status_code == 200, r.text
        return {m["member_id"]: m["status"] for m in r.json()["members"]}


@dataclass
class Case:
    world: World
    persona: str
    image: dict[str, Any]
    extra: dict[str, Any]

    @property
    def image_id(self) -> str:
        return self.image["id"]

    @property
    def b(self) -> str:
        return self.world.ids.project_b


Prepare = Callable[[World], tuple[dict[str, Any], dict[str, Any]]]
Send = Callable[[httpx.Client, Case, dict[str, str]], httpx.Response]
Verify = Callable[[Case, httpx.Response, bool], None]


@dataclass(frozen=True)
class Op:
    name: str
    # Expected status for a_admin, a_member, a_reader, b_member, service_for_a_member;
    # no_token and invalid_token always get 401.
    codes: tuple[int, int, int, int, int]
    why: str  # the Glance rule (and source) behind the expected codes
    prepare: Prepare
    send: Send
    verify: Verify

    def expected(self, persona: str) -> int:
        if persona in KEYSTONE_PERSONAS:
            return self.codes[KEYSTONE_PERSONAS.index(persona)]
        return 401


# ---------------------------------------------------------------- operations


def _nothing(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    return {}, {"name": "rbac-new-" + uuid.uuid4().hex[:12]}


def _private(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    return world.image(), {}


def create_op(visibility: str, codes: tuple[int, int, int, int, int], why: str,
              owner_a: bool = False) -> Op:
    def send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
        body = {"name": case.extra["name"], "disk_format": "raw", "container_format": "bare",
                "visibility": visibility}
        if owner_a:
            body["owner"] = case.world.ids.project_a
        return api.post("/v2/images", json=body, headers=headers)

    def verify(case: Case, r: httpx.Response, allowed: bool) -> None:
        found = case.world.named(case.extra["name"])
        if not allowed:
            assert found == [], "a refused create must not leave an image behind"
            return
        doc = r.json()
        owner = case.world.ids.project_a if owner_a else case.world.project_of(case.persona)
        assert (doc["owner"], doc["visibility"], doc["status"]) == (owner, visibility, "queued")
        assert [i["id"] for i in found] == [doc["id"]]

    name = f"create_{visibility}" + ("_owned_by_a" if owner_a else "")
    return Op(name, codes, why, _nothing, send, verify)


def _show_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.get(f"/v2/images/{case.image_id}", headers=headers)


def _show_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    if allowed:
        assert r.json()["id"] == case.image_id


def _list_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.get("/v2/images", params={"name": case.image["name"]}, headers=headers)


def _list_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    if not allowed:
        return
    listed = [i["id"] for i in r.json()["images"]]
    # A's private image is listed for everyone in A and for any admin; never for B.
    expected = [] if case.persona == "b_member" else [case.image_id]
    assert listed == expected


def _update_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    patch = [{"op": "replace", "path": "/name", "value": "renamed-" + case.image["name"]}]
    return api.patch(f"/v2/images/{case.image_id}", json=patch,
                     headers={**headers, "Content-Type": PATCH_TYPE})


def _update_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    now = case.world.show(case.image_id)
    assert now is not None
    expected = "renamed-" + case.image["name"] if allowed else case.image["name"]
    assert now["name"] == expected
    if allowed:
        assert r.json()["name"] == expected


def _queued(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    return world.image(), {}


def _upload_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.put(f"/v2/images/{case.image_id}/file", content=DATA,
                   headers={**headers, "Content-Type": "application/octet-stream"})


def _upload_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    now = case.world.show(case.image_id)
    assert now is not None
    if allowed:
        assert (now["status"], now["size"]) == ("active", len(DATA))
    else:
        assert (now["status"], now["size"]) == ("queued", None)


def _active(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    return world.image(data=True), {}


def _download_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.get(f"/v2/images/{case.image_id}/file", headers=headers)


def _download_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    if allowed:
        assert r.content == DATA
    else:
        assert DATA not in r.content


def _delete_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.delete(f"/v2/images/{case.image_id}", headers=headers)


def _delete_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    assert (case.world.show(case.image_id) is None) == allowed


def action_op(action: str, prepare: Prepare, before: str, after: str) -> Op:
    def send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
        return api.post(f"/v2/images/{case.image_id}/actions/{action}", headers=headers)

    def verify(case: Case, r: httpx.Response, allowed: bool) -> None:
        now = case.world.show(case.image_id)
        assert now is not None
        assert now["status"] == (after if allowed else before)

    return Op(action, (204, 204, 403, 404, 204),
              f"{action}: admin or (role:member and project_id:%(project_id)s)",
              prepare, send, verify)


def _deactivated(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    return world.image(data=True, deactivated=True), {}


def _add_tag_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.put(f"/v2/images/{case.image_id}/tags/{TAG}", headers=headers)


def _add_tag_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    now = case.world.show(case.image_id)
    assert now is not None
    assert (TAG in now["tags"]) == allowed


def _tagged(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    return world.image(tags=(TAG,)), {}


def _delete_tag_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.delete(f"/v2/images/{case.image_id}/tags/{TAG}", headers=headers)


def _delete_tag_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    now = case.world.show(case.image_id)
    assert now is not None
    assert (TAG in now["tags"]) != allowed


def _shared_with_b(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """A's shared image with project B as a (pending) member, and one more consumer."""
    other = "other-" + uuid.uuid4().hex[:12]
    image = world.image(visibility="shared", members=(world.ids.project_b, other))
    return image, {"other": other, "new": "new-" + uuid.uuid4().hex[:12]}


def _add_member_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.post(f"/v2/images/{case.image_id}/members", json={"member": case.extra["new"]},
                    headers=headers)


def _add_member_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    assert (case.extra["new"] in case.world.members(case.image_id)) == allowed
    if allowed:
        assert (r.json()["member_id"], r.json()["status"]) == (case.extra["new"], "pending")


def _list_members_send(api: httpx.Client, case: Case, headers: dict[str, str],
                       ) -> httpx.Response:
    return api.get(f"/v2/images/{case.image_id}/members", headers=headers)


def _list_members_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    if not allowed:
        return
    listed = sorted(m["member_id"] for m in r.json()["members"])
    # A consumer sees its own membership only, never the other consumers.
    expected = [case.b] if case.persona == "b_member" else sorted([case.b, case.extra["other"]])
    assert listed == expected


def _show_member_send(api: httpx.Client, case: Case, headers: dict[str, str]) -> httpx.Response:
    return api.get(f"/v2/images/{case.image_id}/members/{case.b}", headers=headers)


def _show_member_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    if allowed:
        doc = r.json()
        assert (doc["image_id"], doc["member_id"], doc["status"]) == (
            case.image_id, case.b, "pending")


def _update_member_send(api: httpx.Client, case: Case, headers: dict[str, str],
                        ) -> httpx.Response:
    return api.put(f"/v2/images/{case.image_id}/members/{case.b}", json={"status": "accepted"},
                   headers=headers)


def _update_member_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    status = case.world.members(case.image_id)[case.b]
    assert status == ("accepted" if allowed else "pending")
    if allowed:
        assert r.json()["status"] == "accepted"


def _delete_member_send(api: httpx.Client, case: Case, headers: dict[str, str],
                        ) -> httpx.Response:
    return api.delete(f"/v2/images/{case.image_id}/members/{case.b}", headers=headers)


def _delete_member_verify(case: Case, r: httpx.Response, allowed: bool) -> None:
    members = case.world.members(case.image_id)
    assert (case.b not in members) == allowed
    assert case.extra["other"] in members


_CREATE = "add_image: admin or (role:member and project_id:%(project_id)s and " \
          "project_id:%(owner)s)"
_MODIFY = "modify_image: admin or (role:member and project_id:%(project_id)s); " \
          "B cannot see A's private image (get_image) -> 404"

OPS: tuple[Op, ...] = (
    # codes:  a_admin, a_member, a_reader, b_member, service_for_a_member
    create_op("private", (201, 201, 403, 201, 201), _CREATE),
    create_op("shared", (201, 201, 403, 201, 201), _CREATE),
    create_op("public", (201, 403, 403, 403, 403),
              _CREATE + "; publicize_image: role:admin"),
    create_op("community", (201, 201, 403, 201, 201),
              _CREATE + "; communitize_image: admin or (role:member and project_id)"),
    create_op("private", (201, 201, 403, 403, 201),
              _CREATE + "; B may not create images owned by A", owner_a=True),
    Op("show", (200, 200, 200, 404, 200),
       "get_image: admin or (role:reader and (project_id:%(project_id)s or member or "
       "community/public/shared))", _private, _show_send, _show_verify),
    Op("list", (200, 200, 200, 200, 200),
       "get_images: admin or (role:reader and project_id); B does not see A's private image",
       _private, _list_send, _list_verify),
    Op("update", (200, 200, 403, 404, 200), _MODIFY, _private, _update_send, _update_verify),
    Op("upload", (204, 204, 403, 404, 204),
       "upload_image: admin or (role:member and project_id:%(project_id)s)",
       _queued, _upload_send, _upload_verify),
    Op("download", (200, 200, 403, 404, 200),
       "download_image: admin or (role:member and (project_id or member or visible)); "
       "a reader may see but not download", _active, _download_send, _download_verify),
    Op("delete", (204, 204, 403, 404, 204),
       "delete_image: admin or (role:member and project_id:%(project_id)s)",
       _private, _delete_send, _delete_verify),
    action_op("deactivate", _active, "active", "deactivated"),
    action_op("reactivate", _deactivated, "deactivated", "active"),
    Op("add_tag", (204, 204, 403, 404, 204), _MODIFY, _private, _add_tag_send,
       _add_tag_verify),
    Op("delete_tag", (204, 204, 403, 404, 204), _MODIFY, _tagged, _delete_tag_send,
       _delete_tag_verify),
    Op("add_member", (200, 200, 403, 403, 200),
       "add_member: admin or (role:member and project_id:%(project_id)s); B sees the "
       "shared image as a member, so 403 not 404", _shared_with_b, _add_member_send,
       _add_member_verify),
    Op("list_members", (200, 200, 200, 200, 200),
       "get_members: admin or role:reader and (project_id or project_id:%(member_id)s); "
       "a consumer lists only its own membership", _shared_with_b, _list_members_send,
       _list_members_verify),
    Op("show_member", (200, 200, 200, 200, 200),
       "get_member: admin or role:reader and (project_id or project_id:%(member_id)s)",
       _shared_with_b, _show_member_send, _show_member_verify),
    Op("update_member_status", (200, 403, 403, 200, 403),
       "modify_member: admin or (role:member and project_id:%(member_id)s): only the "
       "consumer (or an admin) accepts; the owner's members get 403",
       _shared_with_b, _update_member_send, _update_member_verify),
    Op("delete_member", (204, 204, 403, 403, 204),
       "delete_member: admin or (role:member and project_id:%(project_id)s); the consumer "
       "may not remove itself", _shared_with_b, _delete_member_send, _delete_member_verify),
)

# Persona-major order: cells with the same token run together, so each token
# costs Keystone one validation (token_cache_time / negative_cache_time).
CELLS = [(op, persona) for persona in PERSONAS for op in OPS]
MATRIX_SIZE = f"{len(OPS)}x{len(PERSONAS)}={len(CELLS)}"


def test_operation_names_are_unique() -> None:
    assert len({op.name for op in OPS}) == len(OPS)


@pytest.fixture(scope="module")
def world(api: httpx.Client, identities: Identities) -> World:
    return World(api, identities)


@pytest.mark.parametrize(
    ("op", "persona"),
    [pytest.param(op, persona, id=f"{MATRIX_SIZE}-{op.name}-{persona}")
     for op, persona in CELLS],
)
def test_rbac_matrix(world: World, op: Op, persona: str) -> None:
    image, extra = op.prepare(world)
    case = Case(world, persona, image, extra)
    r = op.send(world.api, case, world.headers(persona))
    expected = op.expected(persona)
    assert r.status_code == expected, (
        f"{op.name} as {persona}: expected {expected} ({op.why}), got {r.status_code}: "
        f"{r.text[:300]}")
    if expected == 401:
        assert r.headers["WWW-Authenticate"] == f'Keystone uri="{world.ids.site.url}"'
        assert "x-openstack-request-id" not in r.headers  # as keystonemiddleware's 401
    else:
        assert r.headers["x-openstack-request-id"].startswith("req-")
    op.verify(case, r, 200 <= expected < 300)
