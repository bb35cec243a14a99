"""Who is asking: the one place that turns request headers into a RequestContext.

Strategies ([DEFAULT] auth_strategy):
- noauth: embedded default. Without identity headers the caller is an admin
  with no project (Glance's unauthenticated pipeline). With
  ``X-Identity-Status: Confirmed`` the context is read from the headers, so
  local tools and tests can act as any project. Never expose it to a network.
- trusted-headers: an authenticating proxy in front sets the headers;
  requests without ``X-Identity-Status: Confirmed`` get 401.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from glimpse.context import RequestContext
from glimpse.errors import Unauthorized

ADMIN_ROLE = "admin"
NOAUTH_ROLES = ("admin", "member", "reader")


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(r.strip().lower() for r in value.split(",") if r.strip())


def context_from_headers(headers: Headers, request_id: str) -> RequestContext:
    """Build a context as Glance's ContextMiddleware does after keystonemiddleware."""
    roles = _split(headers.get("x-roles"))
    project = headers.get("x-project-id") or headers.get("x-tenant-id")
    return RequestContext(
        user_id=headers.get("x-user-id") or headers.get("x-user"),
        project_id=project,
        roles=roles,
        service_roles=_split(headers.get("x-service-roles")),
        is_admin=ADMIN_ROLE in roles,
        auth_token=headers.get("x-auth-token"),
        service_token=headers.get("x-service-token"),
        user_domain_id=headers.get("x-user-domain-id"),
        project_domain_id=headers.get("x-project-domain-id"),
        domain_id=headers.get("x-domain-id"),
        system_scope=headers.get("openstack-system-scope") or headers.get("x-system-scope"),
        service_user_id=headers.get("x-service-user-id"),
        service_project_id=headers.get("x-service-project-id"),
        request_id=request_id,
    )


def authenticate(strategy: str, headers: Headers, request_id: str) -> RequestContext:
    confirmed = (headers.get("x-identity-status") or "").lower() == "confirmed"
    if strategy == "noauth":
        if confirmed:
            return context_from_headers(headers, request_id)
        return RequestContext(roles=NOAUTH_ROLES, is_admin=True, request_id=request_id,
                              auth_token=headers.get("x-auth-token"))
    if strategy == "trusted-headers":
        if not confirmed:
            raise Unauthorized("This server requires an authenticated identity.")
        return context_from_headers(headers, request_id)
    raise Unauthorized(f"Authentication strategy '{strategy}' is not available.")
