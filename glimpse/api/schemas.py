"""JSON schemas of the Images API v2, as Glance serves them at /v2/schemas/*.

These documents are the single source of truth for request validation and for
the OpenAPI document (DESIGN.md rule 3). Property names, types (including the
``["null", "string"]`` unions), enums, length limits, patterns, ``readOnly``
flags and links are those Glance (API v2.16/v2.17) publishes; the descriptions
are our own words.

Which document each endpoint serves, as Glance does:

* ``/v2/schemas/image``: the full image schema, ``additionalProperties`` of
  type string and the self/enclosure/describedby links.
* ``/v2/schemas/images``: the collection, with ``images``/``first``/``next``/
  ``schema`` properties and first/next/describedby links.
* ``/v2/schemas/member``, ``/members``, ``/task``, ``/tasks``: the "minimal"
  form (name + properties, and only a describedby link on collections); the
  tasks collection lists tasks without ``input``, ``result`` and ``message``.

Validation uses the validator Glance ends up with: Glance calls
``jsonschema.validate`` on schemas without ``$schema``, which picks the newest
draft (2020-12 with jsonschema 4.x). The difference from Draft 4 is visible:
``1.0`` is an integer (Glance 33 accepts ``"min_ram": 1.0``). Validators are
compiled once per schema object and kept in a small cache, so the per-request
cost is the validation alone. Error messages are Glance's: "Provided object
does not match schema '<name>': " followed by jsonschema's description of the
best-matching error. Schema builders return cached documents: treat them as
read-only (copy before changing one).
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from glimpse.domain import images as image_rules
from glimpse.errors import BadRequest, Forbidden

__all__ = [
    "CUSTOM_PROPERTY_KEY_MAX",
    "IMAGE_BASE_ATTRIBUTES",
    "IMAGE_CREATE_READONLY",
    "IMAGE_READONLY",
    "IMAGE_RESERVED",
    "IMAGE_RESERVED_NAMESPACE",
    "IMAGE_STATUSES",
    "IMAGE_VISIBILITIES",
    "MEMBER_STATUSES",
    "TASK_STATUSES",
    "TASK_TYPES",
    "UUID_PATTERN",
    "check_create_attributes",
    "check_patch_attribute",
    "image_properties",
    "image_schema",
    "images_schema",
    "load_custom_properties",
    "member_schema",
    "members_schema",
    "parse_member_create",
    "parse_member_update",
    "task_schema",
    "tasks_schema",
    "validate",
    "validate_image",
    "validate_member_status",
    "copy_schema",
]

UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
    "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)

# Order as in Glance's schema enum.
IMAGE_STATUSES = (
    "queued", "saving", "active", "killed", "deleted",
    "uploading", "importing", "pending_delete", "deactivated",
)
IMAGE_VISIBILITIES = ("community", "public", "private", "shared")
MEMBER_STATUSES = ("pending", "accepted", "rejected")
TASK_STATUSES = ("pending", "processing", "success", "failure")
TASK_TYPES = ("import", "api_image_import", "location_import")

# The read-only and reserved names live in glimpse.domain.images; these
# aliases keep this module's public names.
IMAGE_READONLY = image_rules.READ_ONLY

# Attributes refused with 403 "Attribute '<name>' is read-only." in a create
# body: the five the request deserializer rejects before schema validation,
# then the base attributes the image factory refuses.
IMAGE_CREATE_DISALLOWED = ("direct_url", "self", "file", "schema", "stores")
IMAGE_CREATE_READONLY = frozenset({
    *IMAGE_CREATE_DISALLOWED,
    "status", "checksum", "size", "virtual_size", "created_at", "updated_at",
})

# Names Glance keeps for itself: 403 "Attribute '<name>' is reserved." on create
# and on PATCH. ``locations`` is reserved on create only (PATCH manages it).
IMAGE_RESERVED = image_rules.RESERVED
IMAGE_CREATE_RESERVED = image_rules.CREATE_RESERVED
# The order in which Glance's image factory reports read-only base attributes.
_FACTORY_READONLY_ORDER = (
    "created_at", "updated_at", "status", "checksum", "size", "virtual_size",
)
IMAGE_RESERVED_NAMESPACE = image_rules.RESERVED_PREFIX

# Attributes that are columns of the image, not additional properties.
IMAGE_BASE_ATTRIBUTES = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
    "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size",
    "container_format", "disk_format", "created_at", "updated_at", "tags",
    "min_ram", "min_disk",
})

CUSTOM_PROPERTY_KEY_MAX = 255


# --------------------------------------------------------------------------- image


def image_properties(
    disk_formats: Sequence[str], container_formats: Sequence[str]
) -> dict[str, Any]:
    """The base properties of an image, with the formats enabled by config."""
    return {
        "id": {
            "type": "string",
            "description": "Identifier of the image (a UUID)",
            "pattern": UUID_PATTERN,
        },
        "name": {
            "type": ["null", "string"],
            "description": "Human-readable name of the image",
            "maxLength": 255,
        },
        "status": {
            "type": "string",
            "readOnly": True,
            "description": "Lifecycle status of the image",
            "enum": list(IMAGE_STATUSES),
        },
        "visibility": {
            "type": "string",
            "description": "Who may see and use the image",
            "enum": list(IMAGE_VISIBILITIES),
        },
        "protected": {
            "type": "boolean",
            "description": "When true the image cannot be deleted",
        },
        "os_hidden": {
            "type": "boolean",
            "description": "When true the image is left out of default image lists",
        },
        "checksum": {
            "type": ["null", "string"],
            "readOnly": True,
            "description": "MD5 digest of the image data",
            "maxLength": 32,
        },
        "os_hash_algo": {
            "type": ["null", "string"],
            "readOnly": True,
            "description": "Name of the hash algorithm used for os_hash_value",
            "maxLength": 64,
        },
        "os_hash_value": {
            "type": ["null", "string"],
            "readOnly": True,
            "description": "Hex digest of the image data computed with os_hash_algo",
            "maxLength": 128,
        },
        "owner": {
            "type": ["null", "string"],
            "description": "Project that owns the image",
            "maxLength": 255,
        },
        "size": {
            "type": ["null", "integer"],
            "readOnly": True,
            "description": "Size of the image data in bytes",
        },
        "virtual_size": {
            "type": ["null", "integer"],
            "readOnly": True,
            "description": "Virtual size of the disk in the image data, in bytes",
        },
        "container_format": {
            "type": ["null", "string"],
            "description": "Container format of the image data",
            "enum": [None, *container_formats],
        },
        "disk_format": {
            "type": ["null", "string"],
            "description": "Disk format of the image data",
            "enum": [None, *disk_formats],
        },
        "created_at": {
            "type": "string",
            "readOnly": True,
            "description": "When the image record was created",
        },
        "updated_at": {
            "type": "string",
            "readOnly": True,
            "description": "When the image record was last changed",
        },
        "tags": {
            "type": "array",
            "description": "Free-form strings attached to the image",
            "items": {"type": "string", "maxLength": 255},
        },
        "direct_url": {
            "type": "string",
            "readOnly": True,
            "description": "URL of the image data in its backing store",
        },
        "min_ram": {
            "type": "integer",
            "description": "RAM (MiB) needed to boot the image",
        },
        "min_disk": {
            "type": "integer",
            "description": "Disk space (GiB) needed to boot the image",
        },
        "self": {
            "type": "string",
            "readOnly": True,
            "description": "URL of this image record",
        },
        "file": {
            "type": "string",
            "readOnly": True,
            "description": "URL of the image data",
        },
        "stores": {
            "type": "string",
            "readOnly": True,
            "description": "Comma-separated identifiers of the stores holding the data; "
            "present only when multiple stores are enabled",
        },
        "schema": {
            "type": "string",
            "readOnly": True,
            "description": "URL of the schema describing this image",
        },
        "locations": {
            "type": "array",
            "description": "Locations of the image data in external stores",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "maxLength": 255},
                    "metadata": {"type": "object"},
                    "validation_data": {
                        "description": "Values for checksum and hashes of a queued image; "
                        "for other images they must equal the recorded values",
                        "type": "object",
                        "writeOnly": True,
                        "additionalProperties": False,
                        "properties": {
                            "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                            "os_hash_algo": {"type": "string", "maxLength": 64},
                            "os_hash_value": {"type": "string", "maxLength": 128},
                        },
                        "required": ["os_hash_algo", "os_hash_value"],
                    },
                },
                "required": ["url", "metadata"],
            },
        },
    }


def _image_links() -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": "{self}"},
        {"rel": "enclosure", "href": "{file}"},
        {"rel": "describedby", "href": "{schema}"},
    ]


def _freeze(custom_properties: Mapping[str, Any] | None) -> str:
    return json.dumps(custom_properties or {}, sort_keys=True)


@lru_cache(maxsize=32)
def _image_schema(disk: tuple[str, ...], container: tuple[str, ...], custom: str) -> dict:
    properties = image_properties(disk, container)
    extra = json.loads(custom)
    if extra:
        conflicting = sorted(
            key for key, value in extra.items()
            if key in properties and properties[key] != value
        )
        if conflicting:
            raise ValueError(
                f"custom properties ({', '.join(conflicting)}) conflict with base properties"
            )
        for value in extra.values():
            value["is_base"] = False
        properties.update(extra)
    return {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": _image_links(),
    }


def image_schema(
    disk_formats: Iterable[str],
    container_formats: Iterable[str],
    custom_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document served at /v2/schemas/image.

    ``disk_formats``/``container_formats`` come from ``[image_format]`` in the
    config; ``null`` is always allowed as well. ``custom_properties`` is the
    content of an operator's ``schema-image.json`` (each gets ``is_base: false``,
    and redefining a base property differently raises ValueError, as in Glance).
    The result is cached and shared: do not modify it.
    """
    return _image_schema(tuple(disk_formats), tuple(container_formats),
                         _freeze(custom_properties))


@lru_cache(maxsize=32)
def _images_schema(disk: tuple[str, ...], container: tuple[str, ...], custom: str) -> dict:
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": _image_schema(disk, container, custom)},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema(
    disk_formats: Iterable[str],
    container_formats: Iterable[str],
    custom_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document served at /v2/schemas/images (items are the image schema)."""
    return _images_schema(tuple(disk_formats), tuple(container_formats),
                          _freeze(custom_properties))


def load_custom_properties(path: str | None) -> dict[str, Any]:
    """Read an operator's schema-image.json; no path (or no file) means none."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of property schemas")
    return data


# --------------------------------------------------------------------------- members


@lru_cache(maxsize=1)
def _member_schema() -> dict[str, Any]:
    return {
        "name": "member",
        "properties": {
            "member_id": {
                "type": "string",
                "description": "Project the image is shared with",
            },
            "image_id": {
                "type": "string",
                "description": "Identifier of the shared image",
                "pattern": UUID_PATTERN,
            },
            "created_at": {
                "type": "string",
                "description": "When the membership was created",
            },
            "updated_at": {
                "type": "string",
                "description": "When the membership was last changed",
            },
            "status": {
                "type": "string",
                "description": "Whether the member accepted the image",
                "enum": list(MEMBER_STATUSES),
            },
            "schema": {"readOnly": True, "type": "string"},
        },
    }


@lru_cache(maxsize=1)
def _member_schema_strict() -> dict[str, Any]:
    return {**_member_schema(), "additionalProperties": False}


def member_schema(strict: bool = False) -> dict[str, Any]:
    """The document served at /v2/schemas/member (cached; do not modify).

    ``strict=True`` gives the form Glance validates with (its "raw" schema):
    the same plus ``additionalProperties: false``.
    """
    return _member_schema_strict() if strict else _member_schema()


@lru_cache(maxsize=1)
def _members_schema() -> dict[str, Any]:
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": _member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def members_schema() -> dict[str, Any]:
    """The document served at /v2/schemas/members (cached; do not modify)."""
    return _members_schema()


# --------------------------------------------------------------------------- tasks


def _task_properties() -> dict[str, Any]:
    return {
        "id": {
            "type": "string",
            "description": "Identifier of the task",
            "pattern": UUID_PATTERN,
        },
        "type": {
            "type": "string",
            "description": "Kind of work the task does",
            "enum": list(TASK_TYPES),
        },
        "status": {
            "type": "string",
            "description": "Progress of the task",
            "enum": list(TASK_STATUSES),
        },
        "input": {
            "type": ["null", "object"],
            "description": "Parameters the task was given",
        },
        "result": {
            "type": ["null", "object"],
            "description": "What the task produced",
        },
        # Null without a project (the embedded noauth admin), so clients that check
        # a task against this schema (glance task-show) accept it.
        "owner": {"type": ["null", "string"], "description": "Project that owns the task"},
        "message": {
            "type": "string",
            "description": "Human-readable note, usually set when the task failed",
        },
        "image_id": {"type": ["null", "string"], "description": "Image the task works on"},
        "request_id": {"type": ["null", "string"],
                       "description": "Request that started the task"},
        "user_id": {"type": ["null", "string"], "description": "User who started the task"},
        "expires_at": {
            "type": ["null", "string"],
            "description": "When the task record may be removed",
        },
        "created_at": {"type": "string", "description": "When the task was created"},
        "updated_at": {"type": "string", "description": "When the task was last changed"},
        "self": {"readOnly": True, "type": "string"},
        "schema": {"readOnly": True, "type": "string"},
    }


@lru_cache(maxsize=1)
def _task_schema() -> dict[str, Any]:
    return {"name": "task", "properties": _task_properties()}


@lru_cache(maxsize=1)
def _task_schema_strict() -> dict[str, Any]:
    return {**_task_schema(), "additionalProperties": False}


def task_schema(strict: bool = False) -> dict[str, Any]:
    """The document served at /v2/schemas/task (cached; do not modify).

    ``strict=True`` gives the form Glance validates POST /v2/tasks bodies with:
    the same plus ``additionalProperties: false``.
    """
    return _task_schema_strict() if strict else _task_schema()


@lru_cache(maxsize=1)
def _tasks_schema() -> dict[str, Any]:
    listed = _task_properties()
    for hidden in ("input", "result", "message"):
        del listed[hidden]
    return {
        "name": "tasks",
        "properties": {
            "tasks": {"type": "array", "items": {"name": "task", "properties": listed}},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def tasks_schema() -> dict[str, Any]:
    """The document served at /v2/schemas/tasks (cached; do not modify)."""
    return _tasks_schema()


# --------------------------------------------------------------------------- validation

_VALIDATOR_CACHE_SIZE = 64
_validators: OrderedDict[int, tuple[dict[str, Any], Draft202012Validator]] = OrderedDict()
_validators_lock = threading.Lock()


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """The compiled validator of ``schema``, built on first use.

    Keyed by object identity: the cache holds the schema itself, so an id cannot
    be reused by another object while its entry lives.
    """
    key = id(schema)
    with _validators_lock:
        entry = _validators.get(key)
        if entry is not None and entry[0] is schema:
            _validators.move_to_end(key)
            return entry[1]
    # Member/task schemas carry no "type": "object"; validate bodies as objects.
    checked = schema if "type" in schema else {**schema, "type": "object"}
    Draft202012Validator.check_schema(checked)
    validator = Draft202012Validator(checked)
    with _validators_lock:
        _validators[key] = (schema, validator)
        _validators.move_to_end(key)
        while len(_validators) > _VALIDATOR_CACHE_SIZE:
            _validators.popitem(last=False)
    return validator


def validate(doc: Any, schema: dict[str, Any]) -> None:
    """Check ``doc`` against ``schema``; raise BadRequest as Glance words it.

    The message is "Provided object does not match schema '<name>': " followed
    by jsonschema's text for the best-matching error (message, failing rule,
    offending value), exactly the shape Glance returns.
    """
    error: ValidationError | None = best_match(_validator(schema).iter_errors(doc))
    if error is not None:
        raise BadRequest(
            f"Provided object does not match schema '{schema.get('name', 'object')}': {error}"
        )


def validate_image(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    """Validate an image body (create) or a partial image (one PATCH change)."""
    validate(doc, schema)


def _is_reserved(name: str, reserved: frozenset[str]) -> bool:
    return name in reserved or name.startswith(IMAGE_RESERVED_NAMESPACE)


def check_create_attributes(doc: Any, schema: dict[str, Any]) -> None:
    """Every check Glance makes on a POST /v2/images body, in Glance's order.

    1. ``direct_url``/``self``/``file``/``schema``/``stores`` -> 403 read-only;
    2. schema validation -> 400;
    3. an additional property key over 255 characters -> 400;
    4. ``location``/``deleted``/``deleted_at`` or an ``os_glance`` prefix
       -> 403 reserved;
    5. ``status``/``checksum``/``size``/``virtual_size``/``created_at``/
       ``updated_at`` -> 403 read-only, then ``locations`` -> 403 reserved
       (Glance does these two in the image factory, after policy checks; the
       status codes and messages are the same).
    """
    if not isinstance(doc, dict):
        validate(doc, schema)  # reports "is not of type 'object'"
        return
    for name in IMAGE_CREATE_DISALLOWED:
        if name in doc:
            raise Forbidden(f"Attribute '{name}' is read-only.")
    validate(doc, schema)
    for name in doc:
        if name in IMAGE_BASE_ATTRIBUTES:
            continue
        if len(name) > CUSTOM_PROPERTY_KEY_MAX:
            raise BadRequest("Custom property should not be greater than 255 characters.")
        if _is_reserved(name, IMAGE_RESERVED):
            raise Forbidden(f"Attribute '{name}' is reserved.")
    for name in _FACTORY_READONLY_ORDER:
        if name in doc:
            raise Forbidden(f"Attribute '{name}' is read-only.")
    if "locations" in doc:
        raise Forbidden("Attribute 'locations' is reserved.")


def check_patch_attribute(name: str) -> None:
    """Refuse a PATCH whose path starts at a read-only or reserved attribute (403)."""
    image_rules.check_settable(name, creating=False)


# --------------------------------------------------------------------------- member bodies


def parse_member_create(body: Any) -> str:
    """The member id from a POST /v2/images/{id}/members body ``{"member": "..."}``.

    Messages are Glance's. Glance itself passes a non-string member id through;
    we refuse it with the same message as a malformed body.
    """
    if not isinstance(body, dict):
        raise BadRequest('Expected a member in the form: {"member": "image_id"}')
    if "member" not in body:
        raise BadRequest("Member to be added not specified")
    member = body["member"]
    if not member:
        raise BadRequest("Member can't be empty")
    if not isinstance(member, str) or len(member) > 255:
        raise BadRequest('Expected a member in the form: {"member": "image_id"}')
    return member


def parse_member_update(body: Any) -> Any:
    """The status from a PUT .../members/{member_id} body ``{"status": "..."}``.

    Only the shape is checked here; check the value with validate_member_status
    after the image and member lookups, as Glance does (404/403 come first).
    """
    if not isinstance(body, dict):
        raise BadRequest('Expected a status in the form: {"status": "status"}')
    if "status" not in body:
        raise BadRequest("Status not specified")
    return body["status"]


def validate_member_status(status: Any) -> str:
    """400 unless ``status`` is pending/accepted/rejected (Glance's message)."""
    if status not in MEMBER_STATUSES:
        raise BadRequest(
            'Incorrect request: Status must be "pending", "accepted" or "rejected".'
        )
    return status


def copy_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A private, modifiable copy of a cached schema."""
    return copy.deepcopy(schema)


# --------------------------------------------------------------------------- request bodies
# The bodies checked by hand above (to keep Glance's messages), as schemas for the
# OpenAPI document (glimpse.api.openapi); each sits next to the code that checks it.


def member_create_body_schema() -> dict[str, Any]:
    """The body parse_member_create accepts."""
    return {"type": "object", "required": ["member"],
            "properties": {"member": {"type": "string", "minLength": 1, "maxLength": 255,
                                      "description": "Project to share the image with"}}}


def member_update_body_schema() -> dict[str, Any]:
    """The body parse_member_update and validate_member_status accept."""
    return {"type": "object", "required": ["status"],
            "properties": {"status": {"type": "string", "enum": list(MEMBER_STATUSES)}}}


def task_create_body_schema() -> dict[str, Any]:
    """A POST /v2/tasks body: the strict task schema, type and input required."""
    return {**task_schema(strict=True), "type": "object", "required": ["type", "input"]}


def image_patch_body_schema() -> dict[str, Any]:
    """A PATCH /v2/images/{id} body (glimpse.api.v2._parse_patch checks it): a list of
    operations, ``{"op", "path", "value"}`` (v2.1) or ``{"add"|"remove"|"replace":
    path, "value"}`` (v2.0); each value is checked against the image schema."""
    pointer = {"type": "string", "description": "JSON pointer, e.g. /name"}
    return {"type": "array", "items": {"type": "object", "properties": {
        "op": {"type": "string", "enum": ["add", "remove", "replace"]},
        "path": pointer, "value": {},
        "add": pointer, "remove": pointer, "replace": pointer}}}


def import_body_schema() -> dict[str, Any]:
    """A POST /v2/images/{id}/import body (glimpse.services.imports checks it)."""
    return {"type": "object", "required": ["method"], "properties": {
        "method": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "description": "One of [DEFAULT] "
                     "enabled_import_methods (GET /v2/info/import)"},
            "uri": {"type": "string", "description": "web-download: the data's URL"},
            "glance_image_id": {"type": "string"},
            "glance_region": {"type": "string"},
            "glance_service_interface": {"type": "string"},
        }},
        "stores": {"type": "array", "items": {"type": "string"}},
        "all_stores": {"type": "boolean"},
        "all_stores_must_succeed": {"type": "boolean"},
    }}
