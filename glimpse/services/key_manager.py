"""The certificate of a signed image, from castellan's key manager, with the caller's
own token as it is.

castellan's ``KeystoneToken`` credential builds keystoneauth's ``Token`` plugin, which
exchanges the token for a new one (version discovery on Keystone, then ``POST
/v3/auth/tokens``) and hands Barbican a token it has never seen, which it then
validates against Keystone: two slow Keystone calls per certificate. castellan also
takes any oslo.context ``RequestContext`` with a ``get_auth_plugin()`` (the hook Nova
uses for the same reason), and that is what this module gives it: a plugin that sends
the caller's token unchanged. Barbican still validates that token and decides, with
its own policy and ACLs, whether the caller may read the certificate; Glimpse never
reads a secret on anyone's behalf but the caller's. A token Barbican has already seen
is in its token cache, so the key manager costs three short Barbican requests
(version, secret metadata, payload) and no Keystone call at all.

The Barbican endpoint is ``[barbican] barbican_endpoint`` when set; otherwise it is
looked up in the caller's catalog (``GET /v3/auth/catalog`` with the caller's token)
and remembered per project for ``_CATALOG_TTL`` seconds: a URL, not a secret.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from keystoneauth1 import plugin
from oslo_context import context as oslo_context

from glimpse.context import RequestContext

_CATALOG_TTL = 600.0


@dataclass(frozen=True)
class Certificate:
    """What the key manager said: the secret's castellan format and its bytes."""

    format: str
    encoded: bytes


class _CallerToken(plugin.BaseAuthPlugin):
    """A keystoneauth plugin that sends the caller's token unchanged (never exchanges
    it, never re-authenticates: a 401 is final) and finds endpoints in the caller's
    catalog."""

    def __init__(self, ctx: RequestContext, auth_url: str | None):
        super().__init__()
        self._ctx = ctx
        self._auth_url = auth_url

    def get_token(self, session: Any) -> str | None:
        return self._ctx.auth_token

    def get_user_id(self, session: Any) -> str | None:
        return self._ctx.user_id

    def get_project_id(self, session: Any) -> str | None:
        return self._ctx.project_id

    def invalidate(self) -> bool:
        return False  # nothing to renew: the caller's token is the only one

    def get_endpoint(self, session: Any, service_type: str | None = None,  # type: ignore[override]
                     interface: str | None = None, region_name: str | None = None,
                     **kwargs: Any) -> str | None:
        if not self._auth_url or not service_type:
            return None
        return catalog_endpoint(session, self._auth_url, self._ctx, service_type,
                                interface or "public", region_name)


class _CallerContext(oslo_context.RequestContext):
    """The form of credential castellan's Barbican key manager takes with an auth
    plugin of the caller's choosing (``get_auth_plugin``)."""

    def __init__(self, ctx: RequestContext, auth_url: str | None):
        super().__init__(auth_token=ctx.auth_token, user_id=ctx.user_id,
                         project_id=ctx.project_id, request_id=ctx.request_id)
        self._plugin = _CallerToken(ctx, auth_url)

    def get_auth_plugin(self) -> _CallerToken:
        return self._plugin


# (auth_url, project, service type, interface, region) -> (url, when it was found)
_ENDPOINTS: dict[tuple[str, str | None, str, str, str | None], tuple[str, float]] = {}
_ENDPOINTS_LOCK = threading.Lock()


def catalog_endpoint(session: Any, auth_url: str, ctx: RequestContext, service_type: str,
                     interface: str, region_name: str | None) -> str | None:
    """The endpoint of ``service_type`` in the caller's catalog (one ``GET
    /v3/auth/catalog`` per project every ``_CATALOG_TTL`` seconds)."""
    key = (auth_url.rstrip("/"), ctx.project_id, service_type, interface, region_name)
    now = time.monotonic()
    with _ENDPOINTS_LOCK:
        found = _ENDPOINTS.get(key)
    if found is not None and now - found[1] < _CATALOG_TTL:
        return found[0]
    r = session.get(key[0] + "/auth/catalog", authenticated=True,
                    headers={"Accept": "application/json"})
    wanted = interface.removesuffix("URL")  # "publicURL" is the v2 spelling
    for service in r.json().get("catalog", []):
        if service.get("type") != service_type:
            continue
        for endpoint in service.get("endpoints", []):
            if endpoint.get("interface") != wanted:
                continue
            if region_name and region_name not in (endpoint.get("region_id"),
                                                   endpoint.get("region")):
                continue
            url = endpoint["url"]
            with _ENDPOINTS_LOCK:
                _ENDPOINTS[key] = (url, now)
            return url
    return None


# One castellan key manager per configuration object (a ConfigOpts is not hashable).
_KEY_MANAGERS: dict[int, tuple[Any, Any]] = {}
_KEY_MANAGERS_LOCK = threading.Lock()


def _key_manager(conf: Any) -> Any:
    with _KEY_MANAGERS_LOCK:
        found = _KEY_MANAGERS.get(id(conf))
        if found is None or found[0] is not conf:
            from castellan import key_manager

            found = (conf, key_manager.API(conf))
            _KEY_MANAGERS[id(conf)] = found
        return found[1]


def fetch(conf: Any, ctx: RequestContext, cert_uuid: str) -> Certificate:
    """The managed object ``cert_uuid`` as the caller may read it, through castellan
    (``get``: the secret's metadata, then its payload). castellan's exceptions
    (ManagedObjectNotFoundError, KeyManagerError) are left to the caller."""
    credential = _CallerContext(ctx, conf.barbican.auth_endpoint)
    managed = _key_manager(conf).get(credential, cert_uuid)
    return Certificate(managed.format, managed.get_encoded())
