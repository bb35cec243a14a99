"""Metadata definitions: documents and rules that need no database.

Rows of glimpse.db.models become the plain dicts the API renders (timestamps
as datetimes; the API formats them and adds links). The same shapes, minus
timestamps, make up Glance's definition files (one namespace per file).
"""

from __future__ import annotations

import json
import re
from typing import Any

from glimpse.errors import BadRequest

VISIBILITIES = ("public", "private")

# Keys of a namespace document that are its contents rather than its columns.
CONTENT_KEYS = ("resource_type_associations", "properties", "objects", "tags")


def _without_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


def check_property_definition(name: str, definition: dict[str, Any]) -> None:
    """Rules the JSON schema cannot express (it already checked the shape)."""
    patterns = [definition.get("pattern")]
    if isinstance(definition.get("items"), dict):
        patterns.append(definition["items"].get("pattern"))
    for pattern in patterns:
        if pattern is None:
            continue
        try:
            re.compile(pattern)
        except (re.error, TypeError):
            raise BadRequest(f"Invalid pattern {pattern!r} in the definition of "
                             f"property {name}") from None
    low, high = definition.get("minimum"), definition.get("maximum")
    if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
        raise BadRequest(f"Property {name}: minimum {low} is greater than maximum {high}")
    low, high = definition.get("minLength"), definition.get("maxLength")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        raise BadRequest(f"Property {name}: minLength {low} is greater than maxLength {high}")
    low, high = definition.get("minItems"), definition.get("maxItems")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        raise BadRequest(f"Property {name}: minItems {low} is greater than maxItems {high}")


def check_properties(properties: dict[str, Any] | None) -> None:
    for name, definition in (properties or {}).items():
        if isinstance(definition, dict):
            check_property_definition(name, definition)


def property_schema(definition: dict[str, Any]) -> str:
    """The stored form of a property definition (its name is the row's)."""
    return json.dumps({k: v for k, v in definition.items() if k != "name"}, sort_keys=True)


def property_doc(row: Any, prefix: str = "") -> dict[str, Any]:
    doc = json.loads(row.json_schema)
    return {"name": prefix + row.name, **doc}


def object_values(doc: dict[str, Any]) -> dict[str, Any]:
    """Columns of an object row from its API document."""
    properties = doc.get("properties") or {}
    check_properties(properties)
    return {
        "name": doc["name"],
        "description": doc.get("description"),
        "required": json.dumps(doc["required"]) if doc.get("required") is not None else None,
        "json_schema": json.dumps(properties, sort_keys=True),
    }


def object_doc(row: Any) -> dict[str, Any]:
    return _without_none({
        "name": row.name,
        "description": row.description,
        "required": json.loads(row.required) if row.required else None,
        "properties": json.loads(row.json_schema) or None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })


def tag_doc(row: Any) -> dict[str, Any]:
    return {"name": row.name, "created_at": row.created_at, "updated_at": row.updated_at}


def association_doc(row: Any, name: str) -> dict[str, Any]:
    return _without_none({
        "name": name,
        "prefix": row.prefix,
        "properties_target": row.properties_target,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })


def resource_type_doc(row: Any) -> dict[str, Any]:
    return {"name": row.name, "created_at": row.created_at, "updated_at": row.updated_at}


def namespace_doc(row: Any) -> dict[str, Any]:
    return _without_none({
        "namespace": row.namespace,
        "display_name": row.display_name,
        "description": row.description,
        "visibility": row.visibility,
        "protected": bool(row.protected),
        "owner": row.owner,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })


def without_timestamps(value: Any) -> Any:
    """A document with created_at/updated_at dropped at every level (file format)."""
    if isinstance(value, dict):
        return {k: without_timestamps(v) for k, v in value.items()
                if k not in ("created_at", "updated_at")}
    if isinstance(value, list):
        return [without_timestamps(v) for v in value]
    return value
