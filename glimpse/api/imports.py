"""Import, tasks and discovery routes: parse, call one service function, render."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glimpse.api import schemas
from glimpse.api.http import body_chunks, call, ctx_of, json_response, read_json, rt_of
from glimpse.api.render import timestamp
from glimpse.db.tasks_repo import TASK_COLUMNS, TaskQuery, TaskRecord
from glimpse.errors import BadRequest, GlimpseError, MethodNotAllowed, UnsupportedMediaType
from glimpse.services import imports as import_svc
from glimpse.services import info as info_svc
from glimpse.services import tasks as task_svc

LOG = logging.getLogger(__name__)

UUID_LIKE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                       r"[0-9a-fA-F]{12}$")
TASK_STATUSES = ("pending", "processing", "success", "failure")
# Glance's task list accepts only this type as a filter.
TASK_FILTER_TYPES = ("import",)
PROXY_TIMEOUT = 60.0
# Headers that carry the caller's identity to the worker holding the staged data.
_FORWARDED = ("x-auth-token", "x-service-token", "x-identity-status", "x-project-id",
              "x-tenant-id", "x-user-id", "x-user", "x-roles", "x-service-roles",
              "x-service-user-id", "x-service-project-id", "x-user-domain-id",
              "x-project-domain-id", "x-domain-id", "x-system-scope", "openstack-system-scope",
              "x-image-meta-store", "accept", "openstack-api-version")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start this worker's recovery sweeper; stop it and the task runner when the
    server shuts down."""
    app.state.runtime.start_background()
    yield
    sweeper = getattr(app.state.runtime, "sweeper", None)
    if sweeper is not None:
        await anyio.to_thread.run_sync(sweeper.stop)
    runner = getattr(app.state.runtime, "runner", None)
    if runner is not None:
        await anyio.to_thread.run_sync(runner.shutdown)


def _http_error(status: int, title: str, message: str) -> GlimpseError:
    err = GlimpseError(message)
    err.status, err.title = status, title
    return err


def _octet_stream_only(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media_type = content_type.split(";")[0].strip().lower()
        if media_type != "application/octet-stream":
            raise UnsupportedMediaType(f"Invalid content type {media_type or '(empty)'}; "
                                       "image data must be application/octet-stream")


# ---------------------------------------------------------------- stage / import


async def stage(request: Request) -> Response:
    _octet_stream_only(request)
    await call(import_svc.stage, rt_of(request), ctx_of(request),
               request.path_params["image_id"], body_chunks(request))
    return Response(status_code=204)


async def import_image(request: Request) -> Response:
    body = await read_json(request)
    outcome = await call(import_svc.import_image, rt_of(request), ctx_of(request),
                         request.path_params["image_id"], body,
                         request.headers.get("x-image-meta-store"))
    if outcome.proxy_to is not None:
        return await proxy_to_stage_host(request, outcome.proxy_to, body)
    return Response(status_code=202)


class StageHostUnavailable(GlimpseError):
    """The worker holding the staged data could not be reached (Glance: 504 when the
    connection fails, 502 for any other failure to get an answer)."""

    def __init__(self, status: int, title: str):
        super().__init__("Stage host is unavailable")
        self.status, self.title = status, title


async def proxy_to_stage_host(request: Request, stage_host: str, body: Any = None) -> Response:
    """Replay this request on the worker that holds the staged data, as the caller.

    A 2xx answer is passed on (status only, as Glance does); any other answer
    becomes an error with the remote's status and reason."""
    url = stage_host.rstrip("/") + request.url.path
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    LOG.info("Proxying %s request to host %s which has image staged", request.method,
             stage_host)
    try:
        async with httpx.AsyncClient(timeout=PROXY_TIMEOUT) as client:
            remote = await client.request(request.method, url, headers=headers,
                                          json=body if body is not None else None)
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout,
            httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        LOG.error("Failed to proxy to %r: %s", url, exc)
        raise StageHostUnavailable(502, "Bad Gateway") from None
    except httpx.TransportError as exc:
        # Refused, reset, DNS failure, connect timeout: the worker is not there.
        LOG.error("Failed to proxy to %r: %s", url, exc)
        raise StageHostUnavailable(504, "Gateway Timeout") from None
    except httpx.HTTPError as exc:
        LOG.error("Failed to proxy to %r: %s", url, exc)
        raise StageHostUnavailable(502, "Bad Gateway") from None
    if remote.status_code // 100 != 2:
        raise _http_error(remote.status_code, remote.reason_phrase, remote.reason_phrase)
    return Response(status_code=remote.status_code)


# ---------------------------------------------------------------- tasks


def _iso(value: datetime | None) -> str | None:
    return timestamp(value)


def task_doc(task: TaskRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": task.id, "input": task.input, "type": task.type, "status": task.status,
        "owner": task.owner, "message": task.message, "result": task.result,
        "created_at": _iso(task.created_at), "updated_at": _iso(task.updated_at),
        "self": f"/v2/tasks/{task.id}", "schema": "/v2/schemas/task",
    }
    for name in ("image_id", "request_id", "user_id"):
        if getattr(task, name):
            doc[name] = getattr(task, name)
    if task.expires_at:
        doc["expires_at"] = _iso(task.expires_at)
    return doc


def task_stub(task: TaskRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": task.id, "type": task.type, "status": task.status, "owner": task.owner,
        "created_at": _iso(task.created_at), "updated_at": _iso(task.updated_at),
        "self": f"/v2/tasks/{task.id}", "schema": "/v2/schemas/task",
    }
    if task.expires_at:
        doc["expires_at"] = _iso(task.expires_at)
    return doc


def _db_time(value: datetime | None) -> str | None:
    """Glance serializes raw database rows here (oslo jsonutils' datetime form)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None


def task_row(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": task.id, "type": task.type, "status": task.status, "owner": task.owner,
        "expires_at": _db_time(task.expires_at), "created_at": _db_time(task.created_at),
        "updated_at": _db_time(task.updated_at), "deleted_at": _db_time(task.deleted_at),
        "deleted": task.deleted, "image_id": task.image_id, "request_id": task.request_id,
        "user_id": task.user_id, "input": task.input, "result": task.result,
        "message": task.message,
    }


def _limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    return limit


def _task_query(request: Request) -> tuple[TaskQuery, str | None]:
    params = dict(request.query_params)
    conf = rt_of(request).conf
    limit = params.pop("limit", None)
    marker = params.pop("marker", None)
    sort_dir = params.pop("sort_dir", "desc")
    sort_key = params.pop("sort_key", "created_at")
    if sort_dir not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort direction: {sort_dir}")
    status = params.get("status")
    if status and status not in TASK_STATUSES:
        raise BadRequest(f"Invalid status value: {status}")
    task_type = params.get("type")
    if task_type and task_type not in TASK_FILTER_TYPES:
        raise BadRequest(f"Invalid type value: {task_type}")
    if marker and not UUID_LIKE.match(marker):
        raise BadRequest("Invalid marker format")
    if sort_key not in TASK_COLUMNS - {"message"}:
        raise BadRequest("Sort key supplied was not valid.")
    filters = {k: v for k, v in params.items() if k in TASK_COLUMNS - {"message"} and v}
    count = min(conf.api_limit_max, _limit(limit) if limit is not None
                else conf.limit_param_default)
    return TaskQuery(filters=filters, sort_key=sort_key, sort_dir=sort_dir, limit=count), marker


async def list_tasks(request: Request) -> Response:
    rt, ctx = rt_of(request), ctx_of(request)
    await call(task_svc.require_api_access, rt, ctx)
    query, marker = _task_query(request)
    tasks = await call(task_svc.list_tasks, rt, ctx, query, marker)
    params = dict(request.query_params)
    params.pop("marker", None)
    doc: dict[str, Any] = {"tasks": [task_stub(t) for t in tasks], "first": "/v2/tasks",
                           "schema": "/v2/schemas/tasks"}
    if params:
        doc["first"] = f"/v2/tasks?{urlencode(params)}"
    if tasks and len(tasks) == query.limit:
        doc["next"] = f"/v2/tasks?{urlencode({**params, 'marker': tasks[-1].id})}"
    return json_response(doc)


async def show_task(request: Request) -> Response:
    rt, ctx = rt_of(request), ctx_of(request)
    await call(task_svc.require_api_access, rt, ctx)
    task = await call(task_svc.get_task, rt, ctx, request.path_params["task_id"])
    return json_response(task_doc(task))


async def create_task(request: Request) -> Response:
    rt, ctx = rt_of(request), ctx_of(request)
    await call(task_svc.require_api_access, rt, ctx)
    body = await read_json(request)
    if isinstance(body, dict):
        for name in ("type", "input"):
            if name not in body:
                raise BadRequest(f"Task '{name}' is required")
    schemas.validate(body, schemas.task_schema(strict=True))
    task = await call(task_svc.create_task, rt, ctx, body["type"], body["input"])
    return json_response(task_doc(task), 201, {"Location": f"/v2/tasks/{task.id}"})


async def delete_task(request: Request) -> Response:
    await call(task_svc.require_api_access, rt_of(request), ctx_of(request))
    raise MethodNotAllowed("This operation is currently not permitted on Glance Tasks. They "
                           "are auto deleted after reaching the time based on their "
                           "expires_at property.", headers={"Allow": "GET"})


async def image_tasks(request: Request) -> Response:
    tasks = await call(task_svc.image_tasks, rt_of(request), ctx_of(request),
                       request.path_params["image_id"])
    return json_response({"tasks": [task_row(t) for t in tasks]})


# ---------------------------------------------------------------- discovery


async def info_import(request: Request) -> Response:
    return json_response(info_svc.import_info(rt_of(request)))


async def info_stores(request: Request) -> Response:
    return json_response(info_svc.stores_info(rt_of(request)))


async def info_stores_detail(request: Request) -> Response:
    return json_response(await call(info_svc.stores_detail, rt_of(request), ctx_of(request)))


async def info_usage(request: Request) -> Response:
    return json_response(await call(info_svc.usage, rt_of(request), ctx_of(request)))


routes = [
    Route("/v2/images/{image_id}/stage", stage, methods=["PUT"]),
    Route("/v2/images/{image_id}/import", import_image, methods=["POST"]),
    Route("/v2/images/{image_id}/tasks", image_tasks, methods=["GET"]),
    Route("/v2/tasks", list_tasks, methods=["GET"]),
    Route("/v2/tasks", create_task, methods=["POST"]),
    Route("/v2/tasks/{task_id}", show_task, methods=["GET"]),
    Route("/v2/tasks/{task_id}", delete_task, methods=["DELETE"]),
    Route("/v2/info/import", info_import, methods=["GET"]),
    Route("/v2/info/stores", info_stores, methods=["GET"]),
    Route("/v2/info/stores/detail", info_stores_detail, methods=["GET"]),
    Route("/v2/info/usage", info_usage, methods=["GET"]),
]
