"""Pure rules about image records: what may be set, by whom, and who sees what."""

from __future__ import annotations

from collections.abc import Iterable
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


# min_disk and min_ram are 4-byte integers in the database, as in Glance.
MAX_INT32 = 2**31 - 1


def check_min_values(values: dict[str, object]) -> None:
    """min_disk/min_ram may not be negative nor exceed a 4-byte integer (400, Glance's
    wording for each)."""
    for name in ("min_disk", "min_ram"):
        value = values.get(name)
        if isinstance(value, int | float) and value < 0:
            raise BadRequest(f"Invalid value '{value}' for parameter '{name}': "
                             "Cannot be a negative value")
        if isinstance(value, int | float) and value > MAX_INT32:
            raise BadRequest(f"'{name}' value out of range, must not exceed {MAX_INT32}.")


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


@dataclass(frozen=True)
class DataReaders:
    """Who may read an image's data with their own credentials, straight from a store
    that keeps access lists per image (multi-tenant Swift's container ACLs)."""

    #: every project (authenticated) may read
    public: bool
    #: otherwise these projects may
    projects: tuple[str, ...] = ()


def data_readers(image: ImageRecord, member_ids: Iterable[str]) -> DataReaders:
    """The one rule behind stores' access lists; it follows who ``can_view`` lets
    download the image (an admin aside: no list can name "any admin"):

    - public and community: everyone (Glance: the same);
    - shared: the owner and every member, whatever its status (pending, accepted or
      rejected: a member may download in each, in Glimpse as in Glance; Glance too
      lists every member, and does not touch the lists when a status changes);
    - private: the owner only. (Glance also lists the members a private image kept
      from when it was shared, who can no longer download it through the API.)

    The owner is named because its data is not always in its own account (an admin
    who uploads, or copies the image, writes to the admin's account)."""
    if image.visibility in ("public", "community"):
        return DataReaders(public=True)
    readers = [image.owner] if image.owner else []
    if image.visibility == "shared":
        readers.extend(member_ids)
    return DataReaders(public=False, projects=tuple(dict.fromkeys(readers)))
