"""Cross-origin resource sharing, answered as oslo.middleware's CORS filter does.

Nothing is allowed until ``[cors] allowed_origin`` names an origin (or ``*``). A
preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here,
200 with an empty body, and carries the permission headers only when the origin, the
method and every requested header are allowed; the browser refuses otherwise. An
actual request from an allowed origin gets Access-Control-Allow-Origin (the origin
itself), -Allow-Credentials and -Expose-Headers on whatever the API answers.
"""

from __future__ import annotations

from oslo_config import cfg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Headers a browser may always send (CORS "simple" request headers).
SIMPLE_HEADERS = ("cache-control", "content-language", "content-type", "expires",
                  "last-modified", "pragma")


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class CORSMiddleware:
    def __init__(self, app: ASGIApp, conf: cfg.ConfigOpts):
        self.app = app
        c = conf.cors
        self.origins = set(c.allowed_origin or ())
        self.credentials = c.allow_credentials
        self.expose = ",".join(c.expose_headers or ())
        self.max_age = c.max_age
        self.methods = {m.upper() for m in (c.allow_methods or ())}
        self.headers = {h.lower() for h in (c.allow_headers or ())} | set(SIMPLE_HEADERS)

    def _allowed(self, origin: str) -> bool:
        return origin in self.origins or "*" in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.origins:
            await self.app(scope, receive, send)
            return
        origin = request_method = None
        request_headers = ""
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                request_method = value.decode("latin-1")
            elif name == b"access-control-request-headers":
                request_headers = value.decode("latin-1")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and request_method is not None:
            await self._preflight(origin, request_method, _split(request_headers), send)
            return
        if not self._allowed(origin):
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"access-control-allow-origin",)]
                headers += self._origin_headers(origin, headers)
                if self.expose:
                    headers.append((b"access-control-expose-headers", self.expose.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _origin_headers(self, origin: str,
                        existing: list[tuple[bytes, bytes]] | None = None,
                        ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        vary = [v for k, v in (existing or []) if k.lower() == b"vary"]
        if not vary:
            out.append((b"vary", b"Origin"))
        elif b"origin" not in vary[0].lower():
            existing.remove((next(k for k, _ in existing if k.lower() == b"vary"), vary[0]))
            out.append((b"vary", vary[0] + b",Origin"))
        out.append((b"access-control-allow-origin", origin.encode("latin-1")))
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    async def _preflight(self, origin: str, method: str, requested: list[str],
                         send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"content-length", b"0"),
                                              (b"content-type", b"text/html; charset=UTF-8")]
        if (self._allowed(origin) and method.upper() in self.methods
                and all(h.lower() in self.headers for h in requested)):
            headers += self._origin_headers(origin)
            if self.max_age:
                headers.append((b"access-control-max-age", str(self.max_age).encode()))
            headers.append((b"access-control-allow-methods", method.encode("latin-1")))
            if requested:
                headers.append((b"access-control-allow-headers",
                                ",".join(requested).encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
