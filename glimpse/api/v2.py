"""Images API v2 routes: parse and validate, call one service function, render."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from glimpse.api import listing, metadef_schemas, render, schemas
from glimpse.api.http import (
    body_chunks,
    call,
    call_db,
    call_read,
    ctx_of,
    iterate_in_thread,
    json_response,
    link_base,
    read_json,
    rt_of,
)
from glimpse.domain.images import ImageRecord
from glimpse.errors import BadRequest, NotFound, RangeNotSatisfiable, UnsupportedMediaType
from glimpse.policy import image_target
from glimpse.services import data as data_svc
from glimpse.services import images as image_svc
from glimpse.services import locations as locations_svc
from glimpse.services import members as member_svc
from glimpse.services.images import Change
from glimpse.stores.registry import RESERVED_STORES

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
PATCH_TYPES = (PATCH_V21, PATCH_V20)


def _image_schema(request: Request) -> dict[str, Any]:
    conf = rt_of(request).conf
    return schemas.image_schema(conf.image_format.disk_formats,
                                conf.image_format.container_formats)


def _image_doc(request: Request, image: ImageRecord,
               opts: render.ImageOptions | None = None) -> dict[str, Any]:
    rt = rt_of(request)
    ctx = ctx_of(request)
    opts = opts or render.ImageOptions.of(rt.conf)
    # As Glance's database layer: a deactivated image has no locations for anyone
    # but an admin (so no stores, locations or direct_url either).
    hidden = image.status == "deactivated" and not ctx.is_admin
    show_locations = False
    if opts.may_show_locations and not hidden:
        # Locations and direct_url only for callers that get_image_location
        # allows (by default the owner's project and admins): docs/decisions/0001.
        show_locations = rt.policy.check(ctx, "get_image_location",
                                         image_target(image.as_target()))
    if len(image.locations) > 1:
        image = locations_svc.in_order(rt, image)
    return render.image(opts, image, show_locations=show_locations, show_stores=not hidden)


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
        metadef = metadef_schemas.get(name)
        if metadef is not None:
            return json_response(metadef)
        raise NotFound(f"Schema {name} not found")
    return json_response(builders[name]())


# ---------------------------------------------------------------- images


async def create_image(request: Request) -> Response:
    doc = await read_json(request)
    schemas.check_create_attributes(doc, _image_schema(request))
    image = await call_db(image_svc.create_image, rt_of(request), ctx_of(request), doc)
    # WebOb makes Glance's Location absolute, from the URL the client used.
    headers = {"Location": f"{link_base(request)}/v2/images/{image.id}"}
    methods = rt_of(request).conf.enabled_import_methods
    if methods:
        headers["OpenStack-image-import-methods"] = ",".join(methods)
    stores = rt_of(request).stores.names() if rt_of(request).conf.enabled_backends else []
    if stores:
        # Glance adds its reserved internal stores to enabled_backends at start,
        # so they follow the configured ones here.
        headers["OpenStack-image-store-ids"] = ",".join([*stores, *RESERVED_STORES])
    return json_response(_image_doc(request, image), 201, headers)


async def list_images(request: Request) -> Response:
    rt = rt_of(request)
    query = listing.parse(request.query_params, rt.conf)
    images = await call_read(rt, image_svc.list_images, rt, ctx_of(request), query)
    next_marker = images[-1].id if images and len(images) == query.limit else None
    opts = render.ImageOptions.of(rt.conf)
    doc = {"images": [_image_doc(request, i, opts) for i in images]}
    doc.update(listing.page_links(request.query_params, next_marker))
    return json_response(doc)


async def show_image(request: Request) -> Response:
    rt = rt_of(request)
    image = await call_read(rt, image_svc.get_image, rt, ctx_of(request),
                            request.path_params["image_id"])
    return json_response(_image_doc(request, image))


_PATCH_OPS = ("add", "remove", "replace")
# Path elements each operation takes: only locations has a second one (index or "-").
_PATH_DEPTH = {"locations": {"add": 2, "remove": 2, "replace": 1}}
_ADJACENT_SLASHES = re.compile(r"/\s*?/")
_BAD_ESCAPE = re.compile(r"~[^01]")


def _decode_pointer(pointer: Any) -> list[str]:
    """The JSON pointer of one operation as a list of names (Glance's limited form)."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise BadRequest(f'Pointer `{pointer}` does not start with "/".')
    if _ADJACENT_SLASHES.search(pointer[1:]):
        raise BadRequest(f'Pointer `{pointer}` contains adjacent "/".')
    if len(pointer) > 1 and pointer.endswith("/"):
        raise BadRequest(f'Pointer `{pointer}` end with "/".')
    if _BAD_ESCAPE.search(pointer) or pointer.endswith("~"):
        raise BadRequest(f'Pointer `{pointer}` contains "~" not part of a recognized '
                         "escape sequence.")
    parts = [p.replace("~1", "/").replace("~0", "~").strip()
             for p in pointer.lstrip("/").split("/")]
    if not parts[0]:
        raise BadRequest(f"Invalid JSON pointer for this resource: '{pointer}'")
    return parts


def _patch_op(media_type: str, raw: dict[str, Any]) -> tuple[str, Any]:
    available = ", ".join(_PATCH_OPS)
    if media_type == PATCH_V21:
        op = raw.get("op")
        if op is None:
            raise BadRequest("Unable to find `op` in JSON Schema change. It must be one of "
                             f"the following: {available}.")
        if op not in _PATCH_OPS:
            raise BadRequest(f"Invalid operation: `{op}`. It must be one of the following: "
                             f"{available}.")
        if "path" not in raw:
            raise BadRequest("Unable to find 'path' in JSON Schema change")
        return op, raw["path"]
    # v2.0: {"replace": "/name", "value": ...}
    ops = [key for key in _PATCH_OPS if key in raw]
    if len(ops) > 1:
        raise BadRequest('Operation objects must contain only one member named "add", '
                         '"remove", or "replace".')
    if not ops:
        raise BadRequest('Operation objects must contain exactly one member named "add", '
                         '"remove", or "replace".')
    return ops[0], raw[ops[0]]


def _parse_patch(media_type: str, body: Any, schema: dict[str, Any]) -> list[Change]:
    """Every operation is checked before any is applied (400/403 as Glance)."""
    if not isinstance(body, list):
        raise BadRequest("Request body must be a JSON array of operation objects.")
    changes = []
    for raw in body:
        if not isinstance(raw, dict):
            raise BadRequest("Operations must be JSON objects.")
        op, pointer = _patch_op(media_type, raw)
        path = _decode_pointer(pointer)
        root = path[0]
        if len(path) != _PATH_DEPTH.get(root, {}).get(op, 1):
            raise BadRequest(f"Invalid JSON pointer for this resource: '/{'/'.join(path)}'")
        if op != "remove" and "value" not in raw:
            raise BadRequest(f'Operation "{op}" requires a member named "value".')
        schemas.check_patch_attribute(root)
        value = raw.get("value")
        if op != "remove":
            schemas.validate_image({root: value if len(path) == 1 else [value]}, schema)
        changes.append(Change(op=op, path=root, value=value, strict_add=media_type == PATCH_V20,
                              position=path[1] if len(path) > 1 else None))
    return changes


async def update_image(request: Request) -> Response:
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type not in PATCH_TYPES:
        accepted = ", ".join(sorted(PATCH_TYPES))
        raise UnsupportedMediaType(
            f"The request media type {media_type or '(none)'} is not supported by this "
            f"server. Image PATCH expects Content-Type one of: {accepted}",
            headers={"Accept-Patch": accepted})
    body = await read_json(request)
    changes = _parse_patch(media_type, body, _image_schema(request))
    image = await call_db(image_svc.update_image, rt_of(request), ctx_of(request),
                       request.path_params["image_id"], changes)
    return json_response(_image_doc(request, image))


async def delete_image(request: Request) -> Response:
    from glimpse.api.imports import StageHostUnavailable, proxy_to_stage_host

    rt, ctx, image_id = rt_of(request), ctx_of(request), request.path_params["image_id"]
    stage_host = await call(image_svc.delete_image, rt, ctx, image_id)
    if stage_host is not None:
        # Staged on another worker: that worker deletes, so its staged data goes too.
        try:
            await proxy_to_stage_host(request, stage_host)
            return Response(status_code=204)
        except StageHostUnavailable:
            # As Glance: the stage host's answer (even an error) is final, but when it
            # cannot be reached the image is deleted here all the same; the staged
            # data stays behind on that worker until it cleans its staging area.
            await call(image_svc.delete_image, rt, ctx, image_id, proxy=False)
    return Response(status_code=204)


async def deactivate(request: Request) -> Response:
    await call_db(image_svc.deactivate, rt_of(request), ctx_of(request),
               request.path_params["image_id"])
    return Response(status_code=204)


async def reactivate(request: Request) -> Response:
    await call_db(image_svc.reactivate, rt_of(request), ctx_of(request),
               request.path_params["image_id"])
    return Response(status_code=204)


async def add_tag(request: Request) -> Response:
    await call_db(image_svc.add_tag, rt_of(request), ctx_of(request),
               request.path_params["image_id"], request.path_params["tag"])
    return Response(status_code=204)


async def delete_tag(request: Request) -> Response:
    await call_db(image_svc.delete_tag, rt_of(request), ctx_of(request),
               request.path_params["image_id"], request.path_params["tag"])
    return Response(status_code=204)


# ---------------------------------------------------------------- data


async def upload(request: Request) -> Response:
    # Glance's deserializer accepts only application/octet-stream bodies.
    # (Glance also refuses a missing Content-Type; we accept it, as curl -T does.)
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media_type = content_type.split(";")[0].strip().lower()
        if media_type != "application/octet-stream":
            raise UnsupportedMediaType(f"Invalid content type {media_type or '(empty)'}; "
                                       "image data must be application/octet-stream")
    # Glance reads X-Image-Meta-Store only with multi-store; single-store ignores it.
    conf = rt_of(request).conf
    store = request.headers.get("x-image-meta-store") if conf.enabled_backends else None
    await call(data_svc.upload, rt_of(request), ctx_of(request),
               request.path_params["image_id"], body_chunks(request), store)
    return Response(status_code=204)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$", re.IGNORECASE)


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable("Requested range not satisfiable",
                               headers={"Content-Range": f"bytes */{size}"})


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """One byte range (as Glance serves) -> (offset, length); 416 if unsatisfiable.

    Like Glance: several ranges are a 400; an end beyond the data is clamped;
    a suffix longer than the data means all of it."""
    if "," in header:
        raise BadRequest("Requests with multiple ranges are not supported; make several "
                         "single-range requests instead.")
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        raise _unsatisfiable(size)
    start_s, end_s = match.groups()
    if start_s == "":
        suffix = int(end_s)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        start, end = max(size - suffix, 0), size - 1
    else:
        start = int(start_s)
        end = int(end_s) if end_s else size - 1
        if end < start or start >= size:
            raise _unsatisfiable(size)
        end = min(end, size - 1)
    return start, end - start + 1


def _parse_content_range(header: str, size: int) -> tuple[int, int]:
    """Glance still honours Content-Range on a GET (old clients sent it)."""
    match = _CONTENT_RANGE.match(header.strip())
    if match is None:
        raise _unsatisfiable(size)
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        raise _unsatisfiable(size)
    if start >= size or (total is None and end >= size):
        raise _unsatisfiable(size)
    end = min(end, size - 1)
    return start, end - start + 1


async def download(request: Request) -> Response:
    rt = rt_of(request)
    dl = await call(data_svc.prepare_download, rt, ctx_of(request),
                    request.path_params["image_id"])
    if dl.url is None:
        return Response(status_code=204)
    headers = {"Content-Type": "application/octet-stream"}
    # Glance sends the whole image's checksum, partial responses included.
    if dl.checksum:
        headers["Content-MD5"] = dl.checksum
    range_header = request.headers.get("range")
    content_range = request.headers.get("content-range")
    if range_header is not None or content_range is not None:
        if range_header is not None:
            offset, length = _parse_range(range_header, dl.size)
        else:
            offset, length = _parse_content_range(content_range or "", dl.size)
        chunks = await call(dl.open, rt, offset, length)
        headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{dl.size}"
        headers["Content-Length"] = str(length)
        return StreamingResponse(iterate_in_thread(chunks), status_code=206, headers=headers)
    headers["Content-Length"] = str(dl.size)
    if PATHSEND in request.scope.get("extensions", {}):
        # The server sends the file itself (sendfile, no Python copies): Granian's
        # ASGI http.response.pathsend (docs/decisions/0008-http-server.md), for a
        # file-store image or this node's cached copy of any image.
        path = await call(dl.send_path, rt)
        if path is not None:
            return PathSendResponse(rt, dl, path, headers)
    chunks = await call(dl.open, rt)
    return StreamingResponse(iterate_in_thread(chunks), status_code=200, headers=headers)


# ---------------------------------------------------------------- locations


async def delete_from_store(request: Request) -> Response:
    await call(locations_svc.delete_from_store, rt_of(request), ctx_of(request),
               request.path_params["store_id"], request.path_params["image_id"])
    return Response(status_code=204)


async def add_location(request: Request) -> Response:
    body = await read_json(request)
    await call(locations_svc.add_location, rt_of(request), ctx_of(request),
               request.path_params["image_id"], body)
    return Response(status_code=202)


async def get_locations(request: Request) -> Response:
    locations = await call_db(locations_svc.get_locations, rt_of(request), ctx_of(request),
                              request.path_params["image_id"])
    return json_response(locations)
PATHSEND = "http.response.pathsend"


class PathSendResponse(Response):
    """A whole file-store image sent by the server from its path; image.send follows."""

    def __init__(self, rt: Any, dl: data_svc.Download, path: str, headers: dict[str, str]):
        super().__init__(status_code=200, headers=headers)
        self.rt, self.dl, self.path = rt, dl, path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": self.raw_headers})
        sent = 0
        try:
            await send({"type": PATHSEND, "path": self.path})
            sent = self.dl.size
        finally:
            self.rt.notifier.image_sent(self.dl.image, *self.dl.receiver, sent, self.dl.size)


# ---------------------------------------------------------------- members


async def create_member(request: Request) -> Response:
    member_id = schemas.parse_member_create(await read_json(request))
    member = await call_db(member_svc.add_member, rt_of(request), ctx_of(request),
                        request.path_params["image_id"], member_id)
    return json_response(render.member(member))


async def list_members(request: Request) -> Response:
    members = await call_db(member_svc.list_members, rt_of(request), ctx_of(request),
                         request.path_params["image_id"])
    return json_response({"members": [render.member(m) for m in members],
                          "schema": "/v2/schemas/members"})


async def show_member(request: Request) -> Response:
    member = await call_db(member_svc.get_member, rt_of(request), ctx_of(request),
                        request.path_params["image_id"], request.path_params["member_id"])
    return json_response(render.member(member))


async def update_member(request: Request) -> Response:
    status = schemas.parse_member_update(await read_json(request))
    member = await call_db(member_svc.update_member, rt_of(request), ctx_of(request),
                        request.path_params["image_id"], request.path_params["member_id"],
                        status)
    return json_response(render.member(member))


async def delete_member(request: Request) -> Response:
    await call_db(member_svc.delete_member, rt_of(request), ctx_of(request),
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
    Route("/v2/images/{image_id}/locations", add_location, methods=["POST"]),
    Route("/v2/images/{image_id}/locations", get_locations, methods=["GET"]),
    Route("/v2/stores/{store_id}/{image_id}", delete_from_store, methods=["DELETE"]),
    Route("/v2/images/{image_id}/members", list_members, methods=["GET"]),
    Route("/v2/images/{image_id}/members", create_member, methods=["POST"]),
    Route("/v2/images/{image_id}/members/{member_id}", show_member, methods=["GET"]),
    Route("/v2/images/{image_id}/members/{member_id}", update_member, methods=["PUT"]),
    Route("/v2/images/{image_id}/members/{member_id}", delete_member, methods=["DELETE"]),
]
