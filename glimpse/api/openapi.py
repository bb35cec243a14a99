"""The OpenAPI 3.1 document of the whole API, served at GET /v2/openapi.json.

Built, never written by hand: the request and response bodies are the JSON schemas
that validate requests (glimpse.api.schemas, glimpse.api.metadef_schemas; DESIGN.md
rule 3), and the paths are the application's own routes. Each route needs one entry in
OPERATIONS below (what it is, its body, its answers); a route without one is still
listed, marked ``x-undescribed``, and tests/api/test_openapi.py fails on it, so a new
route cannot be forgotten.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg
from starlette.routing import Route

from glimpse.api import metadef_schemas, schemas

OPENAPI_VERSION = "3.1.0"
PATCH_MEDIA_TYPES = (
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
)

# ----------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Op:
    """One operation: ``body`` names a request body (a component, "octet-stream",
    "patch"); ``ok`` maps success statuses to a response component (None: no body);
    ``errors`` are the error statuses it may answer besides 401/403 (always listed)."""

    summary: str
    tag: str
    ok: dict[int, str | None]
    errors: tuple[int, ...] = ()
    body: str | None = None
    query: tuple[str, ...] = ()
    public: bool = False  # answered without authentication
    extra: dict[str, Any] = field(default_factory=dict)


_IMG = "/v2/images/{image_id}"
_NS = "/v2/metadefs/namespaces/{namespace}"
_CHANGE = (400, 404, 409)

OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/"): Op("API versions", "versions", {300: "versions"}, public=True),
    ("GET", "/versions"): Op("API versions", "versions", {200: "versions"}, public=True),
    ("GET", "/v2"): Op("API versions", "versions", {200: "versions"}),
    ("GET", "/v2/openapi.json"): Op("This document", "versions", {200: "openapi"}),
    ("GET", "/v2/schemas/{name}"): Op(
        "A JSON schema of the API", "schemas", {200: "json_schema"}, (404,)
    ),
    # images
    ("GET", "/v2/images"): Op(
        "List images", "images", {200: "images"}, (400,), query=("image_list",)
    ),
    ("POST", "/v2/images"): Op(
        "Create an image record", "images", {201: "image"}, (400, 409, 413), body="image_create"
    ),
    ("GET", _IMG): Op("Show an image", "images", {200: "image"}, (404,)),
    ("PATCH", _IMG): Op(
        "Update an image (JSON patch)", "images", {200: "image"}, (*_CHANGE, 413, 415), body="patch"
    ),
    ("DELETE", _IMG): Op("Delete an image", "images", {204: None}, (*_CHANGE, 502, 504)),
    ("PUT", f"{_IMG}/file"): Op(
        "Upload image data",
        "image data",
        {204: None},
        (*_CHANGE, 410, 413, 415),
        body="octet-stream",
    ),
    ("GET", f"{_IMG}/file"): Op(
        "Download image data",
        "image data",
        {200: "octet-stream", 204: None, 206: "octet-stream"},
        (400, 404, 409, 416),
        query=("range",),
    ),
    ("POST", f"{_IMG}/actions/deactivate"): Op(
        "Deactivate an image", "images", {204: None}, _CHANGE
    ),
    ("POST", f"{_IMG}/actions/reactivate"): Op(
        "Reactivate an image", "images", {204: None}, _CHANGE
    ),
    ("PUT", f"{_IMG}/tags/{{tag}}"): Op("Add a tag", "images", {204: None}, (*_CHANGE, 413)),
    ("DELETE", f"{_IMG}/tags/{{tag}}"): Op("Remove a tag", "images", {204: None}, _CHANGE),
    # members
    ("GET", f"{_IMG}/members"): Op("List the image's members", "members", {200: "members"}, (404,)),
    ("POST", f"{_IMG}/members"): Op(
        "Share the image with a project",
        "members",
        {200: "member"},
        (*_CHANGE, 413),
        body="member_create",
    ),
    ("GET", f"{_IMG}/members/{{member_id}}"): Op(
        "Show a member", "members", {200: "member"}, (404,)
    ),
    ("PUT", f"{_IMG}/members/{{member_id}}"): Op(
        "Accept or reject a shared image", "members", {200: "member"}, _CHANGE, body="member_update"
    ),
    ("DELETE", f"{_IMG}/members/{{member_id}}"): Op(
        "Stop sharing with a project", "members", {204: None}, _CHANGE
    ),
    # interoperable import
    ("PUT", f"{_IMG}/stage"): Op(
        "Stage image data for import",
        "import",
        {204: None},
        (*_CHANGE, 410, 413, 415),
        body="octet-stream",
    ),
    ("POST", f"{_IMG}/import"): Op(
        "Import staged or remote data",
        "import",
        {202: None},
        (*_CHANGE, 413, 502, 504),
        body="import_request",
    ),
    ("GET", f"{_IMG}/tasks"): Op("Tasks of an image", "tasks", {200: "image_tasks"}, (404,)),
    ("GET", "/v2/tasks"): Op("List tasks", "tasks", {200: "tasks"}, (400,), query=("task_list",)),
    ("POST", "/v2/tasks"): Op(
        "Create a task", "tasks", {201: "task"}, (400, 413), body="task_create"
    ),
    ("GET", "/v2/tasks/{task_id}"): Op("Show a task", "tasks", {200: "task"}, (404,)),
    ("DELETE", "/v2/tasks/{task_id}"): Op("Tasks cannot be deleted", "tasks", {}, (405,)),
    ("GET", "/v2/info/import"): Op("Enabled import methods", "discovery", {200: "info_import"}),
    ("GET", "/v2/info/stores"): Op(
        "Stores clients may name", "discovery", {200: "info_stores"}, (404,)
    ),
    ("GET", "/v2/info/stores/detail"): Op(
        "Stores with their properties (admin)", "discovery", {200: "info_stores"}, (404,)
    ),
    ("GET", "/v2/info/usage"): Op("The project's quota usage", "discovery", {200: "info_usage"}),
    # metadata definitions
    ("GET", "/v2/metadefs/resource_types"): Op(
        "List resource types", "metadefs", {200: "metadef_resource_type_list"}
    ),
    ("GET", "/v2/metadefs/namespaces"): Op(
        "List namespaces",
        "metadefs",
        {200: "metadef_namespaces"},
        (400, 404),  # 404: a marker that names no visible namespace (as Glance)
        query=("namespace_list",),
    ),
    ("POST", "/v2/metadefs/namespaces"): Op(
        "Create a namespace",
        "metadefs",
        {201: "metadef_namespace"},
        (400, 409, 413),
        body="metadef_namespace",
    ),
    ("GET", _NS): Op(
        "Show a namespace",
        "metadefs",
        {200: "metadef_namespace"},
        (400, 404),
        query=("resource_type",),
    ),
    ("PUT", _NS): Op(
        "Update a namespace",
        "metadefs",
        {200: "metadef_namespace"},
        (400, 404, 409),
        body="metadef_namespace",
    ),
    ("DELETE", _NS): Op("Delete a namespace", "metadefs", {204: None}, (404,)),
    **{
        key: value
        for kind, item, create_status in (
            ("objects", "object", 201),
            ("properties", "property", 201),
            ("tags", "tag", 201),
        )
        for key, value in {
            ("GET", f"{_NS}/{kind}"): Op(
                f"List the namespace's {kind}", "metadefs", {200: f"metadef_{kind}"}, (400, 404)
            ),
            ("POST", f"{_NS}/{kind}"): Op(
                f"Create {kind}" if kind == "tags" else f"Create a {item}",
                "metadefs",
                {create_status: f"metadef_{'tags' if kind == 'tags' else item}"},
                (400, 404, 409, 413),
                body="metadef_tags_create" if kind == "tags" else f"metadef_{item}",
            ),
            ("DELETE", f"{_NS}/{kind}"): Op(
                f"Delete every {item} of the namespace", "metadefs", {204: None}, (404,)
            ),
            ("GET", f"{_NS}/{kind}/{{{item}_name}}"): Op(
                f"Show a {item}", "metadefs", {200: f"metadef_{item}"}, (400, 404)
            ),
            ("PUT", f"{_NS}/{kind}/{{{item}_name}}"): Op(
                f"Update a {item}",
                "metadefs",
                {200: f"metadef_{item}"},
                (400, 404, 409),
                body=f"metadef_{item}",
            ),
            ("DELETE", f"{_NS}/{kind}/{{{item}_name}}"): Op(
                f"Delete a {item}", "metadefs", {204: None}, (404,)
            ),
        }.items()
    },
    ("POST", f"{_NS}/tags/{{tag_name}}"): Op(
        "Create a tag", "metadefs", {201: "metadef_tag"}, (400, 404, 409, 413)
    ),
    ("GET", f"{_NS}/resource_types"): Op(
        "Resource types of a namespace", "metadefs", {200: "metadef_resource_types"}, (404,)
    ),
    ("POST", f"{_NS}/resource_types"): Op(
        "Associate a resource type",
        "metadefs",
        {201: "metadef_resource_type"},
        (400, 404, 409),
        body="metadef_resource_type",
    ),
    ("DELETE", f"{_NS}/resource_types/{{resource_type}}"): Op(
        "Remove a resource type association", "metadefs", {204: None}, (404,)
    ),
    # locations (API 2.17) and copies per store
    ("POST", f"{_IMG}/locations"): Op(
        "Add a location to a queued image (API 2.17)",
        "locations",
        {202: None},
        (400, 404, 409),
        body="location_add",
    ),
    ("GET", f"{_IMG}/locations"): Op(
        "The image's locations (service role)", "locations", {200: "location_list"}, (404,)
    ),
    ("DELETE", "/v2/stores/{store_id}/{image_id}"): Op(
        "Delete the image's copy in one store", "locations", {204: None}, (404, 409)
    ),
    # image cache (API 2.14-2.18; 404 when this node has no cache)
    ("GET", "/v2/cache"): Op("Cached and queued images", "cache", {200: "cache_state"}, (404,)),
    ("DELETE", "/v2/cache"): Op(
        "Clear the cache, the queue or both", "cache", {204: None}, (400, 404)
    ),
    ("POST", "/v2/cache/clean"): Op(
        "Remove invalid and stalled copies", "cache", {200: None}, (404,)
    ),
    ("POST", "/v2/cache/prune"): Op(
        "Prune the cache below its maximum size", "cache", {200: "cache_prune"}, (404,)
    ),
    ("GET", "/v2/cache/nodes/{image_id}"): Op(
        "Nodes holding a copy of the image", "cache", {200: "cache_nodes"}, (404,)
    ),
    ("DELETE", "/v2/cache/{image_id}"): Op(
        "Drop the image's cached copy", "cache", {204: None}, (404,)
    ),
    ("PUT", "/v2/cache/{image_id}"): Op(
        "Queue the image for caching", "cache", {202: None}, (400, 404)
    ),
    # operations (issue 18)
    ("GET", "/healthcheck"): Op(
        "Health probe for load balancers", "operations", {200: "health"}, (503,), public=True
    ),
    ("GET", "/healthcheck/detailed"): Op(
        "Health of each dependency (admin)", "operations", {200: "health"}, (503,)
    ),
    ("GET", "/metrics"): Op("Prometheus metrics (admin)", "operations", {200: "metrics"}),
}

# Answered before routing (glimpse.api.versions.VersionNegotiation): not Starlette routes.
MIDDLEWARE_PATHS = (("GET", "/"), ("GET", "/versions"))

# ----------------------------------------------------------------------------- parameters

_QUERY: dict[str, list[dict[str, Any]]] = {
    "image_list": [
        {"name": "limit", "schema": {"type": "integer", "minimum": 0}},
        {"name": "marker", "schema": {"type": "string"}},
        {"name": "sort_key", "schema": {"type": "string"}},
        {"name": "sort_dir", "schema": {"type": "string", "enum": ["asc", "desc"]}},
        {
            "name": "sort",
            "schema": {"type": "string"},
            "description": "key:dir pairs, comma-separated",
        },
        {"name": "name", "schema": {"type": "string"}},
        {"name": "status", "schema": {"type": "string"}},
        {
            "name": "visibility",
            "schema": {
                "type": "string",
                "enum": ["public", "private", "shared", "community", "all"],
            },
        },
        {
            "name": "member_status",
            "schema": {"type": "string", "enum": ["pending", "accepted", "rejected", "all"]},
        },
        {"name": "owner", "schema": {"type": "string"}},
        {"name": "tag", "schema": {"type": "string"}},
        {"name": "protected", "schema": {"type": "string", "enum": ["true", "false"]}},
        {"name": "os_hidden", "schema": {"type": "string", "enum": ["true", "false"]}},
        {"name": "size_min", "schema": {"type": "integer", "minimum": 0}},
        {"name": "size_max", "schema": {"type": "integer", "minimum": 0}},
        {"name": "disk_format", "schema": {"type": "string"}},
        {"name": "container_format", "schema": {"type": "string"}},
        {
            "name": "created_at",
            "schema": {"type": "string"},
            "description": "operator:ISO 8601 time (gt, gte, lt, lte, eq, neq)",
        },
        {"name": "updated_at", "schema": {"type": "string"}},
    ],
    "task_list": [
        {"name": "limit", "schema": {"type": "integer", "minimum": 0}},
        {"name": "marker", "schema": {"type": "string"}},
        {"name": "sort_key", "schema": {"type": "string"}},
        {"name": "sort_dir", "schema": {"type": "string", "enum": ["asc", "desc"]}},
        {"name": "status", "schema": {"type": "string", "enum": list(schemas.TASK_STATUSES)}},
        {"name": "type", "schema": {"type": "string", "enum": ["import"]}},
    ],
    "namespace_list": [
        {"name": "limit", "schema": {"type": "integer", "minimum": 0}},
        {"name": "marker", "schema": {"type": "string"}},
        {"name": "sort_key", "schema": {"type": "string"}},
        {"name": "sort_dir", "schema": {"type": "string", "enum": ["asc", "desc"]}},
        {"name": "visibility", "schema": {"type": "string", "enum": ["public", "private"]}},
        {
            "name": "resource_types",
            "schema": {"type": "string"},
            "description": "resource type names, comma-separated",
        },
    ],
    "resource_type": [{"name": "resource_type", "schema": {"type": "string"}}],
}
_HEADERS = {
    "range": [
        {
            "name": "Range",
            "in": "header",
            "schema": {"type": "string"},
            "description": "One byte range (bytes=first-last, bytes=-suffix)",
        }
    ],
}

# ----------------------------------------------------------------------------- schemas

_LOOSE = {"type": "object"}
_ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": ["string", "integer"]},
        "title": {"type": "string"},
        "message": {"type": "string"},
    },
}


def _as_object(schema: dict[str, Any]) -> dict[str, Any]:
    # The validators check bodies as objects even where the served schema (as
    # Glance's) leaves out the type: the document says what is validated.
    return schema if "type" in schema else {**schema, "type": "object"}


def _lift_definitions(schema: dict[str, Any], prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Move a schema's ``definitions`` into components and point its refs there."""
    doc = copy.deepcopy(schema)
    definitions = doc.pop("definitions", {})
    for name, value in definitions.items():
        out.setdefault(prefix + name, value)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    f"#/components/schemas/{prefix}{v.rsplit('/', 1)[1]}"
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/definitions/")
                    else rewrite(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name in list(out):
        if name.startswith(prefix):
            out[name] = rewrite(out[name])
    return rewrite(doc)


def _component_schemas(conf: cfg.ConfigOpts) -> dict[str, Any]:
    formats = (conf.image_format.disk_formats, conf.image_format.container_formats)
    image = _as_object(schemas.image_schema(*formats))
    out: dict[str, Any] = {
        "image": image,
        "image_create": image,
        "images": _as_object(schemas.images_schema(*formats)),
        "member": _as_object(schemas.member_schema()),
        "members": _as_object(schemas.members_schema()),
        "member_create": schemas.member_create_body_schema(),
        "member_update": schemas.member_update_body_schema(),
        "task": _as_object(schemas.task_schema()),
        "task_create": schemas.task_create_body_schema(),
        "tasks": _as_object(schemas.tasks_schema()),
        "image_tasks": {
            "type": "object",
            "properties": {"tasks": {"type": "array", "items": _LOOSE}},
        },
        "import_request": schemas.import_body_schema(),
        "image_patch": schemas.image_patch_body_schema(),
        "versions": {
            "type": "object",
            "required": ["versions"],
            "properties": {
                "versions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "status": {"type": "string"},
                            "links": {"type": "array"},
                        },
                    },
                }
            },
        },
        "openapi": {"type": "object", "required": ["openapi", "paths"]},
        "json_schema": _LOOSE,
        "info_import": _LOOSE,
        "info_stores": {
            "type": "object",
            "properties": {"stores": {"type": "array", "items": _LOOSE}},
        },
        "info_usage": {"type": "object", "properties": {"usage": _LOOSE}},
        "location_add": {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string"},
                "validation_data": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "os_hash_algo": {"type": "string"},
                        "os_hash_value": {"type": "string", "maxLength": 128},
                    },
                },
            },
        },
        "location_list": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"url": {"type": "string"}, "metadata": _LOOSE},
            },
        },
        "cache_state": {
            "type": "object",
            "properties": {
                "cached_images": {"type": "array", "items": _LOOSE},
                "queued_images": {"type": "array", "items": {"type": "string"}},
            },
        },
        "cache_prune": {
            "type": "object",
            "properties": {
                "total_files_pruned": {"type": "integer"},
                "total_bytes_pruned": {"type": "integer"},
            },
        },
        "cache_nodes": {"type": "array", "items": {"type": "string"}},
        "health": {"type": "object"},
        "error": _ERROR,
        "metadef_resource_type_list": {
            "type": "object",
            "properties": {"resource_types": {"type": "array", "items": _LOOSE}},
        },
        "metadef_tags_create": {
            "type": "object",
            "properties": {
                "tags": {
                    "type": "array",
                    "items": _as_object(metadef_schemas.get("metadefs/tag") or {}),
                }
            },
        },
    }
    for name in metadef_schemas.BUILDERS:
        short = name.split("/", 1)[1]
        served = metadef_schemas.get(name)
        assert served is not None
        out["metadef_" + short] = _lift_definitions(_as_object(served), "metadef_def_", out)
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _request_body(body: str) -> dict[str, Any]:
    if body == "octet-stream":
        content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    elif body == "patch":
        content = {media: {"schema": _ref("image_patch")} for media in PATCH_MEDIA_TYPES}
    else:
        content = {"application/json": {"schema": _ref(body)}}
    return {"required": True, "content": content}


_ERROR_CONTENT = {
    "application/json": {"schema": _ref("error")},
    "text/html": {"schema": {"type": "string"}},
    "text/plain": {"schema": {"type": "string"}},
}
_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    300: "Multiple Choices",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _success(status: int, name: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": _REASONS[status]}
    if name == "octet-stream":
        answer["content"] = {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
        }
    elif name == "health":
        answer["content"] = {
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": _ref("health")},
        }
    elif name == "metrics":
        answer["content"] = {"text/plain": {"schema": {"type": "string"}}}
    elif name is not None:
        answer["content"] = {"application/json": {"schema": _ref(name)}}
    return answer


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _operation(method: str, path: str, op: Op) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {str(status): _success(status, name) for status, name in op.ok.items()},
    }
    statuses = set(op.errors)
    if not op.public:
        statuses |= {401, 403}
    for status in sorted(statuses):
        doc["responses"][str(status)] = {"description": _REASONS[status], "content": _ERROR_CONTENT}
    parameters = _path_parameters(path)
    for group in op.query:
        if group in _HEADERS:
            parameters += copy.deepcopy(_HEADERS[group])
        else:
            parameters += [{**p, "in": "query"} for p in copy.deepcopy(_QUERY[group])]
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = _request_body(op.body)
    if op.public:
        doc["security"] = []
    doc.update(op.extra)
    return doc


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.strip("/").split("/") if p] or ["root"]
    return "_".join([method.lower(), *words]).replace(".", "_").replace("-", "_")


def route_operations(routes: list[Any]) -> list[tuple[str, str]]:
    """(method, OpenAPI path) of every route of the application, in route order."""
    found: list[tuple[str, str]] = []
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        path = route.path.replace(":path}", "}")
        for method in sorted(route.methods - {"HEAD"}):
            found.append((method, path))
    return found


def build(conf: cfg.ConfigOpts, routes: list[Any]) -> dict[str, Any]:
    """The OpenAPI document of an application with these routes and this config."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in [*MIDDLEWARE_PATHS, *route_operations(routes)]:
        op = OPERATIONS.get((method, path))
        if op is None:
            operation = {
                "operationId": _operation_id(method, path),
                "x-undescribed": True,
                "parameters": _path_parameters(path),
                "responses": {"default": {"description": "Undescribed"}},
            }
        else:
            operation = _operation(method, path, op)
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Glimpse Images API v2",
            "version": "2.17",
            "description": "The OpenStack Images API v2 as Glimpse serves it. Request and "
            "response bodies are the JSON schemas served at /v2/schemas/*.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": "/"}],
        "security": [{"keystone": []}],
        "tags": [{"name": t} for t in dict.fromkeys(o.tag for o in OPERATIONS.values())],
        "paths": paths,
        "components": {
            "schemas": _component_schemas(conf),
            "securitySchemes": {
                "keystone": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Auth-Token",
                    "description": "A Keystone token (auth_strategy = keystone); other "
                    "strategies read identity headers instead (docs/auth.md)",
                }
            },
        },
    }


def document_bytes(conf: cfg.ConfigOpts, routes: list[Any]) -> bytes:
    """The serialized document (callers keep it: the routes do not change)."""
    return json.dumps(build(conf, routes), separators=(",", ":")).encode()
