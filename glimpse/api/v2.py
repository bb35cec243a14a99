"""Images API v2 routes: parse and validate, call one service function, render."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from glimpse.api import listing, render, schemas
from glimpse.api.http import (
    body_chunks,
    call,
    ctx_of,
    iterate_in_thread,
    json_response,
    read_json,
    rt_of,
)
from glimpse.errors import BadRequest, RangeNotSatisfiable, UnsupportedMediaType
from glimpse.services import data as data_svc
from glimpse.services import images as image_svc
from glimpse.services import members as member_svc
from glimpse.services.images import Change

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
PATCH_TYPES = (PATCH_V21, PATCH_V20)


def _image_schema(request: Request) -> dict[str, Any]:
    conf = rt_of(request).conf
    return schemas.image_schema(conf.image_format.disk_formats,
                                conf.image_format.container_formats)


def _image_doc(request: Request, image) -> dict[str, Any]:  # noqa: ANN001
    return render.image(rt_of(request).conf, image)


# ---------------------------------------------------------------- schemas


async def get_schema(request: Request) -> Response:
    conf = rt_of(request).conf
    name = request.path_params["name"]
    formats = (conf.image_format.disk_formats, conf.image_format.container_formats)
    builders = {
        "image": lambda: schemas.image_schema(*formats),
        "images": lambda: schemas.images_schema(*formats),
        "member": schemas.member_schema,
        "members": schemas.members_schema,
        "task": schemas.task_schema,
        "tasks": schemas.tasks_schema,
    }
    if name not in builders:
        from glimpse.errors import NotFound
        raise NotFound(f"Schema {name} not found")
    return json_response(builders[name]())


# ---------------------------------------------------------------- images


async def create_image(request: Request) -> Response:
    doc = await read_json(request)
    if not isinstance(doc, dict):
        raise BadRequest("Image create body must be a JSON object")
    schemas.validate_image(doc, _image_schema(request))
    image = await call(image_svc.create_image, rt_of(request), ctx_of(request), doc)
    headers = {"Location": f"/v2/images/{image.id}"}
    methods = rt_of(request).conf.enabled_import_methods
    if methods:
        headers["OpenStack-image-import-methods"] = ",".join(methods)
    stores = rt_of(request).stores.names() if rt_of(request).conf.enabled_backends else []
    if stores:
        headers["OpenStack-image-store-ids"] = ",".join(stores)
    return json_response(_image_doc(request, image), 201, headers)


async def list_images(request: Request) -> Response:
    rt = rt_of(request)
    query = listing.parse(request.query_params, rt.conf)
    images = await call(image_svc.list_images, rt, ctx_of(request), query)
    next_marker = images[-1].id if images and len(images) == query.limit else None
    doc = {"images": [_image_doc(request, i) for i in images]}
    doc.update(listing.page_links(request.query_params, next_marker))
    return json_response(doc)


async def show_image(request: Request) -> Response:
    image = await call(image_svc.get_image, rt_of(request), ctx_of(request),
                       request.path_params["image_id"])
    return json_response(_image_doc(request, image))


def _parse_patch(media_type: str, body: Any) -> list[Change]:
    if not isinstance(body, list):
        raise BadRequest("A JSON-patch body must be a list of operations")
    changes = []
    for raw in body:
        if not isinstance(raw, dict):
            raise BadRequest("Each patch operation must be a JSON object")
        if media_type == PATCH_V21:
            op = raw.get("op")
            path = raw.get("path")
        else:  # v2.0: {"replace": "/name", "value": ...}
            ops = [k for k in ("add", "replace", "remove") if k in raw]
            if len(ops) != 1:
                raise BadRequest("Each patch operation must name exactly one of "
                                 "add, replace, remove")
            op, path = ops[0], raw[ops[0]]
        if op not in ("add", "replace", "remove"):
            raise BadRequest(f"Invalid operation: {op!r}. Allowed: add, replace, remove")
        if not isinstance(path, str) or not path.startswith("/") or len(path) < 2:
            raise BadRequest(f"Invalid JSON pointer for this resource: {path!r}")
        if op != "remove" and "value" not in raw:
            raise BadRequest(f"Operation {op} requires a 'value'")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
        if len(parts) > 1 and parts[0] not in ("locations", "tags"):
            raise BadRequest(f"Nested paths are not allowed: {path}")
        changes.append(Change(op=op, path=parts[0], value=raw.get("value"),
                              strict_add=media_type == PATCH_V20))
    return changes


async def update_image(request: Request) -> Response:
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type not in PATCH_TYPES:
        raise UnsupportedMediaType(
            f"Unsupported Content-Type {media_type or '(none)'}; use one of "
            f"{', '.join(PATCH_TYPES)}",
            headers={"Accept-Patch": ", ".join(PATCH_TYPES)})
    body = await read_json(request)
    changes = _parse_patch(media_type, body)
    schema = _image_schema(request)
    for change in changes:
        if change.op != "remove":
            schemas.validate_image({change.path: change.value}, schema)
    image = await call(image_svc.update_image, rt_of(request), ctx_of(request),
                       request.path_params["image_id"], changes)
    return json_response(_image_doc(request, image))


async def delete_image(request: Request) -> Response:
    await call(image_svc.delete_image, rt_of(request), ctx_of(request),
               request.path_params["image_id"])
    return Response(status_code=204)


async def deactivate(request: Request) -> Response:
    await call(image_svc.deactivate, rt_of(request), ctx_of(request),
               request.path_params["image_id"])
    return Response(status_code=204)


async def reactivate(request: Request) -> Response:
    await call(image_svc.reactivate, rt_of(request), ctx_of(request),
               request.path_params["image_id"])
    return Response(status_code=204)


async def add_tag(request: Request) -> Response:
    await call(image_svc.add_tag, rt_of(request), ctx_of(request),
               request.path_params["image_id"], request.path_params["tag"])
    return Response(status_code=204)


async def delete_tag(request: Request) -> Response:
    await call(image_svc.delete_tag, rt_of(request), ctx_of(request),
               request.path_params["image_id"], request.path_params["tag"])
    return Response(status_code=204)


# ---------------------------------------------------------------- data


async def upload(request: Request) -> Response:
    store = request.headers.get("x-image-meta-store")
    await call(data_svc.upload, rt_of(request), ctx_of(request),
               request.path_params["image_id"], body_chunks(request), store)
    return Response(status_code=204)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """One byte range (as Glance serves) -> (offset, length); 416 if unsatisfiable."""
    unsatisfiable = RangeNotSatisfiable("Requested range not satisfiable",
                                        headers={"Content-Range": f"bytes */{size}"})
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        raise unsatisfiable
    start_s, end_s = match.groups()
    if start_s == "":
        suffix = int(end_s)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        start, end = max(size - suffix, 0), size - 1
    else:
        start = int(start_s)
        end = int(end_s) if end_s else size - 1
        end = min(end, size - 1)
        if start >= size or start > end:
            raise unsatisfiable
    return start, end - start + 1


async def download(request: Request) -> Response:
    rt = rt_of(request)
    dl = await call(data_svc.prepare_download, rt, ctx_of(request),
                    request.path_params["image_id"])
    if dl.url is None:
        return Response(status_code=204)
    headers = {"Content-Type": "application/octet-stream"}
    range_header = request.headers.get("range")
    if range_header:
        offset, length = _parse_range(range_header, dl.size)
        chunks = await call(dl.open, rt, offset, length)
        headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{dl.size}"
        headers["Content-Length"] = str(length)
        return StreamingResponse(iterate_in_thread(chunks), status_code=206, headers=headers)
    chunks = await call(dl.open, rt)
    headers["Content-Length"] = str(dl.size)
    if dl.checksum:
        headers["Content-MD5"] = dl.checksum
    return StreamingResponse(iterate_in_thread(chunks), status_code=200, headers=headers)


# ---------------------------------------------------------------- members


async def create_member(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict) or "member" not in body:
        raise BadRequest("Request body must be a JSON object with a 'member' key")
    member = await call(member_svc.add_member, rt_of(request), ctx_of(request),
                        request.path_params["image_id"], body["member"])
    return json_response(render.member(member))


async def list_members(request: Request) -> Response:
    members = await call(member_svc.list_members, rt_of(request), ctx_of(request),
                         request.path_params["image_id"])
    return json_response({"members": [render.member(m) for m in members],
                          "schema": "/v2/schemas/members"})


async def show_member(request: Request) -> Response:
    member = await call(member_svc.get_member, rt_of(request), ctx_of(request),
                        request.path_params["image_id"], request.path_params["member_id"])
    return json_response(render.member(member))


async def update_member(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict) or "status" not in body:
        raise BadRequest("Request body must be a JSON object with a 'status' key")
    member = await call(member_svc.update_member, rt_of(request), ctx_of(request),
                        request.path_params["image_id"], request.path_params["member_id"],
                        body["status"])
    return json_response(render.member(member))


async def delete_member(request: Request) -> Response:
    await call(member_svc.delete_member, rt_of(request), ctx_of(request),
               request.path_params["image_id"], request.path_params["member_id"])
    return Response(status_code=204)


routes = [
    Route("/v2/schemas/{name:path}", get_schema, methods=["GET"]),
    Route("/v2/images", list_images, methods=["GET"]),
    Route("/v2/images", create_image, methods=["POST"]),
    Route("/v2/images/{image_id}", show_image, methods=["GET"]),
    Route("/v2/images/{image_id}", update_image, methods=["PATCH"]),
    Route("/v2/images/{image_id}", delete_image, methods=["DELETE"]),
    Route("/v2/images/{image_id}/file", upload, methods=["PUT"]),
    Route("/v2/images/{image_id}/file", download, methods=["GET"]),
    Route("/v2/images/{image_id}/actions/deactivate", deactivate, methods=["POST"]),
    Route("/v2/images/{image_id}/actions/reactivate", reactivate, methods=["POST"]),
    Route("/v2/images/{image_id}/tags/{tag}", add_tag, methods=["PUT"]),
    Route("/v2/images/{image_id}/tags/{tag}", delete_tag, methods=["DELETE"]),
    Route("/v2/images/{image_id}/members", list_members, methods=["GET"]),
    Route("/v2/images/{image_id}/members", create_member, methods=["POST"]),
    Route("/v2/images/{image_id}/members/{member_id}", show_member, methods=["GET"]),
    Route("/v2/images/{image_id}/members/{member_id}", update_member, methods=["PUT"]),
    Route("/v2/images/{image_id}/members/{member_id}", delete_member, methods=["DELETE"]),
]
