"""The request context: who is asking. Built by glimpse.api.auth, read by policy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    user_id: str | None = None
    project_id: str | None = None
    roles: tuple[str, ...] = ()
    service_roles: tuple[str, ...] = ()
    is_admin: bool = False
    auth_token: str | None = None
    service_token: str | None = None
    user_domain_id: str | None = None
    project_domain_id: str | None = None
    domain_id: str | None = None
    system_scope: str | None = None
    service_user_id: str | None = None
    service_project_id: str | None = None
    #: the user's service catalog (Keystone's, or X-Service-Catalog), for stores that
    #: keep data in the user's own account (multi-tenant Swift)
    service_catalog: tuple = field(default=(), compare=False, repr=False)
    request_id: str = field(default_factory=lambda: "req-" + str(uuid.uuid4()))

    @property
    def owner(self) -> str | None:
        """The project that owns what this context creates (Glance's context.owner)."""
        return self.project_id

    def to_policy_values(self) -> dict[str, object]:
        """Credentials as oslo.policy expects them (same keys as oslo.context)."""
        return {
            "user_id": self.user_id,
            "user": self.user_id,
            "project_id": self.project_id,
            "tenant": self.project_id,
            "roles": list(self.roles),
            "service_roles": list(self.service_roles),
            "is_admin": self.is_admin,
            "is_admin_project": True,
            "user_domain_id": self.user_domain_id,
            "project_domain_id": self.project_domain_id,
            "domain_id": self.domain_id,
            "system_scope": self.system_scope,
            "service_user_id": self.service_user_id,
            "service_project_id": self.service_project_id,
        }
