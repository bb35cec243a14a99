"""Projects of the real Keystone, each with a user holding the member role, for the
multi-tenant Swift tests (created for a module, deleted again afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.rbac.conftest import KeystoneAdmin, issue_token, keystone_site, password_auth
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
