"""Projects of the real Keystone, each with a user holding the member role, for the
multi-tenant Swift tests (created for a module, deleted again afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import LiveServer, start_server
from tests.rbac.conftest import (
    KEYSTONE_TIMEOUT,
    KeystoneAdmin,
    glimpse_config,
    issue_token,
    keystone_site,
    password_auth,
)
from tests.stores import swift_s3_backends as backends


@dataclass(frozen=True)
class Tenant:
    project_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@contextmanager
def keystone_tenants(count: int, prefix: str = "glimpse-mt",
                     roles: tuple[str, ...] = ("member",)) -> Iterator[list[Tenant]]:
    """``count`` projects with a user each holding ``roles`` (the member role by
    default); their tokens' catalogs name the Keystone-auth Swift (registered first)."""
    backends.swift_in_catalog()  # before any token: their catalogs name the Swift
    site = keystone_site()
    admin = KeystoneAdmin(site)
    run = f"{prefix}-{uuid.uuid4().hex[:8]}"
    users: list[str] = []
    projects: list[str] = []
    try:
        role_ids = [admin.role_ids()[role] for role in roles]
        made = []
        for number in range(count):
            project = admin.create_project(f"{run}-{number}")
            projects.append(project)
            password = uuid.uuid4().hex
            user = admin.create_user(f"{run}-{number}", password)
            users.append(user)
            for role_id in role_ids:
                admin.grant(project, user, role_id)
            token, _ = issue_token(site, password_auth(user, password, project))
            made.append(Tenant(project, token))
        yield made
    finally:
        for user in users:
            admin.delete(f"/users/{user}")
        for project in projects:
            admin.delete(f"/projects/{project}")
        admin.close()


def account_url(project_id: str) -> str:
    """The Swift account of ``project_id`` on the Keystone-auth proxy."""
    env = backends.swift_in_catalog()
    return env["SWIFT_KEYSTONE_ENDPOINT"].rsplit("/", 1)[0] + f"/AUTH_{project_id}"


@contextmanager
def multi_tenant_swift_server(where: Path, container: str, *store_lines: str,
                              defaults: tuple[str, ...] = (),
                              sections: tuple[str, ...] = (),
                              ) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A live ``glimpse serve`` validating tokens with the real Keystone, whose one
    store ``tenants`` is multi-tenant Swift found in each token's catalog (segments
    above 4 MB, of 2 MB); ``defaults`` go into [DEFAULT], ``sections`` are more
    sections, ``store_lines`` go into the store's. Yields the server and a client of its API."""
    config = "\n".join([
        "enabled_backends = tenants:swift",
        "show_multiple_locations = true",
        *defaults,
        glimpse_config(keystone_site()),
        *sections,
        "[glance_store]",
        "default_backend = tenants",
        "[tenants]",
        "swift_store_multi_tenant = true",
        f"swift_store_container = {container}",
        f"swift_store_service_type = {backends.TENANT_SERVICE_TYPE}",
        "swift_store_large_object_size = 4",
        "swift_store_large_object_chunk_size = 2",
        *store_lines,
    ])
    live: LiveServer = start_server(where, config_text=config)
    try:
        with httpx.Client(base_url=live.url, timeout=KEYSTONE_TIMEOUT) as client:
            yield live, client
    finally:
        live.stop()
