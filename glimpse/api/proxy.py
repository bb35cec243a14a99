"""Reverse-proxy headers (oslo.middleware's http_proxy_to_wsgi), when enabled.

With ``[oslo_middleware] enable_proxy_headers_parsing``, the scheme and host a client
used are taken from ``Forwarded`` (RFC 7239; its first element) or, without it, from
``X-Forwarded-Proto`` and ``X-Forwarded-Host``, so every absolute link (the versions
document, Location headers) points where the client can reach it. ``public_endpoint``
still wins over both (see :func:`glimpse.api.http.link_base`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


def parse_forwarded(value: str) -> dict[str, str]:
    """The parameters of the first (client-most) element of a Forwarded header."""
    first = value.split(",")[0]
    params: dict[str, str] = {}
    for pair in first.split(";"):
        key, sep, val = pair.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return params


class ProxyHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        forwarded = proto = host = None
        for name, value in scope["headers"]:
            if name == b"forwarded" and forwarded is None:
                forwarded = value.decode("latin-1")
            elif name == b"x-forwarded-proto" and proto is None:
                proto = value.decode("latin-1").split(",")[0].strip()
            elif name == b"x-forwarded-host" and host is None:
                host = value.decode("latin-1").split(",")[0].strip()
        if forwarded is not None:
            params = parse_forwarded(forwarded)
            proto, host = params.get("proto", proto), params.get("host", host)
        if proto or host:
            scope = dict(scope)
            if proto in ("http", "https"):
                scope["scheme"] = proto
            if host:
                scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"]
                scope["headers"].append((b"host", host.encode("latin-1")))
        await self.app(scope, receive, send)
