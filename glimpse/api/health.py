"""/healthcheck (oslo.middleware's probe), /healthcheck/detailed and /metrics: parse and
render."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glimpse.api.http import call, ctx_of, json_response, rt_of
from glimpse.errors import Forbidden
from glimpse.services import health


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "").lower()


def _render(request: Request, healthy: bool, doc: dict[str, Any]) -> Response:
    status = 200 if healthy else 503
    if _wants_json(request):
        return json_response(doc, status)
    lines = [r if isinstance(r, str) else
             f"{r['name']}: {'OK' if r['available'] else 'FAILED'} {r['reason']} "
             f"({r['latency_ms']} ms)" for r in doc["reasons"]]
    return Response("\n".join(lines), status_code=status,
                    media_type="text/plain; charset=UTF-8")


async def healthcheck(request: Request) -> Response:
    rt = rt_of(request)
    if rt.conf.healthcheck.detailed:
        healthy, doc = await call(health.detailed_report, rt, None)
        return _render(request, healthy, doc)
    healthy, reason = health.probe(rt)
    return _render(request, healthy, {"detailed": False, "reasons": [reason]})


async def detailed(request: Request) -> Response:
    healthy, doc = await call(health.detailed_report, rt_of(request), ctx_of(request))
    return _render(request, healthy, doc)


async def metrics(request: Request) -> Response:
    """/metrics on the API port (``[metrics] bind_port = 0``): admins only."""
    from glimpse import metrics as metrics_mod

    rt = rt_of(request)
    if not rt.policy.check_is_admin(ctx_of(request)):
        raise Forbidden("Metrics are for administrators only.")
    metrics_mod.flush()  # this process's pending figures, from its event loop
    body, content_type = await call(metrics_mod.exposition, rt.db)
    return Response(body, media_type=content_type)


metrics_routes = [Route("/metrics", metrics, methods=["GET"])]

routes = [
    Route("/healthcheck", healthcheck, methods=["GET"]),
    Route("/healthcheck/detailed", detailed, methods=["GET"]),
]
