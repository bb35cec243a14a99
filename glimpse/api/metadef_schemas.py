"""JSON schemas of the metadata definitions API, served at /v2/schemas/metadefs/*
and used to validate request bodies (shapes as Glance publishes them)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from glimpse.api import schemas

_TYPES = ["array", "boolean", "integer", "number", "object", "string", None]
_TIMESTAMP = {"type": "string", "readOnly": True, "format": "date-time"}


def _definitions() -> dict[str, Any]:
    return {
        "positiveInteger": {"type": "integer", "minimum": 0},
        "positiveIntegerDefault0": {"allOf": [{"$ref": "#/definitions/positiveInteger"},
                                              {"default": 0}]},
        "stringArray": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "property": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["title", "type"],
                "properties": _property_fields(),
            },
        },
    }


def _property_fields() -> dict[str, Any]:
    return {
        "name": {"type": "string", "maxLength": 80},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string", "enum": _TYPES},
        "required": {"$ref": "#/definitions/stringArray"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "readonly": {"type": "boolean"},
        "default": {},
        "items": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": _TYPES},
                "enum": {"type": "array"},
            },
        },
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": False},
        "additionalItems": {"type": "boolean"},
    }


def _association_fields() -> dict[str, Any]:
    return {
        "name": {"type": "string", "maxLength": 80,
                 "description": "Resource type names should be aligned with Heat resource "
                                "types whenever possible."},
        "prefix": {"type": "string", "maxLength": 80,
                   "description": "Specifies the prefix to use for the given resource type. "
                                  "Any properties in the namespace should be prefixed with "
                                  "this prefix when being applied to the specified resource "
                                  "type."},
        "properties_target": {"type": "string", "maxLength": 80,
                              "description": "Some resource types allow more than one "
                                             "key / value pair per instance."},
        "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP,
    }


def _object_fields() -> dict[str, Any]:
    return {
        "name": {"type": "string", "maxLength": 80},
        "description": {"type": "string"},
        "required": {"$ref": "#/definitions/stringArray"},
        "properties": {"$ref": "#/definitions/property"},
        "schema": {"type": "string", "readOnly": True},
        "self": {"type": "string", "readOnly": True},
        "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP,
    }


def _tag_fields() -> dict[str, Any]:
    return {"name": {"type": "string", "maxLength": 255},
            "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP}


@cache
def _namespace() -> dict[str, Any]:
    # Glance's shape: no top-level "type", self/schema read-only, the nested
    # association fields plain strings.
    return {
        "name": "namespace",
        "additionalProperties": False,
        "required": ["namespace"],
        "definitions": _definitions(),
        "properties": {
            "namespace": {"type": "string", "maxLength": 80,
                          "description": "The unique namespace text."},
            "display_name": {"type": "string", "maxLength": 80,
                             "description": "The user friendly name for the namespace."},
            "description": {"type": "string", "maxLength": 500,
                            "description": "Provides a user friendly description of the "
                                           "namespace."},
            "visibility": {"type": "string", "enum": ["public", "private"],
                           "description": "Scope of namespace accessibility."},
            "self": {"type": "string", "readOnly": True},
            "schema": {"type": "string", "readOnly": True},
            "protected": {"type": "boolean",
                          "description": "If true, namespace will not be deletable."},
            "owner": {"type": "string", "maxLength": 255,
                      "description": "Owner of the namespace."},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "resource_type_associations": {
                "type": "array",
                "items": {"type": "object", "properties": {
                    k: {"type": "string"} for k in ("name", "prefix", "properties_target")}},
            },
            "properties": {"$ref": "#/definitions/property"},
            "objects": {"type": "array", "items": {"type": "object", "properties": {
                k: v for k, v in _object_fields().items()
                if k in ("name", "description", "required", "properties")}}},
            "tags": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}}}},
        },
    }


def _collection(name: str, item_key: str, item: dict[str, Any]) -> dict[str, Any]:
    item = copy.deepcopy(item)
    definitions = item.pop("definitions", None)
    doc: dict[str, Any] = {
        "name": name,
        "properties": {
            item_key: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }
    if definitions is not None:
        doc["definitions"] = definitions
    return doc


@cache
def _namespaces() -> dict[str, Any]:
    return _collection("namespaces", "namespaces", _namespace())


@cache
def _object() -> dict[str, Any]:
    return {"name": "object", "type": "object", "additionalProperties": False,
            "required": ["name"], "definitions": _definitions(),
            "properties": _object_fields()}


@cache
def _objects() -> dict[str, Any]:
    return _collection("objects", "objects", _object())


@cache
def _property() -> dict[str, Any]:
    return {"name": "property", "type": "object", "additionalProperties": False,
            "required": ["name", "title", "type"], "definitions": _definitions(),
            "properties": _property_fields()}


@cache
def _properties() -> dict[str, Any]:
    return {
        "name": "properties",
        "definitions": _definitions(),
        "properties": {"properties": {"$ref": "#/definitions/property"},
                       "first": {"type": "string"}, "next": {"type": "string"},
                       "schema": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


@cache
def _resource_type() -> dict[str, Any]:
    return {"name": "resource_type_association", "type": "object",
            "additionalProperties": False, "required": ["name"],
            "properties": _association_fields()}


@cache
def _resource_types() -> dict[str, Any]:
    return _collection("resource_type_associations", "resource_type_associations",
                       _resource_type())


@cache
def _tag() -> dict[str, Any]:
    return {"name": "tag", "type": "object", "additionalProperties": False,
            "required": ["name"], "properties": _tag_fields()}


@cache
def _tags() -> dict[str, Any]:
    return _collection("tags", "tags", _tag())


BUILDERS = {
    "metadefs/namespace": _namespace, "metadefs/namespaces": _namespaces,
    "metadefs/object": _object, "metadefs/objects": _objects,
    "metadefs/property": _property, "metadefs/properties": _properties,
    "metadefs/resource_type": _resource_type, "metadefs/resource_types": _resource_types,
    "metadefs/tag": _tag, "metadefs/tags": _tags,
}


def get(name: str) -> dict[str, Any] | None:
    """The schema served at /v2/schemas/<name>, or None (cached: do not modify)."""
    builder = BUILDERS.get(name)
    return builder() if builder else None


@cache
def _for_validation(name: str) -> dict[str, Any]:
    # A served schema may leave out the top-level type (Glance's namespace
    # schema does); request bodies must be objects all the same.
    schema = get(f"metadefs/{name}")
    assert schema is not None
    return schema if "type" in schema else {**schema, "type": "object"}


def validate(doc: Any, name: str) -> None:
    """Raise BadRequest unless ``doc`` matches the schema ``metadefs/<name>``."""
    schemas.validate(doc, _for_validation(name))
