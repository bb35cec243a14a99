"""Token validation against the real Keystone, as keystonemiddleware does it for Glance.

Live servers (conftest.py): ``glimpse`` caches tokens (token_cache_time = 30);
``uncached`` (token_cache_time = 0) asks Keystone on every request. The cache
itself is measured in process: a real ``TokenValidator`` talks to Keystone
through a small counting HTTP proxy, so a validation answered from the cache
is one that never reached Keystone.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpse.api import keystone
from glimpse.config import load_config
from tests.conftest import LiveServer
from tests.rbac.conftest import (
    KEYSTONE_TIMEOUT,
    Identities,
    KeystoneSite,
    issue_token,
    start_keystone_server,
)

BOGUS_TOKEN = "gAAAAAB-glimpse-bogus-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def uncached(tmp_path_factory: pytest.TempPathFactory,
             identities: Identities) -> Iterator[httpx.Client]:
    """A second live server that validates every request with Keystone."""
    server: LiveServer = start_keystone_server(tmp_path_factory.mktemp("uncached"),
                                               identities.site, token_cache_time=0,
                                               negative_cache_time=0)
    with httpx.Client(base_url=server.url, timeout=KEYSTONE_TIMEOUT) as client:
        yield client
    server.stop()


def assert_unauthorized(r: httpx.Response, site: KeystoneSite) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == f'Keystone uri="{site.url}"'
    # keystonemiddleware refuses before Glance's request-id middleware runs.
    assert "x-openstack-request-id" not in r.headers


# ---------------------------------------------------------------- no token needed


def test_version_discovery_needs_no_token(api: httpx.Client, identities: Identities) -> None:
    r = api.get("/")
    assert r.status_code == 300
    assert {v["id"] for v in r.json()["versions"]} >= {"v2.0", "v2.1"}
    r = api.get("/versions")
    assert r.status_code == 200
    assert r.json()["versions"]
    # ... while the API itself does need one.
    assert_unauthorized(api.get("/v2/images"), identities.site)


def test_unauthorized_answer_carries_no_request_id(api: httpx.Client,
                                                   identities: Identities) -> None:
    """As Glance behind keystonemiddleware: a refused token gets no request id
    (the matrix checks that accepted requests do)."""
    for headers in ({}, {"X-Auth-Token": BOGUS_TOKEN}):
        r = api.get("/v2/images", headers=headers)
        assert_unauthorized(r, identities.site)


def test_unauthorized_body_is_keystonemiddlewares_json(api: httpx.Client) -> None:
    """keystonemiddleware answers before Glance sees the request, always with
    this JSON document, whatever the client accepts."""
    for accept in (None, "*/*", "application/json", "text/plain"):
        for token in (None, BOGUS_TOKEN):
            headers = {k: v for k, v in (("Accept", accept), ("X-Auth-Token", token)) if v}
            r = api.get("/v2/images", headers=headers)
            assert r.status_code == 401
            assert r.headers["Content-Type"].startswith("application/json"), (accept, r.text)
            assert r.json() == {"error": {
                "code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}}


def test_identity_headers_sent_by_a_client_are_ignored(api: httpx.Client,
                                                       identities: Identities) -> None:
    """Under keystone only the token speaks: a reader claiming admin stays a reader."""
    reader = identities["a_reader"]
    forged = {**reader.headers(), "X-Identity-Status": "Confirmed", "X-Roles": "admin,member",
              "X-Project-Id": identities.project_b, "X-User-Id": "someone-else"}
    r = api.post("/v2/images", json={"name": "forged", "disk_format": "raw",
                                     "container_format": "bare"}, headers=forged)
    assert r.status_code == 403, r.text
    # Without any token the headers alone get nowhere either.
    headers = {k: v for k, v in forged.items() if k != "X-Auth-Token"}
    assert_unauthorized(api.get("/v2/images", headers=headers), identities.site)


# ---------------------------------------------------------------- service tokens


def test_service_token_needs_the_service_role(api: httpx.Client,
                                              identities: Identities) -> None:
    member = identities["a_member"]
    # A valid token of a user without the service role is no service token.
    r = api.get("/v2/images", headers={**member.headers(),
                                       "X-Service-Token": identities["b_member"].token})
    assert_unauthorized(r, identities.site)
    r = api.get("/v2/images", headers={**member.headers(), "X-Service-Token": BOGUS_TOKEN})
    assert_unauthorized(r, identities.site)
    # A service token alone does not make a request authenticated.
    r = api.get("/v2/images", headers={"X-Service-Token": identities["service"].token})
    assert_unauthorized(r, identities.site)
    # With the service role it is accepted, and the request acts as the user.
    r = api.post("/v2/images", json={"name": "on-behalf", "disk_format": "raw",
                                     "container_format": "bare"},
                 headers={**member.headers(), "X-Service-Token": identities["service"].token})
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == identities.project_a


# ---------------------------------------------------------------- revoked and expired


def test_revoked_token_is_refused_at_once_without_a_cache(uncached: httpx.Client,
                                                          identities: Identities) -> None:
    token, _ = identities.fresh_token("a_member")
    assert uncached.get("/v2/images", headers={"X-Auth-Token": token}).status_code == 200
    identities.admin.revoke_token(token)
    assert_unauthorized(uncached.get("/v2/images", headers={"X-Auth-Token": token}),
                        identities.site)
    # A service token lets a user's token be expired, never revoked.
    r = uncached.get("/v2/images", headers={"X-Auth-Token": token,
                                            "X-Service-Token": identities["service"].token})
    assert_unauthorized(r, identities.site)


def test_cached_token_is_not_asked_again(api: httpx.Client, identities: Identities) -> None:
    """token_cache_time is keystonemiddleware's trade-off: within it a token is
    not re-validated, so a revocation is noticed only when the entry ages out.
    Seen from outside, that is the proof that the cache answers."""
    token, _ = identities.fresh_token("a_member")
    headers = {"X-Auth-Token": token}
    assert api.get("/v2/images", headers=headers).status_code == 200
    identities.admin.revoke_token(token)
    assert api.get("/v2/images", headers=headers).status_code == 200


def _validation_latency(identities: Identities) -> float:
    """Seconds Keystone takes to validate a token right now."""
    started = time.monotonic()
    identities.admin.call("GET", "/auth/tokens", 200,
                          headers={"X-Subject-Token": identities["a_member"].token})
    return time.monotonic() - started


def test_expired_token_is_refused_unless_a_service_vouches_for_it(
        api: httpx.Client, uncached: httpx.Client, identities: Identities) -> None:
    """An application credential's expiry caps the expiry of its tokens, which
    gives a real token that expires in seconds. After expiry the token is
    refused (from the cache and by Keystone), except together with a service
    token carrying the service role (keystonemiddleware's allow_expired)."""
    site = identities.site
    # A shared Keystone can be slow: leave time for the few calls that come
    # before the token's first use (create it, issue a token, validate it).
    lifetime = max(6.0, 6 * _validation_latency(identities))
    expires = datetime.now(UTC) + timedelta(seconds=lifetime)
    credential = identities.create_app_credential(
        "a_member", expires_at=expires.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    token, body = issue_token(site, {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": credential["id"], "secret": credential["secret"]}}})
    token_expiry = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert token_expiry <= expires + timedelta(seconds=1)
    headers = {"X-Auth-Token": token}
    vouched = {**headers, "X-Service-Token": identities["service"].token}

    assert api.get("/v2/images", headers=headers).status_code == 200  # cached now
    assert datetime.now(UTC) < token_expiry, "Keystone too slow to use the token in time"
    time.sleep(max(0.0, (token_expiry - datetime.now(UTC)).total_seconds()) + 1)

    for client in (api, uncached):
        assert_unauthorized(client.get("/v2/images", headers=headers), site)
        r = client.post("/v2/images", json={"name": "late", "disk_format": "raw",
                                            "container_format": "bare"}, headers=vouched)
        assert r.status_code == 201, r.text
        assert r.json()["owner"] == identities.project_a


# ---------------------------------------------------------------- the cache, counted


class CountingProxy:
    """Forwards HTTP to Keystone and counts token validations (GET /v3/auth/tokens)."""

    def __init__(self, upstream: str):
        proxy = self
        self.upstream = upstream.rstrip("/")
        self.validations: list[str] = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "GET" and self.path.startswith("/v3/auth/tokens"):
                    with proxy.lock:
                        proxy.validations.append(self.headers.get("X-Subject-Token", ""))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                r = httpx.request(self.command, proxy.upstream + self.path, headers=headers,
                                  content=body, timeout=KEYSTONE_TIMEOUT)
                self.send_response(r.status_code)
                for key, value in r.headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding",
                                           "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_DELETE = forward  # noqa: N815 - http.server hook names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def count(self, token: str) -> int:
        with self.lock:
            return self.validations.count(token)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def proxy(identities: Identities) -> Iterator[CountingProxy]:
    upstream = identities.site.url.removesuffix("/v3")
    counting = CountingProxy(upstream)
    yield counting
    counting.close()


def validator(tmp_path: Path, proxy: CountingProxy, site: KeystoneSite,
              **options: object) -> keystone.TokenValidator:
    conf = load_config([], {"data_dir": str(tmp_path)})
    keystone.register_opts(conf)
    settings: dict[str, object] = {
        "auth_url": proxy.url + "/v3", "username": site.service_user,
        "password": site.service_password, "project_name": "service",
        "http_connect_timeout": int(KEYSTONE_TIMEOUT), **options}
    for name, value in settings.items():
        conf.set_override(name, value, group=keystone.GROUP)
    return keystone.TokenValidator(conf)


def test_token_cache_saves_keystone_calls(tmp_path: Path, proxy: CountingProxy,
                                          identities: Identities) -> None:
    member = identities["a_member"]
    cached = validator(tmp_path, proxy, identities.site)
    first = cached.validate(member.token)
    assert first is not None
    assert (first.project_id, first.user_id) == (identities.project_a, member.user_id)
    assert {"member", "reader"} <= set(first.roles)
    assert "admin" not in first.roles
    assert cached.validate(member.token) == first
    assert proxy.count(member.token) == 1
    # A refusal is remembered too (negative_cache_time), so a burst of bad
    # tokens costs Keystone one call.
    assert cached.validate(BOGUS_TOKEN) is None
    assert cached.validate(BOGUS_TOKEN) is None
    assert proxy.count(BOGUS_TOKEN) == 1

    # keystonemiddleware's "-1 = no cache", as operators' files say it.
    uncached = validator(tmp_path, proxy, identities.site, token_cache_time=-1)
    before = proxy.count(member.token)
    assert uncached.validate(member.token) == first
    assert uncached.validate(member.token) == first
    assert proxy.count(member.token) == before + 2
