"""Validated Keystone tokens shared in memcached by every worker and node.

Used instead of the in-process cache when ``[keystone_authtoken] memcached_servers``
is set. As with keystonemiddleware, the token never appears in memcached: entries
are found by a digest of it, and ``memcache_security_strategy`` protects them with
keys derived from ``memcache_secret_key`` and the token itself, so that knowing the
secret is not enough to read or forge an entry for a token one does not hold:

- ``MAC``: each entry carries an HMAC-SHA256 tag; a tampered entry is ignored (the
  token is validated against Keystone again).
- ``ENCRYPT``: each entry is AES-256-GCM encrypted (which authenticates it too).

The entries are Glimpse's own format: keystonemiddleware instances do not share them.
A memcached that cannot be reached costs a warning and a call to Keystone, never a
refused request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import time
from dataclasses import asdict
from typing import Any

LOG = logging.getLogger(__name__)
STRATEGIES = ("MAC", "ENCRYPT")
_PREFIX = "glimpse-token/"
_WARN_INTERVAL = 60.0


class CacheConfigError(ValueError):
    """memcache_security_strategy and memcache_secret_key do not fit together."""


def _derive(secret: bytes, token: str, purpose: bytes) -> bytes:
    return hmac.new(secret, purpose + b"\0" + token.encode(), hashlib.sha256).digest()


class MemcacheTokenCache:
    """The get/put interface of keystone._Cache, on memcached."""

    def __init__(self, servers: list[str], strategy: str | None, secret: str | None,
                 timeout: float = 3.0):
        from pymemcache.client.hash import HashClient

        self.strategy = (strategy or "").upper() or None
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise CacheConfigError(f"[keystone_authtoken] memcache_security_strategy must be "
                                   f"MAC or ENCRYPT, not {strategy!r}")
        if self.strategy is not None and not secret:
            raise CacheConfigError("[keystone_authtoken] memcache_secret_key is required when "
                                   "memcache_security_strategy is set")
        self.secret = (secret or "").encode()
        hosts = []
        for server in servers:
            host, _, port = server.strip().rpartition(":")
            hosts.append((host.strip("[]") or "127.0.0.1", int(port or 11211)))
        self.client = HashClient(hosts, connect_timeout=timeout, timeout=timeout,
                                 ignore_exc=False, retry_attempts=1, dead_timeout=10)
        self._last_warning = 0.0

    # -- keys and values -------------------------------------------------------------

    def _token_of(self, key: tuple) -> str:
        return key[-1]

    def memcache_key(self, key: tuple) -> str:
        kind = "|".join(str(part) for part in key[:-1])
        token = self._token_of(key)
        if self.strategy:
            digest = _derive(self.secret, token, b"key:" + kind.encode()).hex()
        else:
            digest = hashlib.sha256(f"{kind}|{token}".encode()).hexdigest()
        return _PREFIX + digest

    def _seal(self, key: tuple, payload: bytes) -> bytes:
        token = self._token_of(key)
        if self.strategy == "MAC":
            tag = hmac.new(_derive(self.secret, token, b"mac"), payload, hashlib.sha256)
            return tag.digest() + payload
        if self.strategy == "ENCRYPT":
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            nonce = os.urandom(12)
            return nonce + AESGCM(_derive(self.secret, token, b"enc")).encrypt(
                nonce, payload, None)
        return payload

    def _open(self, key: tuple, blob: bytes) -> bytes | None:
        token = self._token_of(key)
        if self.strategy == "MAC":
            tag, payload = blob[:32], blob[32:]
            want = hmac.new(_derive(self.secret, token, b"mac"), payload,
                            hashlib.sha256).digest()
            return payload if hmac.compare_digest(tag, want) else None
        if self.strategy == "ENCRYPT":
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            try:
                return AESGCM(_derive(self.secret, token, b"enc")).decrypt(
                    blob[:12], blob[12:], None)
            except (InvalidTag, ValueError):
                return None
        return blob

    # -- the cache interface ---------------------------------------------------------

    def get(self, key: tuple) -> tuple[bool, Any]:
        from glimpse.api.keystone import TokenInfo

        try:
            blob = self.client.get(self.memcache_key(key))
        except Exception as exc:  # noqa: BLE001 - a cache must never refuse a request
            self._warn(exc)
            return False, None
        if blob is None:
            return False, None
        payload = self._open(key, blob)
        if payload is None:
            LOG.warning("A cached token entry failed its %s check: ignored", self.strategy)
            return False, None
        doc = json.loads(payload)
        if doc is None:
            return True, None
        doc["roles"] = tuple(doc["roles"])
        doc["catalog"] = tuple(doc.get("catalog") or ())
        return True, TokenInfo(**doc)

    def put(self, key: tuple, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        payload = json.dumps(asdict(value) if value is not None else None).encode()
        try:
            self.client.set(self.memcache_key(key), self._seal(key, payload),
                            expire=max(1, math.ceil(ttl)), noreply=False)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > _WARN_INTERVAL:
            self._last_warning = now
            LOG.warning("memcached is not usable (%s: %s): validating tokens with Keystone "
                        "without the shared cache", exc.__class__.__name__, exc)
