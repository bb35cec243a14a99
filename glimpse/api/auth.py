"""Who is asking: the one place that turns request headers into a RequestContext.

Strategies ([DEFAULT] auth_strategy):
- noauth: embedded default. Without identity headers the caller is an admin
  with no project (Glance's unauthenticated pipeline). With
  ``X-Identity-Status: Confirmed`` the context is read from the headers, so
  local tools and tests can act as any project. Never expose it to a network.
- trusted-headers: an authenticating proxy in front sets the headers;
  requests without ``X-Identity-Status: Confirmed`` get 401.
- keystone: every request carries ``X-Auth-Token``, validated against
  Keystone (glimpse.api.keystone); ``X-Service-Token`` lets a service act
  for a user, as keystonemiddleware allows.

Version discovery (``/``, ``/versions``) and ``/healthcheck`` need no identity,
as in Glance's pipeline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace

import anyio
from oslo_config import cfg

from glimpse.api.keystone import TokenInfo, TokenValidator
from glimpse.config import effective_auth_strategy
from glimpse.context import RequestContext
from glimpse.errors import Unauthorized
from glimpse.policy import Policy

LOG = logging.getLogger(__name__)

ADMIN_ROLE = "admin"
NOAUTH_ROLES = ("admin", "member", "reader")


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(r.strip().lower() for r in value.split(",") if r.strip())


def service_catalog(header: str | None) -> tuple:
    """keystonemiddleware's X-Service-Catalog (a JSON list); () when absent or bad."""
    if not header:
        return ()
    try:
        catalog = json.loads(header)
    except ValueError:
        LOG.warning("Ignoring an X-Service-Catalog header that is not JSON")
        return ()
    return tuple(catalog) if isinstance(catalog, list) else ()


def context_from_headers(headers: Mapping[str, str], request_id: str) -> RequestContext:
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
        service_catalog=service_catalog(headers.get("x-service-catalog")),
        request_id=request_id,
    )


def authenticate(strategy: str, headers: Mapping[str, str], request_id: str) -> RequestContext:
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


UNAUTHENTICATED_PATHS = frozenset({"/", "/versions", "/healthcheck"})


class Authenticator:
    """Turns a request's headers into a RequestContext, per the configured strategy."""

    def __init__(self, conf: cfg.ConfigOpts, policy: Policy | None = None):
        self.policy = policy
        self.strategy = effective_auth_strategy(conf)
        self.keystone = TokenValidator(conf) if self.strategy == "keystone" else None

    async def __call__(self, path: str, headers: Mapping[str, str],
                       request_id: str) -> RequestContext:
        if path in UNAUTHENTICATED_PATHS:
            return RequestContext(request_id=request_id)
        if self.keystone is None:
            ctx = authenticate(self.strategy, headers, request_id)
        else:
            ctx = await self._keystone(headers, request_id)
        return self._with_admin_flag(ctx)

    def _with_admin_flag(self, ctx: RequestContext) -> RequestContext:
        """is_admin comes from the context_is_admin policy rule, as in Glance, so an
        operator's policy file decides who is an administrator."""
        if self.policy is None or (ctx.is_admin and ctx.project_id is None
                                   and ctx.user_id is None):
            return ctx  # noauth's anonymous admin stays admin
        is_admin = self.policy.check_is_admin(ctx)
        return ctx if is_admin == ctx.is_admin else replace(ctx, is_admin=is_admin)

    async def _token(self, token: str, allow_expired: bool = False) -> TokenInfo | None:
        assert self.keystone is not None
        hit, info = self.keystone.cached(token, allow_expired)
        if hit:
            return info
        return await anyio.to_thread.run_sync(self.keystone.validate, token, allow_expired)

    async def _keystone(self, headers: Mapping[str, str], request_id: str) -> RequestContext:
        ks = self.keystone
        assert ks is not None
        token = headers.get("x-auth-token")
        if not token:
            raise ks.unauthorized("no X-Auth-Token")
        # As keystonemiddleware: the service token first, because a valid one
        # that carries a service role lets the user's token be expired (not
        # revoked), so a service can finish what a user started.
        service_token = headers.get("x-service-token")
        service: TokenInfo | None = None
        allow_expired = False
        if service_token:
            service = await self._token(service_token)
            if service is None:
                raise ks.unauthorized("invalid service token")
            required = {r.lower() for r in ks.group.service_token_roles}
            has_service_role = bool(required & set(service.roles))
            if ks.group.service_token_roles_required and not has_service_role:
                raise ks.unauthorized("service token without a service role")
            allow_expired = has_service_role
        info = await self._token(token, allow_expired)
        if info is None:
            raise ks.unauthorized("invalid user token")
        return RequestContext(
            user_id=info.user_id,
            project_id=info.project_id,
            roles=info.roles,
            service_roles=service.roles if service else (),
            is_admin=ADMIN_ROLE in info.roles,
            auth_token=token,
            service_token=service_token,
            user_domain_id=info.user_domain_id,
            project_domain_id=info.project_domain_id,
            domain_id=info.domain_id,
            system_scope=info.system_scope,
            service_user_id=service.user_id if service else None,
            service_project_id=service.project_id if service else None,
            service_catalog=tuple(info.catalog),
            request_id=request_id,
        )
