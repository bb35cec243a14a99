"""Cache management API (/v2/cache, API 2.14-2.18): parse, call, render."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glimpse.api.http import call, ctx_of, json_response, rt_of
from glimpse.services import cache as cache_svc


async def get_cache_state(request: Request) -> Response:
    return json_response(await call(cache_svc.cache_state, rt_of(request), ctx_of(request)))


async def cached_nodes(request: Request) -> Response:
    return json_response(await call(cache_svc.cached_nodes, rt_of(request), ctx_of(request),
                                    request.path_params["image_id"]))


async def queue_image(request: Request) -> Response:
    await call(cache_svc.queue_image, rt_of(request), ctx_of(request),
               request.path_params["image_id"])
    return Response(status_code=202)


async def delete_cache_entry(request: Request) -> Response:
    await call(cache_svc.delete_entry, rt_of(request), ctx_of(request),
               request.path_params["image_id"])
    return Response(status_code=204)


async def clear_cache(request: Request) -> Response:
    await call(cache_svc.clear, rt_of(request), ctx_of(request),
               request.headers.get("x-image-cache-clear-target", ""))
    return Response(status_code=204)


async def clean_cache(request: Request) -> Response:
    await call(cache_svc.clean, rt_of(request), ctx_of(request))
    return Response(status_code=200)


async def prune_cache(request: Request) -> Response:
    return json_response(await call(cache_svc.prune, rt_of(request), ctx_of(request)))


routes = [
    Route("/v2/cache", get_cache_state, methods=["GET"]),
    Route("/v2/cache", clear_cache, methods=["DELETE"]),
    Route("/v2/cache/clean", clean_cache, methods=["POST"]),
    Route("/v2/cache/prune", prune_cache, methods=["POST"]),
    Route("/v2/cache/nodes/{image_id}", cached_nodes, methods=["GET"]),
    Route("/v2/cache/{image_id}", delete_cache_entry, methods=["DELETE"]),
    Route("/v2/cache/{image_id}", queue_image, methods=["PUT"]),
]
