"""The ASGI application: routes, middleware, and the versions documents."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from oslo_config import cfg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from glimpse.api import cache as cache_api
from glimpse.api import health as health_api
from glimpse.api import imports as imports_api
from glimpse.api import metadefs as metadefs_api
from glimpse.api import v2
from glimpse.api import versions as versions_mod
from glimpse.api.cors import CORSMiddleware
from glimpse.api.http import (
    ContextMiddleware,
    error_response,
    json_response,
    tune_allocator,
)
from glimpse.api.proxy import ProxyHeadersMiddleware
from glimpse.errors import GlimpseError, MethodNotAllowed, NotFound
from glimpse.notify import audit
from glimpse.services import runtime as runtime_mod

LOG = logging.getLogger(__name__)

async def versions(request: Request) -> Response:
    """GET /v2: the versions document (as /versions, through the normal stack)."""
    rt = request.state.runtime
    return json_response(versions_mod.versions_doc(rt.conf, str(request.base_url)), 200)


async def openapi_document(request: Request) -> Response:
    """GET /v2/openapi.json: built from the routes and schemas once per process."""
    from glimpse.api import openapi

    body = getattr(request.app.state, "openapi", None)
    if body is None:
        body = openapi.document_bytes(request.state.runtime.conf, request.app.routes)
        request.app.state.openapi = body
    return Response(body, media_type="application/json")


_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Every method some route accepts on this path (one Route exists per method)."""
    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                allowed |= route.methods
    return ", ".join(m for m in _METHOD_ORDER if m in allowed)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(
            f"The method {request.method} is not allowed for this resource.",
            headers={"Allow": _allowed_methods(request)}), request.headers.get("accept"))
    if exc.status_code == 404:
        return error_response(NotFound("The resource could not be found."),
                              request.headers.get("accept"))
    err = GlimpseError(exc.detail)
    err.status, err.title = exc.status_code, exc.detail
    return error_response(err, request.headers.get("accept"))


async def _glimpse_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GlimpseError)
    return error_response(exc, request.headers.get("accept"))


# --- graceful stop (issue 18) ----------------------------------------------------------
# Under uvicorn, shutdown runs once the grace period (graceful_shutdown_timeout) is over:
# what is still uploading is cut short here and rolled back before the process exits.
# Granian runs it only once every request has ended; its workers cut uploads short at
# the end of the grace period themselves (glimpse.api.granian_worker).
SHUTDOWN_CLEANUP_SECONDS = 30
# What every worker logs when it is ready and when it has stopped, under any server.
READY, STOPPED = "Worker ready (process %d)", "Worker stopped (process %d)"


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    import os

    async with imports_api.lifespan(app):
        LOG.info(READY, os.getpid())
        yield
        from glimpse.api.http import abort_body_reads
        from glimpse.services.data import ACTIVE_UPLOADS

        if abort_body_reads():
            LOG.warning("Shutdown: aborting the uploads still in progress")
        await anyio.to_thread.run_sync(ACTIVE_UPLOADS.wait_idle, SHUTDOWN_CLEANUP_SECONDS)
    LOG.info(STOPPED, os.getpid())


def freeze_startup_objects() -> None:
    """In a server's worker, once its application is built: move what it built
    (modules, configuration, policy, engines: some 150,000 objects) out of the
    collector's reach. Every full collection walked all of them holding the
    interpreter lock, stopping each request of the worker for 100-640 ms at a
    time on the loaded machine (issue 13's 32-client p99; decision 0015). Garbage is
    collected first, so none is kept for good. Not for in-process apps (tests):
    what a frozen object later drops is never collected."""
    import gc

    gc.collect()
    gc.freeze()


def create_app(conf: cfg.ConfigOpts, runtime: runtime_mod.Runtime | None = None) -> Starlette:
    rt = runtime or runtime_mod.build(conf)
    tune_allocator()  # before the first request: image data streams through big buffers
    routes = [
        Route("/v2", versions, methods=["GET"]),
        Route("/v2/openapi.json", openapi_document, methods=["GET"]),
        *v2.routes,
        *imports_api.routes,
        *metadefs_api.routes,
        *cache_api.routes,  # image cache (issue 16)
        *health_api.routes,  # operations (issue 18)
        *(health_api.metrics_routes if conf.metrics.enabled and not conf.metrics.bind_port
          else []),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception, GlimpseError: _glimpse_error},
        lifespan=lifespan,
    )
    # "/v2/images/" is not "/v2/images": Glance answers 404, never a redirect.
    app.router.redirect_slashes = False
    for route in app.router.routes:
        # Starlette answers HEAD wherever GET is routed; Glance's routes do not
        # (HEAD /v2/images/{id} is 405 with Allow, like any other method).
        if isinstance(route, Route) and route.methods and "GET" in route.methods:
            route.methods.discard("HEAD")
    audit_settings = audit.middleware_settings(conf, rt.notifier)
    if audit_settings is not None:  # inside ContextMiddleware: it reads who is asking
        app.add_middleware(audit.AuditMiddleware, **audit_settings)
    app.add_middleware(ContextMiddleware, runtime=rt)
    # Outermost: version discovery answers before authentication and request ids.
    app.add_middleware(versions_mod.VersionNegotiation, conf=conf)
    # --- operations (issue 18): outermost last. CORS answers preflights before
    # authentication, as oslo.middleware's filter does in front of Glance.
    if conf.metrics.enabled:
        from glimpse.metrics import MetricsMiddleware

        app.add_middleware(MetricsMiddleware)
    if conf.oslo_middleware.enable_proxy_headers_parsing:
        app.add_middleware(ProxyHeadersMiddleware)
    app.add_middleware(CORSMiddleware, conf=conf)
    app.state.runtime = rt
    return app
