"""Keystone token validation (what keystonemiddleware's auth_token does for Glance).

The service authenticates to Keystone as its own service user and asks
``GET /v3/auth/tokens`` about each caller's token. Good answers are cached
for ``token_cache_time`` seconds (a cached token is still refused once it has
expired, unless a service token allows expired ones), bad ones for a few
seconds, so a burst of requests with a wrong token costs Keystone one call.
Options keep Glance's ``[keystone_authtoken]`` names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from oslo_config import cfg

from glimpse.errors import ServiceUnavailable, Unauthorized

LOG = logging.getLogger(__name__)

GROUP = "keystone_authtoken"

UNAUTHORIZED_MESSAGE = "The request you have made requires authentication."

opts = [
    cfg.StrOpt("www_authenticate_uri",
               help="Keystone URL given to clients in the WWW-Authenticate header."),
    cfg.StrOpt("auth_uri", deprecated_for_removal=True,
               help="Old name of www_authenticate_uri."),
    cfg.StrOpt("auth_url", help="Keystone URL the service authenticates against."),
    cfg.StrOpt("auth_type", default="password", help="Only 'password' is supported."),
    cfg.StrOpt("username", help="Service user name."),
    cfg.StrOpt("password", secret=True, help="Service user password."),
    cfg.StrOpt("project_name", help="Service user's project."),
    cfg.StrOpt("user_domain_name", default="Default"),
    cfg.StrOpt("project_domain_name", default="Default"),
    cfg.StrOpt("user_domain_id"),
    cfg.StrOpt("project_domain_id"),
    cfg.StrOpt("region_name"),
    cfg.StrOpt("interface", default="internal"),
    cfg.ListOpt("memcached_servers",
                help="host:port of memcached servers: validated tokens are then cached "
                "there, shared by every worker and node (see memcache_security_strategy). "
                "Unset: each worker caches in process."),
    cfg.StrOpt("memcache_security_strategy", choices=["None", "MAC", "ENCRYPT", "mac",
                                                      "encrypt"],
               help="Protect the cached tokens: MAC (authenticated) or ENCRYPT (encrypted "
               "and authenticated), with keys derived from memcache_secret_key."),
    cfg.StrOpt("memcache_secret_key", secret=True,
               help="Secret for memcache_security_strategy; required with it."),
    cfg.FloatOpt("memcache_pool_socket_timeout", default=3.0,
                 help="Seconds to wait for memcached."),
    # keystonemiddleware documents -1 as "no caching"; operators' files say so.
    cfg.IntOpt("token_cache_time", default=300, min=-1,
               help="Seconds a validated token is trusted without asking Keystone again; "
               "0 or -1 disables the cache."),
    cfg.IntOpt("negative_cache_time", default=5, min=0,
               help="(Glimpse) Seconds an invalid token is remembered as invalid."),
    cfg.IntOpt("cache_size", default=10000, min=1,
               help="(Glimpse) Maximum number of tokens kept in the cache."),
    cfg.ListOpt("service_token_roles", default=["service"],
                help="A service token must carry one of these roles."),
    cfg.BoolOpt("service_token_roles_required", default=True,
                help="Refuse service tokens that lack service_token_roles."),
    cfg.BoolOpt("insecure", default=False, help="Skip TLS verification."),
    cfg.StrOpt("cafile", help="CA bundle for TLS to Keystone."),
    cfg.IntOpt("http_connect_timeout", default=10),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    # the group may exist already, holding only the old names (glimpse.legacy_opts)
    if GROUP not in conf or "auth_url" not in conf[GROUP]:
        conf.register_opts(opts, group=GROUP)


@dataclass(frozen=True)
class TokenInfo:
    user_id: str | None
    user_domain_id: str | None
    project_id: str | None
    project_domain_id: str | None
    domain_id: str | None
    system_scope: str | None
    roles: tuple[str, ...]
    expires_at: float
    #: the token's service catalog (Keystone v3 form), for multi-tenant stores
    catalog: tuple = field(default=(), compare=False)


def _parse(body: dict) -> TokenInfo:
    token = body["token"]
    user = token.get("user") or {}
    project = token.get("project") or {}
    domain = token.get("domain") or {}
    system = token.get("system") or {}
    expires = token.get("expires_at")
    expires_ts = (datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
                  if expires else time.time() + 3600)
    return TokenInfo(
        user_id=user.get("id"),
        user_domain_id=(user.get("domain") or {}).get("id"),
        project_id=project.get("id"),
        project_domain_id=(project.get("domain") or {}).get("id"),
        domain_id=domain.get("id"),
        system_scope="all" if system.get("all") else None,
        roles=tuple(r["name"].lower() for r in token.get("roles") or []),
        expires_at=expires_ts,
        catalog=tuple(c for c in token.get("catalog") or () if isinstance(c, dict)),
    )


# Cache keys: a good answer is stored once per token; a refusal per token and
# per allow_expired flag, since Keystone refuses an expired token only without it.
_CacheKey = tuple[str, str] | tuple[str, bool, str]


class _Cache:
    """A small thread-safe LRU with per-entry expiry."""

    def __init__(self, size: int):
        self._size = size
        self._items: OrderedDict[_CacheKey, tuple[float, TokenInfo | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _CacheKey) -> tuple[bool, TokenInfo | None]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            until, value = item
            if until < time.monotonic():
                del self._items[key]
                return False, None
            self._items.move_to_end(key)
            return True, value

    def put(self, key: _CacheKey, value: TokenInfo | None, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class TokenValidator:
    def __init__(self, conf: cfg.ConfigOpts):
        register_opts(conf)
        self.group = conf[GROUP]
        if not self.group.auth_url:
            raise ValueError("[keystone_authtoken] auth_url is required for keystone auth")
        if self.group.auth_type not in ("password", "v3password"):
            raise ValueError("[keystone_authtoken] auth_type must be 'password'")
        self.identity_url = _v3(self.group.auth_url)
        auth = v3.Password(
            auth_url=self.identity_url,
            username=self.group.username,
            password=self.group.password,
            project_name=self.group.project_name,
            user_domain_name=None if self.group.user_domain_id else self.group.user_domain_name,
            user_domain_id=self.group.user_domain_id,
            project_domain_name=(None if self.group.project_domain_id
                                 else self.group.project_domain_name),
            project_domain_id=self.group.project_domain_id,
        )
        verify: bool | str = not self.group.insecure
        if self.group.cafile:
            verify = self.group.cafile
        self.session = ks_session.Session(auth=auth, verify=verify,
                                          timeout=self.group.http_connect_timeout)
        self.cache: Any = _Cache(self.group.cache_size)
        if self.group.memcached_servers:
            from glimpse.api.token_cache import MemcacheTokenCache

            strategy = self.group.memcache_security_strategy
            self.cache = MemcacheTokenCache(
                self.group.memcached_servers,
                None if (strategy or "None") == "None" else strategy,
                self.group.memcache_secret_key, self.group.memcache_pool_socket_timeout)
        www = self.group.www_authenticate_uri or self.group.auth_uri or self.group.auth_url
        self.www_authenticate = f'Keystone uri="{www}"'

    def cached(self, token: str, allow_expired: bool = False) -> tuple[bool, TokenInfo | None]:
        """(known, info) from the cache alone; known=False means ask Keystone."""
        hit, info = self.cache.get(("valid", token))
        if hit and info is not None:
            if allow_expired or info.expires_at > time.time():
                return True, info
            return True, None  # expired since it was cached: refused without a call
        hit, _ = self.cache.get(("refused", allow_expired, token))
        return hit, None

    def validate(self, token: str, allow_expired: bool = False) -> TokenInfo | None:
        """TokenInfo for a valid token, None for an invalid, expired or revoked one.

        ``allow_expired`` (keystonemiddleware's rule: only when the request also
        carries a valid service token with a service role) accepts a token that
        has expired but is not revoked, so a service can finish a long task,
        such as uploading a snapshot, that a user started.
        """
        hit, info = self.cached(token, allow_expired)
        if hit:
            return info
        try:
            resp = self.session.get(self.identity_url + "/auth/tokens",
                                    headers={"X-Subject-Token": token},
                                    params={"allow_expired": "1"} if allow_expired else None,
                                    authenticated=True, raise_exc=False)
        except ks_exc.ClientException as exc:
            LOG.error("Keystone is unreachable: %s", exc)
            raise ServiceUnavailable("The identity service is unavailable.") from None
        if resp.status_code in (401, 403, 404):
            if resp.status_code != 404:
                # Our own service credentials were refused: reauthenticate next time.
                self.session.invalidate()
                LOG.error("Keystone refused the service user (HTTP %s)", resp.status_code)
                raise ServiceUnavailable("The identity service refused this service.")
            self.cache.put(("refused", allow_expired, token), None,
                           self.group.negative_cache_time)
            return None
        if resp.status_code != 200:
            raise ServiceUnavailable(f"Token validation failed with HTTP {resp.status_code}")
        info = _parse(resp.json())
        # Kept past its expiry on purpose: cached() refuses it then without a
        # call, unless expired tokens are allowed for that request.
        self.cache.put(("valid", token), info, self.group.token_cache_time)
        if not allow_expired and info.expires_at <= time.time():
            return None
        return info

    def unauthorized(self, reason: str) -> Unauthorized:
        """The 401 for a refused request. As keystonemiddleware, the reason is
        logged; the caller gets one message whatever the reason."""
        LOG.info("Rejecting request: %s", reason)
        return Unauthorized(UNAUTHORIZED_MESSAGE,
                            headers={"WWW-Authenticate": self.www_authenticate})


def _v3(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def now_utc() -> datetime:
    return datetime.now(UTC)
