"""[cors] as oslo.middleware answers it, and reverse-proxy headers in absolute links."""

from __future__ import annotations

from starlette.testclient import TestClient

ORIGIN = "https://dashboard.example.test"
CORS = {"cors.allowed_origin": [ORIGIN], "cors.max_age": 600}


def _preflight(client: TestClient, origin: str = ORIGIN, method: str = "PUT",
               headers: str = "X-Auth-Token,Content-Type"):  # noqa: ANN202
    return client.options("/v2/images", headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers})


def test_nothing_is_allowed_when_unset(client: TestClient) -> None:
    r = client.get("/v2/images", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    r = _preflight(client)
    assert "access-control-allow-origin" not in r.headers


def test_preflight_from_an_allowed_origin(app_factory) -> None:  # noqa: ANN001
    r = _preflight(app_factory(**CORS))
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-max-age"] == "600"
    assert r.headers["access-control-allow-methods"] == "PUT"
    assert r.headers["access-control-allow-headers"] == "X-Auth-Token,Content-Type"
    assert r.headers["vary"] == "Origin"


def test_preflight_refusals_carry_no_permission(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**CORS)
    for r in (_preflight(client, origin="https://evil.example.test"),
              _preflight(client, method="TRACE"),  # not in Glance's allow_methods
              _preflight(client, headers="X-Not-Allowed")):
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-methods" not in r.headers


def test_preflight_needs_no_token(app_factory) -> None:  # noqa: ANN001
    client = app_factory(auth_strategy="trusted-headers", **CORS)
    assert client.get("/v2/images").status_code == 401
    assert _preflight(client).headers["access-control-allow-origin"] == ORIGIN


def test_actual_request_gets_origin_and_exposed_headers(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**CORS, **{"cors.allow_credentials": False,
                                    "cors.expose_headers": ["X-OpenStack-Request-ID"]})
    r = client.post("/v2/images", json={"name": "x"}, headers={"Origin": ORIGIN})
    assert r.status_code == 201
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-expose-headers"] == "X-OpenStack-Request-ID"
    assert "access-control-allow-credentials" not in r.headers
    # errors too: a browser script must be able to read why it was refused
    r = client.get("/v2/images/nope", headers={"Origin": ORIGIN})
    assert r.status_code == 404
    assert r.headers["access-control-allow-origin"] == ORIGIN
    r = client.get("/v2/images", headers={"Origin": "https://other.example.test"})
    assert "access-control-allow-origin" not in r.headers


def test_wildcard_allows_any_origin(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**{"cors.allowed_origin": ["*"]})
    r = client.get("/versions", headers={"Origin": "https://anything.example.test"})
    assert r.headers["access-control-allow-origin"] == "https://anything.example.test"


def _links(client: TestClient, headers: dict[str, str]) -> tuple[str, str]:
    versions = client.get("/versions", headers=headers).json()["versions"]
    created = client.post("/v2/images", json={"name": "p"}, headers=headers)
    return versions[0]["links"][0]["href"], created.headers["location"]


def test_proxy_headers_ignored_unless_enabled(client: TestClient) -> None:
    href, location = _links(client, {"X-Forwarded-Proto": "https",
                                     "X-Forwarded-Host": "images.example.test"})
    assert href.startswith("http://testserver/")
    assert location.startswith("http://testserver/v2/images/")


def test_x_forwarded_proto_and_host(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**{"oslo_middleware.enable_proxy_headers_parsing": True})
    href, location = _links(client, {"X-Forwarded-Proto": "https",
                                     "X-Forwarded-Host": "images.example.test:8443"})
    assert href == "https://images.example.test:8443/v2/"
    assert location.startswith("https://images.example.test:8443/v2/images/")


def test_forwarded_header_wins(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**{"oslo_middleware.enable_proxy_headers_parsing": True})
    href, location = _links(client, {
        "Forwarded": 'for=192.0.2.1;proto=https;host="glance.example.test", for=10.0.0.1',
        "X-Forwarded-Proto": "http", "X-Forwarded-Host": "wrong.example.test"})
    assert href == "https://glance.example.test/v2/"
    assert location.startswith("https://glance.example.test/v2/images/")


def test_public_endpoint_overrides_proxy_headers(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**{"oslo_middleware.enable_proxy_headers_parsing": True,
                            "public_endpoint": "https://public.example.test:9292"})
    href, location = _links(client, {"X-Forwarded-Proto": "http",
                                     "X-Forwarded-Host": "internal.example.test"})
    assert href == "https://public.example.test:9292/v2/"
    assert location.startswith("https://public.example.test:9292/v2/images/")
