"""Version discovery and negotiation, in front of everything else (as Glance's
``versionnegotiation`` filter sits before authentication and the request-id
middleware, so these answers carry no ``x-openstack-request-id``).

- ``/versions`` (and anything below it), any method: 200 with the versions document.
- ``/``, and a path whose first segment names a version this configuration does
  not offer (``/v1/images``, ``/v3``, ``/v2.99``): 300 with the same document.
- A path under an offered minor version (``/v2.17/images``) is served as ``/v2/...``.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

from oslo_config import cfg
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

_VERSION_SEGMENT = re.compile(r"^v\d+(\.\d+)?$")


def _opt(conf: cfg.ConfigOpts, name: str) -> Any:
    try:
        return conf[name]
    except (cfg.NoSuchOptError, KeyError):
        return None


def version_list(conf: cfg.ConfigOpts) -> list[tuple[str, str]]:
    """(version, status) in the order Glance lists them for this configuration:
    the cache API versions only with ``image_cache_dir``, the multi-store ones only
    with ``enabled_backends``."""
    cache, multi = bool(_opt(conf, "image_cache_dir")), bool(_opt(conf, "enabled_backends"))
    listed: list[tuple[str, str]] = []
    if cache:
        listed += [("2.18", "CURRENT")] + [(f"2.{m}", "SUPPORTED") for m in (17, 16, 15, 14)]
    else:
        listed += [("2.15", "SUPPORTED")]
    if multi:
        listed += [(f"2.{m}", "SUPPORTED") for m in (13, 12, 11, 10, 9, 8)]
    else:
        listed += [("2.9", "SUPPORTED")]
    if not cache:
        listed += [("2.17", "CURRENT")]
    listed += [(f"2.{m}", "SUPPORTED") for m in range(7, -1, -1)]
    return listed


def offered_segments(conf: cfg.ConfigOpts) -> frozenset[str]:
    """The first path segments that select API v2 (``v2`` and each listed minor)."""
    return frozenset({"v2", *(f"v{version}" for version, _ in version_list(conf))})


def versions_doc(conf: cfg.ConfigOpts, base_url: str) -> dict[str, Any]:
    base = (conf.public_endpoint or base_url).rstrip("/")
    return {"versions": [
        {"id": f"v{version}", "status": status,
         "links": [{"rel": "self", "href": f"{base}/v2/"}]}
        for version, status in version_list(conf)]}


# What the router would have put in scope["route"] for the answers given here.
_ANSWERED_HERE = {path: SimpleNamespace(path=path) for path in ("/", "/versions")}


class VersionNegotiation:
    """Pure ASGI middleware; the outermost layer of the application."""

    def __init__(self, app: ASGIApp, conf: cfg.ConfigOpts):
        self.app = app
        self.conf = conf
        self.offered = offered_segments(conf)
        self._body: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        first, _, rest = path.lstrip("/").partition("/")
        if first == "versions":
            scope["route"] = _ANSWERED_HERE["/versions"]  # for the metrics' route label
            await self._answer(scope, receive, send, 200)
            return
        if not first or (_VERSION_SEGMENT.match(first) and first not in self.offered):
            scope["route"] = _ANSWERED_HERE["/"]
            await self._answer(scope, receive, send, 300)
            return
        if first != "v2" and first in self.offered:
            new_path = "/v2/" + rest if rest or path.endswith("/") else "/v2"
            # In place: the outer middlewares see the route the router picks.
            scope["path"] = new_path
            scope["raw_path"] = new_path.encode("latin-1")
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, status: int) -> None:
        base = str(Request(scope).base_url)
        body = self._body.get(base)
        if body is None:
            body = json.dumps(versions_doc(self.conf, base), separators=(",", ":")).encode()
            if len(self._body) < 64:  # a few Host spellings, not one per client
                self._body[base] = body
        await Response(body, status_code=status,
                       media_type="application/json; charset=UTF-8")(scope, receive, send)
