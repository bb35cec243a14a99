"""Keystone tokens cached in a real memcached, shared, protected by MAC or ENCRYPT."""

from __future__ import annotations

import time
import uuid

import pytest
from pymemcache.client.base import Client

from glimpse.api.keystone import TokenInfo, TokenValidator
from glimpse.api.token_cache import CacheConfigError, MemcacheTokenCache
from glimpse.config import load_config


def _info(user: str = "user-1") -> TokenInfo:
    return TokenInfo(user_id=user, user_domain_id="default", project_id="proj-1",
                     project_domain_id="default", domain_id=None, system_scope=None,
                     roles=("member", "reader"), expires_at=time.time() + 600)


def _raw(server: str) -> Client:
    host, port = server.split(":")
    return Client((host, int(port)))


def _validator(server: str, **extra: str) -> TokenValidator:
    overrides = {"keystone_authtoken.auth_url": "http://127.0.0.1:1/v3",
                 "keystone_authtoken.memcached_servers": [server]}
    overrides.update({f"keystone_authtoken.{k}": v for k, v in extra.items()})
    conf = load_config([], {"auth_strategy": "keystone"})
    from glimpse.api import keystone

    keystone.register_opts(conf)
    for key, value in overrides.items():
        group, name = key.split(".")
        conf.set_override(name, value, group=group)
    return TokenValidator(conf)


@pytest.mark.parametrize("strategy", [None, "MAC", "ENCRYPT"])
def test_workers_share_validated_tokens(memcached: str, strategy: str | None) -> None:
    extra = {"memcache_security_strategy": strategy, "memcache_secret_key": "s3cret"} \
        if strategy else {}
    worker_a, worker_b = _validator(memcached, **extra), _validator(memcached, **extra)
    token = "tok-" + uuid.uuid4().hex
    assert worker_b.cached(token) == (False, None)
    worker_a.cache.put(("valid", token), _info(), 30)
    hit, info = worker_b.cached(token)
    assert hit and info == _info().__class__(**{**_info().__dict__,
                                                "expires_at": info.expires_at})
    worker_a.cache.put(("refused", False, "bad-" + token), None, 30)
    assert worker_b.cached("bad-" + token) == (True, None)


def test_the_token_never_appears_in_memcached(memcached: str) -> None:
    cache = MemcacheTokenCache([memcached], "ENCRYPT", "s3cret")
    token = "tok-" + uuid.uuid4().hex
    cache.put(("valid", token), _info("user-secretive"), 30)
    key = cache.memcache_key(("valid", token))
    assert token not in key
    blob = _raw(memcached).get(key)
    assert blob is not None
    assert b"user-secretive" not in blob and token.encode() not in blob
    # plain (no strategy): the value is readable, the key is still a digest
    plain = MemcacheTokenCache([memcached], None, None)
    plain.put(("valid", token), _info("user-visible"), 30)
    assert token not in plain.memcache_key(("valid", token))
    assert b"user-visible" in _raw(memcached).get(plain.memcache_key(("valid", token)))


@pytest.mark.parametrize("strategy", ["MAC", "ENCRYPT"])
def test_a_tampered_entry_is_ignored(memcached: str, strategy: str) -> None:
    cache = MemcacheTokenCache([memcached], strategy, "s3cret")
    token = "tok-" + uuid.uuid4().hex
    cache.put(("valid", token), _info("honest"), 30)
    key = cache.memcache_key(("valid", token))
    blob = bytearray(_raw(memcached).get(key))
    if strategy == "MAC":
        blob[40:] = bytes(blob[40:]).replace(b"honest", b"forged")
    else:
        blob[-1] ^= 1
    _raw(memcached).set(key, bytes(blob), noreply=False)
    assert cache.get(("valid", token)) == (False, None)


def test_another_secret_cannot_read_or_forge(memcached: str) -> None:
    token = "tok-" + uuid.uuid4().hex
    ours = MemcacheTokenCache([memcached], "MAC", "s3cret")
    theirs = MemcacheTokenCache([memcached], "MAC", "other")
    ours.put(("valid", token), _info(), 30)
    assert theirs.get(("valid", token)) == (False, None)  # another key entirely
    _raw(memcached).set(ours.memcache_key(("valid", token)),
                        _raw(memcached).get(theirs.memcache_key(("valid", token))) or b"x",
                        noreply=False)
    assert ours.get(("valid", token)) == (False, None)


def test_entries_expire_with_token_cache_time(memcached: str) -> None:
    cache = MemcacheTokenCache([memcached], "MAC", "s3cret")
    token = "tok-" + uuid.uuid4().hex
    cache.put(("valid", token), _info(), 1)
    assert cache.get(("valid", token))[0] is True
    time.sleep(2.1)
    assert cache.get(("valid", token)) == (False, None)


def test_strategy_needs_a_secret() -> None:
    with pytest.raises(CacheConfigError, match="memcache_secret_key is required"):
        MemcacheTokenCache(["127.0.0.1:1"], "MAC", None)


def test_an_unreachable_memcached_is_a_miss_not_an_error(caplog) -> None:  # noqa: ANN001
    from tests.conftest import free_port

    cache = MemcacheTokenCache([f"127.0.0.1:{free_port()}"], None, None, timeout=0.5)
    cache.put(("valid", "t"), _info(), 30)
    assert cache.get(("valid", "t")) == (False, None)
    assert "memcached is not usable" in caplog.text
