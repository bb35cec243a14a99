"""The RBAC matrix for every endpoint beside images and members (tasks, metadefs, info,
stores, the image cache, the locations API), and the two personas
tests/rbac/test_matrix.py does not cover (the service role alone, an expired token)
on its image and member operations.

One row per endpoint in ``ENDPOINTS``: the request, the expected status for each
persona, and what must hold afterwards (a refused change changes nothing).
A new endpoint is one more row.

Personas (see conftest.py): a_admin, a_member, a_reader, b_member (another
project), service (the service role alone, on the service project),
service_for_a_member (a_member's token vouched for by a service token),
no_token, invalid_token, expired_token (a real token of a_member, past its
expiry: an application credential's expiry caps its tokens').

Expected codes are Glance's secure-RBAC defaults as glimpse/policy.py holds them;
the reason is in each row. A caller who may not see a namespace gets 404, as in
Glance (the get check comes first).

No request here makes the server fetch anything: the one task creation that an
admin may make has a body Glance refuses (400) after the policy check.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, start_server
from tests.rbac.conftest import Identities, glimpse_config, issue_token
from tests.rbac.test_matrix import OPS, Case, World

INVALID_TOKEN = "gAAAAAB-glimpse-rbac-not-a-token-" + uuid.uuid4().hex
KEYSTONE = ("a_admin", "a_member", "a_reader", "b_member", "service", "service_for_a_member")
PERSONAS = (*KEYSTONE, "no_token", "invalid_token", "expired_token")
NS = "/v2/metadefs/namespaces"


class Site:
    """Project A's metadefs and task, made once per module as A's admin."""

    def __init__(self, api: httpx.Client, ids: Identities, expired: str):
        self.api, self.ids, self.expired = api, ids, expired
        self.admin = ids["a_admin"].headers()
        self.private_ns = self.namespace("private")
        self.public_ns = self.namespace("public")
        for kind, body in (("objects", {"name": "obj"}),
                           ("properties", {"name": "prop", "title": "p", "type": "string"}),
                           ("tags/tag", None)):
            for ns in (self.private_ns, self.public_ns):
                r = api.post(f"{NS}/{ns}/{kind}", json=body, headers=self.admin)
                assert r.status_code == 201, r.text
        r = api.post(f"{NS}/{self.private_ns}/resource_types",
                     json={"name": "OS::Glance::Image"}, headers=self.admin)
        assert r.status_code == 201, r.text
        r = api.get("/v2/tasks", headers=self.admin)
        assert r.status_code == 200, r.text

    def namespace(self, visibility: str) -> str:
        name = f"rbac-{visibility}-{uuid.uuid4().hex[:10]}"
        r = self.api.post(NS, json={"namespace": name, "visibility": visibility},
                          headers=self.admin)
        assert r.status_code == 201, r.text
        return name

    def headers(self, persona: str) -> dict[str, str]:
        if persona == "no_token":
            return {}
        if persona == "invalid_token":
            return {"X-Auth-Token": INVALID_TOKEN}
        if persona == "expired_token":
            return {"X-Auth-Token": self.expired}
        if persona == "service_for_a_member":
            return {"X-Auth-Token": self.ids["a_member"].token,
                    "X-Service-Token": self.ids["service"].token}
        return self.ids[persona].headers()

    def exists(self, path: str) -> bool:
        r = self.api.get(path, headers=self.admin)
        assert r.status_code in (200, 404), r.text
        return r.status_code == 200


@dataclass
class Cell:
    site: Site
    persona: str
    target: dict[str, str] = field(default_factory=dict)


Prepare = Callable[[Site], dict[str, str]]
Request = Callable[[Cell], tuple[str, str, Any]]  # method, path, JSON body
Verify = Callable[[Cell, httpx.Response, bool], None]


def _none(site: Site) -> dict[str, str]:
    return {}


def _fresh_namespace(site: Site) -> dict[str, str]:
    return {"ns": site.namespace("private")}


def _fresh_object(site: Site) -> dict[str, str]:
    name = "obj-" + uuid.uuid4().hex[:8]
    r = site.api.post(f"{NS}/{site.private_ns}/objects", json={"name": name},
                      headers=site.admin)
    assert r.status_code == 201, r.text
    return {"name": name}


def _new_name(site: Site) -> dict[str, str]:
    return {"name": "new-" + uuid.uuid4().hex[:8]}


def _no_check(cell: Cell, r: httpx.Response, allowed: bool) -> None:
    return None


def _a_image(site: Site) -> dict[str, str]:
    """A new private (queued) image of project A, made by A's admin."""
    r = site.api.post("/v2/images", json={"name": "rbac-" + uuid.uuid4().hex[:8],
                                          "disk_format": "raw", "container_format": "bare"},
                      headers=site.admin)
    assert r.status_code == 201, r.text
    return {"image": r.json()["id"]}


def _still_queued(cell: Cell, r: httpx.Response, allowed: bool) -> None:
    r = cell.site.api.get(f"/v2/images/{cell.target['image']}", headers=cell.site.admin)
    # Whoever asked, the URL was refused: the image has no location and stays queued.
    assert r.status_code == 200 and r.json()["status"] == "queued", r.text
    assert not r.json().get("locations"), r.text


def _created(path: Callable[[Cell], str]) -> Verify:
    def verify(cell: Cell, r: httpx.Response, allowed: bool) -> None:
        assert cell.site.exists(path(cell)) == allowed

    return verify


def _deleted(path: Callable[[Cell], str]) -> Verify:
    def verify(cell: Cell, r: httpx.Response, allowed: bool) -> None:
        assert cell.site.exists(path(cell)) != allowed

    return verify


def _renamed(cell: Cell, r: httpx.Response, allowed: bool) -> None:
    r = cell.site.api.get(f"{NS}/{cell.target['ns']}", headers=cell.site.admin)
    assert (r.json().get("display_name") == "renamed") == allowed


@dataclass(frozen=True)
class Endpoint:
    name: str
    # a_admin, a_member, a_reader, b_member, service, service_for_a_member
    codes: tuple[int, int, int, int, int, int]
    why: str
    request: Request
    prepare: Prepare = _none
    verify: Verify = _no_check

    def expected(self, persona: str) -> int:
        return self.codes[KEYSTONE.index(persona)] if persona in KEYSTONE else 401


_READ_NS = ("get_metadef_*: admin or (role:reader and (public namespace or "
            "project_id:%(project_id)s)); a namespace one may not see is 404")
_ADMIN_NS = "metadef_admin (role:admin); a namespace one may not see is 404 first"

ENDPOINTS: tuple[Endpoint, ...] = (
    # ---- metadefs
    Endpoint("list_namespaces", (200, 200, 200, 200, 403, 200),
             "get_metadef_namespaces: admin or role:reader",
             lambda c: ("GET", NS, None)),
    Endpoint("show_private_namespace", (200, 200, 200, 404, 404, 200), _READ_NS,
             lambda c: ("GET", f"{NS}/{c.site.private_ns}", None)),
    Endpoint("show_public_namespace", (200, 200, 200, 200, 404, 200),
             _READ_NS + " (a failed get_metadef_namespace is always 404)",
             lambda c: ("GET", f"{NS}/{c.site.public_ns}", None)),
    Endpoint("create_namespace", (201, 403, 403, 403, 403, 403),
             "add_metadef_namespace: metadef_admin",
             lambda c: ("POST", NS, {"namespace": c.target["name"]}), _new_name,
             _created(lambda c: f"{NS}/{c.target['name']}")),
    Endpoint("update_namespace", (200, 403, 403, 404, 404, 403), _ADMIN_NS,
             lambda c: ("PUT", f"{NS}/{c.target['ns']}",
                        {"namespace": c.target["ns"], "display_name": "renamed"}),
             _fresh_namespace, _renamed),
    Endpoint("delete_namespace", (204, 403, 403, 404, 404, 403), _ADMIN_NS,
             lambda c: ("DELETE", f"{NS}/{c.target['ns']}", None), _fresh_namespace,
             _deleted(lambda c: f"{NS}/{c.target['ns']}")),
    Endpoint("list_objects", (200, 200, 200, 404, 404, 200), _READ_NS,
             lambda c: ("GET", f"{NS}/{c.site.private_ns}/objects", None)),
    Endpoint("show_object", (200, 200, 200, 404, 404, 200), _READ_NS,
             lambda c: ("GET", f"{NS}/{c.site.private_ns}/objects/obj", None)),
    Endpoint("create_object", (201, 403, 403, 404, 404, 403), _ADMIN_NS,
             lambda c: ("POST", f"{NS}/{c.site.private_ns}/objects",
                        {"name": c.target["name"]}), _new_name,
             _created(lambda c: f"{NS}/{c.site.private_ns}/objects/{c.target['name']}")),
    Endpoint("delete_object", (204, 403, 403, 404, 404, 403), _ADMIN_NS,
             lambda c: ("DELETE", f"{NS}/{c.site.private_ns}/objects/{c.target['name']}",
                        None), _fresh_object,
             _deleted(lambda c: f"{NS}/{c.site.private_ns}/objects/{c.target['name']}")),
    Endpoint("list_properties", (200, 200, 200, 404, 404, 200), _READ_NS,
             lambda c: ("GET", f"{NS}/{c.site.private_ns}/properties", None)),
    Endpoint("create_property", (201, 403, 403, 404, 404, 403), _ADMIN_NS,
             lambda c: ("POST", f"{NS}/{c.site.private_ns}/properties",
                        {"name": c.target["name"], "title": "t", "type": "string"}),
             _new_name,
             _created(lambda c: f"{NS}/{c.site.private_ns}/properties/{c.target['name']}")),
    Endpoint("list_tags", (200, 200, 200, 404, 404, 200), _READ_NS,
             lambda c: ("GET", f"{NS}/{c.site.private_ns}/tags", None)),
    Endpoint("create_tag", (201, 403, 403, 404, 404, 403), _ADMIN_NS,
             lambda c: ("POST", f"{NS}/{c.site.private_ns}/tags/{c.target['name']}", None),
             _new_name,
             _created(lambda c: f"{NS}/{c.site.private_ns}/tags/{c.target['name']}")),
    Endpoint("list_resource_types", (200, 200, 200, 200, 403, 200),
             "list_metadef_resource_types: admin or role:reader",
             lambda c: ("GET", "/v2/metadefs/resource_types", None)),
    Endpoint("list_associations", (200, 200, 200, 404, 404, 200), _READ_NS,
             lambda c: ("GET", f"{NS}/{c.site.private_ns}/resource_types", None)),
    # ---- tasks (tasks_api_access: admin only, as in Glance's secure defaults)
    Endpoint("list_tasks", (200, 403, 403, 403, 403, 403), "tasks_api_access: role:admin",
             lambda c: ("GET", "/v2/tasks", None)),
    Endpoint("create_task", (400, 403, 403, 403, 403, 403),
             "tasks_api_access: role:admin (the admin's body is refused after the check)",
             lambda c: ("POST", "/v2/tasks", {"type": "no-such-type", "input": {}})),
    Endpoint("show_task", (404, 403, 403, 403, 403, 403),
             "tasks_api_access: role:admin (no such task for the admin)",
             lambda c: ("GET", f"/v2/tasks/{uuid.UUID(int=0)}", None)),
    # ---- info and stores
    Endpoint("info_import", (200, 200, 200, 200, 200, 200), "no policy: discovery",
             lambda c: ("GET", "/v2/info/import", None)),
    Endpoint("info_stores", (200, 200, 200, 200, 200, 200),
             "no policy: discovery (multi-store; single-store answers 404 to all)",
             lambda c: ("GET", "/v2/info/stores", None)),
    Endpoint("info_stores_detail", (200, 403, 403, 403, 200, 403),
             "stores_info_detail: role:admin or role:service",
             lambda c: ("GET", "/v2/info/stores/detail", None)),
    Endpoint("info_usage", (200, 200, 200, 200, 200, 200),
             "no policy: the caller's own project's usage",
             lambda c: ("GET", "/v2/info/usage", None)),
    # ---- image cache (this module's server has one; cache_*: role:admin)
    Endpoint("cache_list", (200, 403, 403, 403, 403, 403), "cache_list: role:admin",
             lambda c: ("GET", "/v2/cache", None)),
    Endpoint("cache_queue_unknown_image", (404, 404, 404, 404, 404, 404),
             "cache_image: the image is looked up first (its target), as Glance: 404",
             lambda c: ("PUT", f"/v2/cache/{uuid.UUID(int=0)}", None)),
    Endpoint("cache_clear", (204, 403, 403, 403, 403, 403), "cache_delete: role:admin",
             lambda c: ("DELETE", "/v2/cache", None)),
    Endpoint("cache_clean", (200, 403, 403, 403, 403, 403), "cache_clean: role:admin",
             lambda c: ("POST", "/v2/cache/clean", None)),
    Endpoint("cache_prune", (200, 403, 403, 403, 403, 403), "cache_prune: role:admin",
             lambda c: ("POST", "/v2/cache/prune", None)),
    Endpoint("cache_nodes", (200, 403, 403, 403, 403, 403), "list_cached_nodes: role:admin",
             lambda c: ("GET", f"/v2/cache/nodes/{c.target['image']}", None), _a_image),
    # ---- locations (API 2.17) and per-store copies, on a private image of project A
    Endpoint("fetch_locations", (200, 403, 403, 404, 404, 403),
             "fetch_image_location: service_api (role:service or role:admin, on the user "
             "token's roles: a service token's roles do not count); an image one may not "
             "see is 404",
             lambda c: ("GET", f"/v2/images/{c.target['image']}/locations", None), _a_image),
    Endpoint("add_location", (403, 403, 403, 404, 404, 400),
             "add_image_location: service, or a member of the owner for http URLs only: "
             "with no http store a user is refused (403, as Glance); the service's URL "
             "is refused (400: no store holds it)",
             lambda c: ("POST", f"/v2/images/{c.target['image']}/locations",
                        {"url": "http://127.0.0.1:9/no-such"}), _a_image, _still_queued),
    Endpoint("delete_from_store", (409, 403, 403, 404, 404, 403),
             "delete_image_location: role:admin (a queued image has no data to remove: "
             "409, as Glance)",
             lambda c: ("DELETE", f"/v2/stores/slow/{c.target['image']}", None), _a_image),
)


@pytest.fixture(scope="module")
def glimpse(tmp_path_factory: pytest.TempPathFactory,
            identities: Identities) -> Iterator[LiveServer]:
    """This module's server: conftest's, with two file stores (the stores endpoints
    answer 404 without multi-store)."""
    root = tmp_path_factory.mktemp("rbac-endpoints")
    config = ("enabled_backends = fast:file, slow:file\n"
              f"image_cache_dir = {root / 'cache'}\n"
              + glimpse_config(identities.site)
              + f"\n[glance_store]\ndefault_backend = fast\n"
              f"[fast]\nfilesystem_store_datadir = {root / 'fast'}\n"
              f"[slow]\nfilesystem_store_datadir = {root / 'slow'}\n")
    server = start_server(root, None, config_text=config)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expired_token(identities: Identities) -> str:
    """A real token of a_member that Keystone has let expire."""
    expires = datetime.now(UTC) + timedelta(seconds=8)
    credential = identities.create_app_credential(
        "a_member", expires_at=expires.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    token, body = issue_token(identities.site, {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": credential["id"], "secret": credential["secret"]}}})
    token_expiry = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    time.sleep(max(0.0, (token_expiry - datetime.now(UTC)).total_seconds()) + 1)
    return token


@pytest.fixture(scope="module")
def site(api: httpx.Client, identities: Identities, expired_token: str) -> Site:
    return Site(api, identities, expired_token)


def test_endpoint_names_are_unique() -> None:
    assert len({e.name for e in ENDPOINTS}) == len(ENDPOINTS)


CELLS = [(e, p) for p in PERSONAS for e in ENDPOINTS]


@pytest.mark.parametrize(("endpoint", "persona"), [
    pytest.param(e, p, id=f"{len(ENDPOINTS)}x{len(PERSONAS)}-{e.name}-{p}") for e, p in CELLS])
def test_endpoint_matrix(site: Site, endpoint: Endpoint, persona: str) -> None:
    cell = Cell(site, persona, endpoint.prepare(site))
    method, path, body = endpoint.request(cell)
    r = site.api.request(method, path, json=body, headers=site.headers(persona))
    expected = endpoint.expected(persona)
    assert r.status_code == expected, (
        f"{endpoint.name} as {persona}: expected {expected} ({endpoint.why}), got "
        f"{r.status_code}: {r.text[:300]}")
    if expected == 401:
        assert r.headers["WWW-Authenticate"] == f'Keystone uri="{site.ids.site.url}"'
    endpoint.verify(cell, r, 200 <= expected < 300)


# ---------------------------------------------------- images and members: two more personas

# The service role alone sees none of A's images: what it may not see is 404,
# what needs a role it lacks (member/reader) is 403; an expired token is 401.
SERVICE_ALONE = {
    "create_private": 403, "create_shared": 403, "create_public": 403,
    "create_community": 403, "create_private_owned_by_a": 403, "show": 404, "list": 403,
    "update": 404, "upload": 404, "download": 404, "delete": 404, "deactivate": 404,
    "reactivate": 404, "add_tag": 404, "delete_tag": 404, "add_member": 404,
    "list_members": 404, "show_member": 404, "update_member_status": 404,
    "delete_member": 404,
}


def test_service_alone_table_covers_every_image_operation() -> None:
    assert set(SERVICE_ALONE) == {op.name for op in OPS}


@pytest.fixture(scope="module")
def world(api: httpx.Client, identities: Identities) -> World:
    return World(api, identities)


@pytest.mark.parametrize(("op", "persona"), [
    pytest.param(op, p, id=f"{op.name}-{p}") for p in ("service", "expired_token")
    for op in OPS])
def test_image_operations_for_more_personas(world: World, site: Site, op: Any,
                                            persona: str) -> None:
    image, extra = op.prepare(world)
    case = Case(world, persona, image, extra)
    r = op.send(world.api, case, site.headers(persona))
    expected = SERVICE_ALONE[op.name] if persona == "service" else 401
    assert r.status_code == expected, (
        f"{op.name} as {persona}: expected {expected}, got {r.status_code}: {r.text[:300]}")
    op.verify(case, r, False)
