"""A live Glimpse with two workers validating real Keystone tokens through memcached."""

from __future__ import annotations

from pathlib import Path

import httpx
from pymemcache.client.base import Client

from tests.conftest import start_server
from tests.ops.conftest import memcached  # noqa: F401  (the fixture)
from tests.rbac.conftest import Identities, glimpse_config


def _items(server: str) -> int:
    host, port = server.split(":")
    return int(Client((host, int(port))).stats()[b"curr_items"])


def test_two_workers_share_tokens_in_memcached(tmp_path: Path, identities: Identities,
                                               memcached: str) -> None:  # noqa: F811
    config = glimpse_config(identities.site) + (
        f"\nmemcached_servers = {memcached}\nmemcache_security_strategy = ENCRYPT\n"
        "memcache_secret_key = rbac-test-secret\n")
    server = start_server(tmp_path, None, config_text=config, workers=2)
    try:
        before = _items(memcached)
        member = identities["a_member"]
        for _ in range(4):
            r = httpx.get(server.url + "/v2/images", headers=member.headers(), timeout=120)
            assert r.status_code == 200, r.text
        after_valid = _items(memcached)
        assert after_valid == before + 1, "one shared entry for the token, whichever worker"
        r = httpx.get(server.url + "/v2/images", headers={"X-Auth-Token": "not-a-token"},
                      timeout=120)
        assert r.status_code == 401
        assert _items(memcached) == after_valid + 1, "the refusal is shared too"
    finally:
        server.stop()
