"""Notification payloads, field for field as Glance sends them.

Locations are never included (they may hold credentials), nor a task's input.
Times are Glance's ``isotime``: ``2024-05-01T12:00:00Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from glimpse.domain.images import ImageRecord

IMPORTING_STORES = "os_glance_importing_to_stores"
FAILED_STORES = "os_glance_failed_import"

# Glance's property fields of a metadef object's property (in its order).
PROPERTY_FIELDS = ("type", "title", "description", "default", "minimum", "maximum", "enum",
                   "pattern", "minLength", "maxLength", "confidential", "items",
                   "uniqueItems", "minItems", "maxItems", "additionalItems")


def isotime(value: datetime | None = None) -> str:
    """Glance's timeutils.isotime: seconds, 'Z' for UTC (naive times are UTC)."""
    if value is None:
        value = datetime.now(UTC)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def _time(value: Any) -> str | None:
    return isotime(value) if isinstance(value, datetime) else value


def deleted_fields() -> dict[str, Any]:
    return {"deleted": True, "deleted_at": isotime()}


def image(record: ImageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "min_disk": record.min_disk,
        "min_ram": record.min_ram,
        "protected": record.protected,
        "checksum": record.checksum,
        "owner": record.owner,
        "disk_format": record.disk_format,
        "container_format": record.container_format,
        "size": record.size,
        "virtual_size": record.virtual_size,
        "is_public": record.visibility == "public",
        "visibility": record.visibility,
        "properties": dict(record.properties),
        "tags": list(record.tags),
        "deleted": False,
        "deleted_at": None,
    }


def import_stores(record: ImageRecord) -> dict[str, list[str]]:
    """What image.prepare and image.upload add: the stores still to do and failed."""
    def split(name: str) -> list[str]:
        value = record.properties.get(name)
        return value.split(",") if value else []

    return {IMPORTING_STORES: split(IMPORTING_STORES), FAILED_STORES: split(FAILED_STORES)}


def image_send(record: ImageRecord, bytes_sent: int, receiver_project: str | None,
               receiver_user: str | None) -> dict[str, Any]:
    return {
        "bytes_sent": bytes_sent,
        "image_id": record.id,
        "owner_id": record.owner,
        "receiver_tenant_id": receiver_project,
        "receiver_user_id": receiver_user,
    }


def member(record: Any) -> dict[str, Any]:
    return {
        "image_id": record.image_id,
        "member_id": record.member_id,
        "status": record.status,
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "deleted": False,
        "deleted_at": None,
    }


def task(record: Any) -> dict[str, Any]:
    # As Glance: neither the input (it may hold credentials) nor result and message.
    return {
        "id": record.id,
        "type": record.type,
        "status": record.status,
        "result": None,
        "owner": record.owner,
        "message": None,
        "expires_at": _time(record.expires_at),
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "deleted": False,
        "deleted_at": None,
    }


# ---------------------------------------------------------------- metadefs
# Built from the API documents the metadef services render (glimpse.domain.metadefs).


def metadef_namespace(doc: dict[str, Any], old_name: str | None = None) -> dict[str, Any]:
    return {
        "namespace": doc["namespace"],
        "namespace_old": old_name or doc["namespace"],
        "display_name": doc.get("display_name"),
        "protected": bool(doc.get("protected", False)),
        "visibility": doc.get("visibility"),
        "owner": doc.get("owner"),
        "description": doc.get("description"),
        "created_at": _time(doc.get("created_at")),
        "updated_at": _time(doc.get("updated_at")),
        "deleted": False,
        "deleted_at": None,
    }


def metadef_object(namespace: str, doc: dict[str, Any],
                   old_name: str | None = None) -> dict[str, Any]:
    props = doc.get("properties") or {}
    return {
        "namespace": namespace,
        "name": doc["name"],
        "name_old": old_name or doc["name"],
        "properties": [{"name": name, **{f: (definition.get(f) or None)
                                         for f in PROPERTY_FIELDS}}
                       for name, definition in props.items()],
        "required": doc.get("required"),
        "description": doc.get("description"),
        "created_at": _time(doc.get("created_at")),
        "updated_at": _time(doc.get("updated_at")),
        "deleted": False,
        "deleted_at": None,
    }


def metadef_property(namespace: str, doc: dict[str, Any],
                     old_name: str | None = None) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": doc["name"],
        "name_old": old_name or doc["name"],
        **{f: doc.get(f) for f in PROPERTY_FIELDS},
        "deleted": False,
        "deleted_at": None,
    }


def metadef_tag(namespace: str, doc: dict[str, Any],
                old_name: str | None = None) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": doc["name"],
        "name_old": old_name or doc["name"],
        "created_at": _time(doc.get("created_at")),
        "updated_at": _time(doc.get("updated_at")),
        "deleted": False,
        "deleted_at": None,
    }


def metadef_resource_type(namespace: str, doc: dict[str, Any],
                          old_name: str | None = None) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": doc["name"],
        "name_old": old_name or doc["name"],
        "prefix": doc.get("prefix"),
        "properties_target": doc.get("properties_target"),
        "created_at": _time(doc.get("created_at")),
        "updated_at": _time(doc.get("updated_at")),
        "deleted": False,
        "deleted_at": None,
    }


def metadef(event_type: str, namespace: str, doc: dict[str, Any],
            old_name: str | None = None) -> dict[str, Any]:
    """The payload of any metadef_* event; ``doc`` is the namespace's document
    for metadef_namespace.* events, else the child's."""
    kind = event_type.split(".", 1)[0]
    if kind == "metadef_namespace":
        payload = metadef_namespace(doc, old_name)
    else:
        payload = _METADEF_BUILDERS[kind](namespace, doc, old_name)
    if event_type.endswith(".delete"):
        payload.update(deleted_fields())
    return payload


_METADEF_BUILDERS = {
    "metadef_object": metadef_object,
    "metadef_property": metadef_property,
    "metadef_tag": metadef_tag,
    "metadef_resource_type": metadef_resource_type,
}

