"""Metadata definitions API v2 routes (/v2/metadefs/...): parse and validate,
call one service function, render with Glance's links."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glimpse.api import metadef_schemas
from glimpse.api.http import call, ctx_of, json_response, read_json, rt_of
from glimpse.api.render import timestamp
from glimpse.db.metadefs_repo import NAMESPACE_SORT_KEYS
from glimpse.errors import BadRequest, Forbidden
from glimpse.services import metadefs as svc

_BASE = "/v2/metadefs/namespaces"


def _render(value: Any) -> Any:
    """Timestamps as Glance prints them, at any depth."""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, dict):
        return {k: _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    return value


def _namespace(doc: dict[str, Any]) -> dict[str, Any]:
    out = _render(doc)
    out["self"] = f"{_BASE}/{doc['namespace']}"
    out["schema"] = "/v2/schemas/metadefs/namespace"
    for obj in out.get("objects", []):
        obj["self"] = f"{_BASE}/{doc['namespace']}/objects/{obj['name']}"
        obj["schema"] = "/v2/schemas/metadefs/object"
    return out


def _object(ns: str, doc: dict[str, Any]) -> dict[str, Any]:
    out = _render(doc)
    out["self"] = f"{_BASE}/{ns}/objects/{doc['name']}"
    out["schema"] = "/v2/schemas/metadefs/object"
    return out


# Attributes a request body may not set (Glance answers 403, before validation).
_READ_ONLY = {"namespace": ("self", "schema", "created_at", "updated_at"),
              "object": ("self", "schema", "created_at", "updated_at")}
_TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})


async def _body(request: Request, schema: str) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("Expected a JSON object as the request body.")
    for key in _READ_ONLY.get(schema, ("created_at", "updated_at")):
        if key in body:
            raise Forbidden(f"Attribute '{key}' is read-only.")
    metadef_schemas.validate(body, schema)
    _refuse_nul(body)
    return body


def _refuse_nul(value: Any) -> None:
    """PostgreSQL cannot store NUL in text columns: a 400, not the driver's 500."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest("Invalid value: NUL characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item)


def _ns(request: Request) -> str:
    return request.path_params["namespace"]


# ---------------------------------------------------------------- namespaces


def _int_param(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} param must be an integer") from None
    if value < 0:
        raise BadRequest(f"{name} param must be positive")
    return value


def _namespace_query(request: Request) -> svc.NamespaceQuery:
    params = request.query_params
    conf = rt_of(request).conf
    q = svc.NamespaceQuery(limit=conf.limit_param_default)
    if (raw := params.get("limit")) is not None:
        q.limit = _int_param("limit", raw)
    q.limit = min(q.limit, conf.api_limit_max)
    q.marker = params.get("marker")
    q.sort_key = params.get("sort_key", "created_at")
    if q.sort_key not in NAMESPACE_SORT_KEYS:
        raise BadRequest(f"Invalid sort key: {q.sort_key}. It must be one of the "
                         f"following: {', '.join(sorted(NAMESPACE_SORT_KEYS))}.")
    q.sort_dir = params.get("sort_dir", "desc")
    if q.sort_dir not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort direction: {q.sort_dir}")
    visibility = params.get("visibility")
    if visibility is not None and visibility not in ("public", "private"):
        raise BadRequest(f"Invalid visibility value: {visibility}")
    q.visibility = visibility
    if (raw := params.get("resource_types")) is not None:
        q.resource_types = [v.strip() for v in raw.split(",") if v.strip()]
    return q


async def list_namespaces(request: Request) -> Response:
    query = _namespace_query(request)
    docs, next_marker = await call(svc.list_namespaces, rt_of(request), ctx_of(request),
                                   query)
    items = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    out: dict[str, Any] = {
        "namespaces": [_namespace(d) for d in docs],
        "first": _BASE + ("?" + urlencode(items) if items else ""),
        "schema": "/v2/schemas/metadefs/namespaces",
    }
    if next_marker is not None:
        out["next"] = _BASE + "?" + urlencode(items + [("marker", next_marker)])
    return json_response(out)


def _check_contents(body: dict[str, Any]) -> None:
    """The objects, tags and resource type associations a namespace is created with
    each need a name (the namespace schema, Glance's shape, does not require one)."""
    for key, schema in (("objects", "object"), ("tags", "tag"),
                        ("resource_type_associations", "resource_type")):
        for item in body.get(key) or ():
            if not isinstance(item.get("name"), str):
                raise BadRequest(f"Each of '{key}' needs a name: {schema} {item!r} has none")


async def create_namespace(request: Request) -> Response:
    body = await _body(request, "namespace")
    _check_contents(body)
    doc = await call(svc.create_namespace, rt_of(request), ctx_of(request), body)
    rendered = _namespace(doc)
    # A namespace is any string: percent-encoded, so a name with line breaks or
    # characters outside Latin-1 cannot break (or split) the response's headers.
    location = quote(rendered["self"], safe="/:@!$&'()*+,;=")
    return json_response(rendered, 201, headers={"Location": location})


async def show_namespace(request: Request) -> Response:
    doc = await call(svc.get_namespace, rt_of(request), ctx_of(request), _ns(request),
                     request.query_params.get("resource_type"))
    return json_response(_namespace(doc))


async def update_namespace(request: Request) -> Response:
    body = await _body(request, "namespace")
    doc = await call(svc.update_namespace, rt_of(request), ctx_of(request), _ns(request),
                     body)
    return json_response(_namespace(doc))


async def delete_namespace(request: Request) -> Response:
    await call(svc.delete_namespace, rt_of(request), ctx_of(request), _ns(request))
    return Response(status_code=204)


def _delete_all(kind: str) -> Any:
    async def handler(request: Request) -> Response:
        await call(svc.delete_contents, rt_of(request), ctx_of(request), _ns(request), kind)
        return Response(status_code=204)
    return handler


# ---------------------------------------------------------------- objects


async def list_objects(request: Request) -> Response:
    ns = _ns(request)
    docs = await call(svc.list_objects, rt_of(request), ctx_of(request), ns)
    return json_response({"objects": [_object(ns, d) for d in docs],
                          "schema": "v2/schemas/metadefs/objects"})


async def create_object(request: Request) -> Response:
    ns = _ns(request)
    body = await _body(request, "object")
    doc = await call(svc.create_object, rt_of(request), ctx_of(request), ns, body)
    return json_response(_object(ns, doc), 201)


async def show_object(request: Request) -> Response:
    ns = _ns(request)
    doc = await call(svc.get_object, rt_of(request), ctx_of(request), ns,
                     request.path_params["object_name"])
    return json_response(_object(ns, doc))


async def update_object(request: Request) -> Response:
    ns = _ns(request)
    body = await _body(request, "object")
    doc = await call(svc.update_object, rt_of(request), ctx_of(request), ns,
                     request.path_params["object_name"], body)
    return json_response(_object(ns, doc))


async def delete_object(request: Request) -> Response:
    await call(svc.delete_object, rt_of(request), ctx_of(request), _ns(request),
               request.path_params["object_name"])
    return Response(status_code=204)


# ---------------------------------------------------------------- properties


async def list_properties(request: Request) -> Response:
    props = await call(svc.list_properties, rt_of(request), ctx_of(request), _ns(request),
                       request.query_params.get("resource_type"))
    return json_response({"properties": props})


async def create_property(request: Request) -> Response:
    body = await _body(request, "property")
    doc = await call(svc.create_property, rt_of(request), ctx_of(request), _ns(request),
                     body)
    return json_response(doc, 201)


async def show_property(request: Request) -> Response:
    doc = await call(svc.get_property, rt_of(request), ctx_of(request), _ns(request),
                     request.path_params["property_name"],
                     request.query_params.get("resource_type"))
    return json_response(doc)


async def update_property(request: Request) -> Response:
    body = await _body(request, "property")
    doc = await call(svc.update_property, rt_of(request), ctx_of(request), _ns(request),
                     request.path_params["property_name"], body)
    return json_response(doc)


async def delete_property(request: Request) -> Response:
    await call(svc.delete_property, rt_of(request), ctx_of(request), _ns(request),
               request.path_params["property_name"])
    return Response(status_code=204)


# ---------------------------------------------------------------- resource types


async def list_resource_types(request: Request) -> Response:
    docs = await call(svc.list_resource_types, rt_of(request), ctx_of(request))
    return json_response({"resource_types": _render(docs)})


async def list_associations(request: Request) -> Response:
    docs = await call(svc.list_associations, rt_of(request), ctx_of(request), _ns(request))
    return json_response({"resource_type_associations": _render(docs)})


async def create_association(request: Request) -> Response:
    body = await _body(request, "resource_type")
    doc = await call(svc.create_association, rt_of(request), ctx_of(request), _ns(request),
                     body)
    return json_response(_render(doc), 201)


async def delete_association(request: Request) -> Response:
    await call(svc.delete_association, rt_of(request), ctx_of(request), _ns(request),
               request.path_params["resource_type"])
    return Response(status_code=204)


# ---------------------------------------------------------------- tags


async def list_tags(request: Request) -> Response:
    docs = await call(svc.list_tags, rt_of(request), ctx_of(request), _ns(request))
    return json_response({"tags": _render(docs)})


def _tag_name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise BadRequest("A tag name must be a non-empty string of at most 255 characters.")
    _refuse_nul(value)
    return value


async def create_tags(request: Request) -> Response:
    body = await read_json(request)
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
        raise BadRequest("Expected a body of the form {\"tags\": [{\"name\": ...}, ...]}.")
    names = [_tag_name(t.get("name")) for t in tags]
    append = request.headers.get("x-openstack-append", "").strip().lower() in _TRUE
    docs = await call(svc.create_tags, rt_of(request), ctx_of(request), _ns(request), names,
                      append)
    return json_response({"tags": docs}, 201)


async def create_tag(request: Request) -> Response:
    name = _tag_name(request.path_params["tag_name"])
    doc = await call(svc.create_tag, rt_of(request), ctx_of(request), _ns(request), name)
    return json_response(_render(doc), 201)


async def show_tag(request: Request) -> Response:
    doc = await call(svc.get_tag, rt_of(request), ctx_of(request), _ns(request),
                     request.path_params["tag_name"])
    return json_response(_render(doc))


async def update_tag(request: Request) -> Response:
    body = await _body(request, "tag")
    doc = await call(svc.update_tag, rt_of(request), ctx_of(request), _ns(request),
                     request.path_params["tag_name"], body["name"])
    return json_response(_render(doc))


async def delete_tag(request: Request) -> Response:
    await call(svc.delete_tag, rt_of(request), ctx_of(request), _ns(request),
               request.path_params["tag_name"])
    return Response(status_code=204)


_NS = _BASE + "/{namespace}"

routes = [
    Route("/v2/metadefs/resource_types", list_resource_types, methods=["GET"]),
    Route(_BASE, list_namespaces, methods=["GET"]),
    Route(_BASE, create_namespace, methods=["POST"]),
    Route(_NS, show_namespace, methods=["GET"]),
    Route(_NS, update_namespace, methods=["PUT"]),
    Route(_NS, delete_namespace, methods=["DELETE"]),
    Route(_NS + "/objects", list_objects, methods=["GET"]),
    Route(_NS + "/objects", create_object, methods=["POST"]),
    Route(_NS + "/objects", _delete_all("objects"), methods=["DELETE"]),
    Route(_NS + "/objects/{object_name}", show_object, methods=["GET"]),
    Route(_NS + "/objects/{object_name}", update_object, methods=["PUT"]),
    Route(_NS + "/objects/{object_name}", delete_object, methods=["DELETE"]),
    Route(_NS + "/properties", list_properties, methods=["GET"]),
    Route(_NS + "/properties", create_property, methods=["POST"]),
    Route(_NS + "/properties", _delete_all("properties"), methods=["DELETE"]),
    Route(_NS + "/properties/{property_name}", show_property, methods=["GET"]),
    Route(_NS + "/properties/{property_name}", update_property, methods=["PUT"]),
    Route(_NS + "/properties/{property_name}", delete_property, methods=["DELETE"]),
    Route(_NS + "/resource_types", list_associations, methods=["GET"]),
    Route(_NS + "/resource_types", create_association, methods=["POST"]),
    Route(_NS + "/resource_types/{resource_type}", delete_association, methods=["DELETE"]),
    Route(_NS + "/tags", list_tags, methods=["GET"]),
    Route(_NS + "/tags", create_tags, methods=["POST"]),
    Route(_NS + "/tags", _delete_all("tags"), methods=["DELETE"]),
    Route(_NS + "/tags/{tag_name}", show_tag, methods=["GET"]),
    Route(_NS + "/tags/{tag_name}", create_tag, methods=["POST"]),
    Route(_NS + "/tags/{tag_name}", update_tag, methods=["PUT"]),
    Route(_NS + "/tags/{tag_name}", delete_tag, methods=["DELETE"]),
]
