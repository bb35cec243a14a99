"""Pure rules about image records: what may be set, by whom, and who sees what."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from glimpse.context import RequestContext
from glimpse.errors import BadRequest, Forbidden, RequestEntityTooLarge

# Glance reserves every name starting with "os_glance" (not only "os_glance_").
RESERVED_PREFIX = "os_glance"

VISIBILITIES = ("public", "private", "shared", "community")

# Columns of the images table that clients may set (subject to further rules).
SETTABLE_CORE = frozenset({
    "name", "visibility", "protected", "os_hidden", "min_disk", "min_ram",
    "disk_format", "container_format", "owner",
})

# Attributes computed by the service; a client may never write them (403
# "Attribute '<name>' is read-only."). ``id`` may be chosen on create only.
READ_ONLY = frozenset({
    "id", "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
    "created_at", "updated_at", "direct_url", "self", "file", "schema", "stores",
})

# Names Glance keeps for itself (403 "Attribute '<name>' is reserved."), as is
# every name starting with RESERVED_PREFIX. ``locations`` is managed through
# PATCH, so it is reserved on create only.
RESERVED = frozenset({"deleted", "deleted_at", "location"})
CREATE_RESERVED = RESERVED | {"locations"}

# disk_format/container_format may change only before data arrives.
FORMAT_ATTRS = ("disk_format", "container_format")


@dataclass
class ImageRecord:
    id: str
    name: str | None
    status: str
    visibility: str
    owner: str | None
    protected: bool = False
    os_hidden: bool = False
    disk_format: str | None = None
    container_format: str | None = None
    size: int | None = None
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    min_disk: int = 0
    min_ram: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    properties: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    locations: list[dict] = field(default_factory=list)

    def as_target(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "status": self.status,
            "visibility": self.visibility, "owner": self.owner,
            "project_id": self.owner, "protected": self.protected,
            **self.properties,
        }


def is_reserved_property(name: str) -> bool:
    return name.startswith(RESERVED_PREFIX)


def check_settable(name: str, *, creating: bool) -> None:
    """Refuse attributes a client can never set (403, as Glance). The one home of
    this rule; glimpse.api.schemas applies it in Glance's order of checks."""
    if creating and name == "id":
        return
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if name in (CREATE_RESERVED if creating else RESERVED) or is_reserved_property(name):
        raise Forbidden(f"Attribute '{name}' is reserved.")


def check_format_change(image: ImageRecord, name: str) -> None:
    if name in FORMAT_ATTRS and image.status not in ("queued", "importing"):
        raise Forbidden(f"Attribute {name} can be only replaced for a queued image.")


def check_owner_change(ctx: RequestContext, image: ImageRecord, new_owner: object) -> None:
    if new_owner != image.owner and not ctx.is_admin:
        raise Forbidden("Attribute 'owner' can only be changed by an administrator.")


# min_disk/min_ram are 32-bit integer columns (as in Glance's schema).
MIN_VALUE_MAX = 2**31 - 1


def check_min_values(values: dict[str, object]) -> None:
    """min_disk/min_ram may not be negative (400, Glance's wording), nor beyond what
    their column holds (400 rather than the database's overflow error)."""
    for name in ("min_disk", "min_ram"):
        value = values.get(name)
        if isinstance(value, int | float) and value < 0:
            raise BadRequest(f"Invalid value '{value}' for parameter '{name}': "
                             "Cannot be a negative value")
        if isinstance(value, int | float) and value > MIN_VALUE_MAX:
            raise BadRequest(f"Invalid value '{value}' for parameter '{name}': "
                             f"Cannot be greater than {MIN_VALUE_MAX}")


def check_text(what: str, value: object) -> None:
    """Refuse NUL characters: PostgreSQL cannot store them in text columns."""
    if isinstance(value, str) and "\x00" in value:
        raise BadRequest(f"Invalid {what}: NUL characters are not allowed.")


def check_visibility_value(value: object) -> None:
    if value not in VISIBILITIES:
        raise BadRequest(f"Invalid visibility value: {value}")


def can_view(ctx: RequestContext, image: ImageRecord, is_member: bool) -> bool:
    """May this caller see the record at all? (Otherwise 404, never 403.)"""
    if ctx.is_admin:
        return True
    if image.owner is not None and image.owner == ctx.project_id:
        return True
    if image.visibility in ("public", "community"):
        return True
    if image.visibility == "shared" and is_member:
        return True
    return False


def can_change(ctx: RequestContext, image: ImageRecord) -> bool:
    """Owner or admin: the rule behind modify, delete, upload, members, tags."""
    return ctx.is_admin or (image.owner is not None and image.owner == ctx.project_id)


def check_quota(kind: str, count: int, limit: int) -> None:
    """``limit`` < 0 means unlimited (Glance's convention)."""
    if limit >= 0 and count > limit:
        raise RequestEntityTooLarge(
            f"The limit has been exceeded on the number of allowed {kind}. "
            f"Attempted: {count}, Maximum: {limit}"
        )


def check_required_formats(image: ImageRecord) -> None:
    missing = [a for a in FORMAT_ATTRS if not getattr(image, a)]
    if missing:
        raise BadRequest(
            "Properties disk_format, container_format must be set prior to saving data."
        )
