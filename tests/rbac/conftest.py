"""Fixtures for the RBAC tests: a real Keystone, fresh projects and users, a live Glimpse.

Keystone is the one ``scripts/keystone.sh up DIR`` starts (``scripts/test.sh`` and
``.ci/run`` do that once per run); ``GLIMPSE_KEYSTONE_DIR`` names DIR, whose
``keystone.env`` holds the URL and the passwords. Without it, or with Keystone not
answering, the tests are skipped with the reason; with CI=true they fail.

That Keystone is shared (tempest may be running against it at the same time),
so these fixtures only ever add their own projects and users, with unique
names, and delete them again at the end. They never stop or reconfigure it.

Identities (package scope, so both test modules share one set):

=============  ==================================================
persona        Keystone
=============  ==================================================
a_admin        role ``admin`` on project A (implies manager, member, reader)
a_member       role ``member`` on project A (implies reader)
a_reader       role ``reader`` on project A
b_member       role ``member`` on project B
service        role ``service`` on project ``service``
=============  ==================================================

Each has one project-scoped token (``POST /v3/auth/tokens``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, LiveServer, start_server

KEYSTONE_DIR_ENV = "GLIMPSE_KEYSTONE_DIR"
# Keystone is one uWSGI process on SQLite; while tempest runs against it a single
# call can take seconds.
KEYSTONE_TIMEOUT = 120.0


def unavailable(reason: str) -> None:
    """Skip (or, in CI, fail) when the real Keystone cannot be used."""
    hint = (f"start one with `scripts/keystone.sh up DIR` and set {KEYSTONE_DIR_ENV}=DIR "
            "(scripts/test.sh does both)")
    if IN_CI:
        pytest.fail(f"{reason}; {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def read_state(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of keystone.env."""
    state: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            state[key.strip()] = value.strip().strip("'\"")
    return state


@dataclass(frozen=True)
class KeystoneSite:
    url: str  # the identity v3 endpoint, ending in /v3
    admin_password: str
    service_user: str
    service_password: str


def keystone_site() -> KeystoneSite:
    directory = os.environ.get(KEYSTONE_DIR_ENV)
    if not directory:
        unavailable(f"{KEYSTONE_DIR_ENV} is not set")
    assert directory is not None
    state_file = Path(directory) / "keystone.env"
    if not state_file.is_file():
        unavailable(f"{state_file} does not exist")
    state = read_state(state_file)
    url = state.get("KEYSTONE_URL") or f"http://127.0.0.1:{state['KEYSTONE_PORT']}/v3"
    try:
        httpx.get(url, timeout=30).raise_for_status()
    except httpx.HTTPError as exc:
        unavailable(f"Keystone at {url} is not reachable ({exc.__class__.__name__}: {exc})")
    return KeystoneSite(
        url=url,
        admin_password=state["ADMIN_PASSWORD"],
        service_user=state.get("SERVICE_USER", "glance"),
        service_password=state["SERVICE_PASSWORD"],
    )


def issue_token(site: KeystoneSite, auth: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """POST /v3/auth/tokens; the token and its body."""
    r = httpx.post(site.url + "/auth/tokens", json={"auth": auth}, timeout=KEYSTONE_TIMEOUT)
    assert r.status_code == 201, f"Keystone refused a token: {r.status_code} {r.text}"
    return r.headers["X-Subject-Token"], r.json()["token"]


def password_auth(user_id: str, password: str, project_id: str) -> dict[str, Any]:
    return {
        "identity": {"methods": ["password"],
                     "password": {"user": {"id": user_id, "password": password}}},
        "scope": {"project": {"id": project_id}},
    }


class KeystoneAdmin:
    """The few identity API calls the fixtures need, as the cloud admin."""

    def __init__(self, site: KeystoneSite):
        token, _ = issue_token(site, {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"},
                "password": site.admin_password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        })
        self.token = token
        self.http = httpx.Client(base_url=site.url, headers={"X-Auth-Token": token},
                                 timeout=KEYSTONE_TIMEOUT)

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> httpx.Response:
        r = self.http.request(method, path, **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def role_ids(self) -> dict[str, str]:
        roles = self.call("GET", "/roles", 200).json()["roles"]
        return {role["name"]: role["id"] for role in roles}

    def project_id(self, name: str) -> str:
        projects = self.call("GET", "/projects", 200, params={"name": name}).json()["projects"]
        assert len(projects) == 1, f"expected one project named {name}: {projects}"
        return projects[0]["id"]

    def create_project(self, name: str) -> str:
        body = {"project": {"name": name, "domain_id": "default",
                            "description": "Glimpse RBAC tests; safe to delete"}}
        return self.call("POST", "/projects", 201, json=body).json()["project"]["id"]

    def create_user(self, name: str, password: str) -> str:
        body = {"user": {"name": name, "password": password, "domain_id": "default"}}
        return self.call("POST", "/users", 201, json=body).json()["user"]["id"]

    def grant(self, project_id: str, user_id: str, role_id: str) -> None:
        self.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}", 204)

    def revoke_token(self, token: str) -> None:
        self.call("DELETE", "/auth/tokens", 204, headers={"X-Subject-Token": token})

    def delete(self, path: str) -> None:
        r = self.http.delete(path)
        assert r.status_code in (204, 404), f"DELETE {path}: {r.status_code} {r.text}"

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True)
class Persona:
    key: str
    user_id: str
    password: str
    project_id: str
    token: str
    roles: tuple[str, ...]  # as Keystone put them in the token (implied roles included)

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@dataclass
class Identities:
    site: KeystoneSite
    admin: KeystoneAdmin
    project_a: str
    project_b: str
    service_project: str
    personas: dict[str, Persona] = field(default_factory=dict)
    app_credentials: list[tuple[str, str]] = field(default_factory=list)  # (user, credential)

    def __getitem__(self, key: str) -> Persona:
        return self.personas[key]

    def create_app_credential(self, key: str, **attrs: Any) -> dict[str, Any]:
        """An application credential of a persona (deleted again at teardown)."""
        p = self.personas[key]
        body = {"name": "glimpse-rbac-" + uuid.uuid4().hex[:8], **attrs}
        r = httpx.post(f"{self.site.url}/users/{p.user_id}/application_credentials",
                       headers=p.headers(), json={"application_credential": body},
                       timeout=KEYSTONE_TIMEOUT)
        assert r.status_code == 201, r.text
        credential = r.json()["application_credential"]
        self.app_credentials.append((p.user_id, credential["id"]))
        return credential

    def fresh_token(self, key: str) -> tuple[str, dict[str, Any]]:
        """Another token for the same user and project (one a test may revoke)."""
        p = self.personas[key]
        return issue_token(self.site, password_auth(p.user_id, p.password, p.project_id))


PERSONA_ROLES = {  # key -> (project, role)
    "a_admin": ("A", "admin"),
    "a_member": ("A", "member"),
    "a_reader": ("A", "reader"),
    "b_member": ("B", "member"),
    "service": ("service", "service"),
}


@pytest.fixture(scope="package")
def identities() -> Iterator[Identities]:
    site = keystone_site()
    admin = KeystoneAdmin(site)
    run = "glimpse-rbac-" + uuid.uuid4().hex[:8]
    users: list[str] = []
    projects: list[str] = []
    ids: Identities | None = None
    try:
        role_ids = admin.role_ids()
        service_project = admin.project_id("service")
        projects.append(admin.create_project(f"{run}-A"))
        projects.append(admin.create_project(f"{run}-B"))
        ids = Identities(site, admin, projects[0], projects[1], service_project)
        project_of = {"A": ids.project_a, "B": ids.project_b, "service": service_project}
        for key, (project, role) in PERSONA_ROLES.items():
            password = uuid.uuid4().hex
            user_id = admin.create_user(f"{run}-{key}", password)
            users.append(user_id)
            admin.grant(project_of[project], user_id, role_ids[role])
            token, body = issue_token(site, password_auth(user_id, password, project_of[project]))
            ids.personas[key] = Persona(key, user_id, password, project_of[project], token,
                                        tuple(r["name"] for r in body["roles"]))
        yield ids
    finally:
        # One by one: deleting a user deletes its application credentials in
        # bulk, which on Keystone's SQLite leaves their role rows behind and
        # then makes every later application credential a 409 Conflict.
        for user_id, credential_id in ids.app_credentials if ids is not None else ():
            admin.delete(f"/users/{user_id}/application_credentials/{credential_id}")
        for user_id in users:
            admin.delete(f"/users/{user_id}")
        for project_id in projects:
            admin.delete(f"/projects/{project_id}")
        admin.close()


def glimpse_config(site: KeystoneSite, token_cache_time: int = 30,
                   negative_cache_time: int = 30) -> str:
    """glance-api.conf text (after [DEFAULT]) for a Glimpse that validates tokens."""
    return "\n".join([
        "auth_strategy = keystone",
        "",
        "[keystone_authtoken]",
        f"auth_url = {site.url}",
        f"www_authenticate_uri = {site.url}",
        "auth_type = password",
        f"username = {site.service_user}",
        f"password = {site.service_password}",
        "project_name = service",
        "user_domain_name = Default",
        "project_domain_name = Default",
        f"token_cache_time = {token_cache_time}",
        f"negative_cache_time = {negative_cache_time}",
        f"http_connect_timeout = {int(KEYSTONE_TIMEOUT)}",
    ])


def start_keystone_server(tmp_path: Path, site: KeystoneSite, **config: int) -> LiveServer:
    """A live ``glimpse serve`` on SQLite with auth_strategy = keystone."""
    return start_server(tmp_path, None, config_text=glimpse_config(site, **config))


@pytest.fixture(scope="module")
def glimpse(tmp_path_factory: pytest.TempPathFactory,
            identities: Identities) -> Iterator[LiveServer]:
    server = start_keystone_server(tmp_path_factory.mktemp("rbac"), identities.site)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(glimpse: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=glimpse.url, timeout=KEYSTONE_TIMEOUT) as client:
        yield client
