"""Image record use cases: create, show, list, update, delete, (de)activate, tags.

Each function checks policy first, then domain rules, then touches the
database (and stores, for delete).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from typing import Any

from glimpse.context import RequestContext
from glimpse.crashpoints import crash_point
from glimpse.db import repository as repo
from glimpse.db.retry import retry_on_conflict, retry_read_on_disconnect
from glimpse.domain import images as rules
from glimpse.domain.images import ImageRecord
from glimpse.domain.status import GONE, Event, transition
from glimpse.errors import BadRequest, Conflict, Forbidden, NotFound
from glimpse.policy import image_target, new_image_target
from glimpse.services import signatures, store_acls
from glimpse.services.leases import DELETE
from glimpse.services.runtime import Runtime
from glimpse.stores.base import Credentials, DataNotFound, StoreError

LOG = logging.getLogger(__name__)

MAX_ID_LENGTH = 36
MAX_NAME_LENGTH = 255


# ---------------------------------------------------------------- lookups


def load_visible(rt: Runtime, session: repo.Reader, ctx: RequestContext, image_id: str,
                 for_update: bool = False) -> tuple[ImageRecord, bool]:
    """Fetch an image the caller may see, or raise 404 (never reveal others' images).

    Returns the record and whether the caller's project is a member of it.
    """
    # Ids are at most 36 characters; anything else cannot exist (and a NUL
    # character would make PostgreSQL fail the query instead of finding nothing).
    if len(image_id) > MAX_ID_LENGTH or "\x00" in image_id:
        raise NotFound(f"No image found with ID {image_id}")
    image, member = repo.find_image(session, image_id, ctx.project_id, for_update=for_update)
    # MariaDB compares strings case- and trailing-space-insensitively; ids are exact.
    if image is None or image.id != image_id:
        raise NotFound(f"No image found with ID {image_id}")
    is_member = member
    if not rules.can_view(ctx, image, is_member):
        raise NotFound(f"No image found with ID {image_id}")
    return image, is_member


def target(image: ImageRecord, ctx: RequestContext, is_member: bool) -> dict[str, Any]:
    return image_target(image.as_target(), ctx.project_id if is_member else None)


def enforce_on_image(rt: Runtime, ctx: RequestContext, image: ImageRecord, is_member: bool,
                     rule: str) -> None:
    """Check ``rule`` on an existing image. As in Glance, a caller whom policy does
    not even let see the image (get_image) learns nothing: 404, not 403."""
    tgt = target(image, ctx, is_member)
    try:
        rt.policy.enforce(ctx, rule, tgt)
    except Forbidden:
        if rule == "get_image" or not rt.policy.check(ctx, "get_image", tgt):
            raise NotFound(f"No image found with ID {image.id}") from None
        raise


def require_change(rt: Runtime, ctx: RequestContext, image: ImageRecord, is_member: bool,
                   rule: str) -> None:
    """Policy check for an operation that changes an image (owner or admin)."""
    enforce_on_image(rt, ctx, image, is_member, rule)
    if not rules.can_change(ctx, image):
        raise Forbidden(f"You are not permitted to {rule.replace('_', ' ')} this image.")


# ---------------------------------------------------------------- create / show


# Accepted in a create body and ignored, as Glance does (they are computed from the data).
IGNORED_ON_CREATE = ("os_hash_algo", "os_hash_value")


def create_image(rt: Runtime, ctx: RequestContext, doc: dict[str, Any]) -> ImageRecord:
    doc = dict(doc)
    tags = doc.pop("tags", None) or []
    if "locations" in doc:
        raise Forbidden("Attribute 'locations' is reserved.")
    image_id = doc.pop("id", None) or str(uuid.uuid4())
    for name in IGNORED_ON_CREATE:
        doc.pop(name, None)
    core: dict[str, Any] = {}
    props: dict[str, str] = {}
    for name, value in doc.items():
        rules.check_settable(name, creating=True)
        rules.check_text("property name", name)
        rules.check_text(f"value for {name}", value)
        if name in rules.SETTABLE_CORE:
            core[name] = value
        else:
            props[name] = value
    for tag in tags:
        rules.check_text("tag", tag)
    rules.check_min_values(core)
    visibility = core.get("visibility") or "shared"
    rules.check_visibility_value(visibility)
    owner = core.pop("owner", None)
    if owner is not None and owner != ctx.project_id and not ctx.is_admin:
        raise Forbidden(f"You are not permitted to create images owned by '{owner}'.")
    owner = owner if owner is not None else ctx.project_id
    tgt = new_image_target({**props, "owner": owner, "visibility": visibility}, ctx)
    rt.policy.enforce(ctx, "add_image", tgt)
    _check_visibility_policy(rt, ctx, visibility, tgt)
    rt.protections.check_create(ctx, props)
    _check_formats(rt, core)
    rules.check_quota("image properties", len(props), rt.conf.image_property_quota)
    rules.check_quota("image tags", len(set(tags)), rt.conf.image_tag_quota)
    values = {
        "id": image_id, "name": core.get("name"), "status": "queued", "visibility": visibility,
        "owner": owner, "protected": bool(core.get("protected", False)),
        "os_hidden": bool(core.get("os_hidden", False)),
        "disk_format": core.get("disk_format"), "container_format": core.get("container_format"),
        "min_disk": core.get("min_disk") or 0, "min_ram": core.get("min_ram") or 0,
    }
    with rt.db.write() as session, session.begin():
        # Ids are never reused: the insert fails (409) on any row, deleted or not.
        image = repo.create_image(session, values, props, tags)
    rt.notifier.image_event("image.create", image)
    return readable(rt, ctx, image)


@retry_read_on_disconnect
def get_image(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    with rt.db.reading() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
    enforce_on_image(rt, ctx, image, is_member, "get_image")
    return readable(rt, ctx, image)


def readable(rt: Runtime, ctx: RequestContext, image: ImageRecord) -> ImageRecord:
    """The record as ``ctx`` may see it: without the properties protections hide from it."""
    props = rt.protections.filter_readable(ctx, image.properties)
    return image if props is image.properties else replace(image, properties=dict(props))


def _check_visibility_policy(rt: Runtime, ctx: RequestContext, visibility: str,
                             tgt: dict[str, Any]) -> None:
    if visibility == "public":
        rt.policy.enforce(ctx, "publicize_image", tgt)
    elif visibility == "community":
        rt.policy.enforce(ctx, "communitize_image", tgt)


def _check_formats(rt: Runtime, values: dict[str, Any]) -> None:
    disk = values.get("disk_format")
    if disk is not None and disk not in rt.conf.image_format.disk_formats:
        raise BadRequest(f"Invalid disk format '{disk}' for image.")
    container = values.get("container_format")
    if container is not None and container not in rt.conf.image_format.container_formats:
        raise BadRequest(f"Invalid container format '{container}' for image.")


# ---------------------------------------------------------------- list


@dataclass
class ListRequest:
    query: repo.ListQuery


@retry_read_on_disconnect
def list_images(rt: Runtime, ctx: RequestContext, query: repo.ListQuery) -> list[ImageRecord]:
    rt.policy.enforce(ctx, "get_images", {"project_id": ctx.project_id,
                                          "owner": ctx.project_id})
    with rt.db.reading() as session:
        images = repo.list_images(session, ctx, query)
    if rt.protections.enabled:
        # A filter on a property the caller may not read matches nothing;
        # otherwise it would reveal the hidden value (Glance has that leak).
        if any(not rt.protections.allows(ctx, "read", name) for name in query.properties or ()):
            return []
        keep = rt.protections.read_filter(ctx)
        images = [replace(i, properties=dict(keep(i.properties))) for i in images]
    return images


# ---------------------------------------------------------------- update (PATCH)


@dataclass
class Change:
    op: str               # add | replace | remove
    path: str             # attribute name (first path element)
    value: Any = None
    strict_add: bool = False  # v2.0 patch media type: add of an existing attribute is 409
    position: str | None = None  # second path element (locations only: index or "-")


# Attributes every image has: "add" sets them, "remove" is refused.
_BASE_ATTRIBUTES = rules.SETTABLE_CORE | {"tags"}


@retry_on_conflict
def update_image(rt: Runtime, ctx: RequestContext, image_id: str,
                 changes: list[Change]) -> ImageRecord:
    with rt.db.write() as session, session.begin():
        # The row lock makes concurrent PATCHes of one image take turns on
        # PostgreSQL and MariaDB, so none works from a stale copy.
        image, is_member = load_visible(rt, session, ctx, image_id, for_update=True)
        tgt = target(image, ctx, is_member)
        enforce_on_image(rt, ctx, image, is_member, "modify_image")
        if not rules.can_change(ctx, image):
            raise Forbidden("You are not permitted to modify this image.")
        if not changes:
            return readable(rt, ctx, image)
        core: dict[str, Any] = {}
        props = dict(image.properties)
        # Properties the caller may not read do not exist for it (Glance): a
        # replace or remove of one is a 409; they are kept as they are.
        hidden = rt.protections.unreadable(ctx, props)
        for name in hidden:
            del props[name]
        tags = list(image.tags)
        from glimpse.services.locations import LocationEdit, delete_lease

        edit = LocationEdit(rt, ctx, image, tgt)
        # Changes apply in order on a copy; nothing is written unless all succeed.
        for change in changes:
            if change.path == "locations":
                edit.apply(change.op, change.position, change.value)
                continue
            existed = change.path in props
            _apply(ctx, image, change, core, props, tags)
            if change.path not in _BASE_ATTRIBUTES:
                rt.protections.check_patch(ctx, change.op, change.path, existed)
        if hidden:
            props = {**hidden, **props}
        for name in signatures.SIGNATURE_PROPERTIES:
            signatures.check_change(image.status, name, image.properties, props)
        if "visibility" in core and core["visibility"] != image.visibility:
            rules.check_visibility_value(core["visibility"])
            _check_visibility_policy(rt, ctx, core["visibility"], tgt)
        if "owner" in core:
            rules.check_owner_change(ctx, image, core["owner"])
        rules.check_min_values(core)
        _check_formats(rt, core)
        # Like Glance, quotas refuse growth; an image already over a lowered
        # quota can still be edited and shrunk.
        if len(props) > len(image.properties):
            rules.check_quota("image properties", len(props), rt.conf.image_property_quota)
        if len(set(tags)) > len(set(image.tags)):
            rules.check_quota("image tags", len(set(tags)), rt.conf.image_tag_quota)
        updated = repo.patch_image(session, image, core, props, tags)
        # Who may read the data changes with these (and new locations need lists).
        readers_changed = edit.changed or any(
            name in core and core[name] != getattr(image, name)
            for name in ("visibility", "owner"))
        lease, removed = None, []
        if updated is not None and edit.changed:
            removed = edit.write(session)
            lease = delete_lease(rt, session, image_id, removed)
            updated = repo.get_image(session, image_id)
    if updated is None:
        raise NotFound(f"No image found with ID {image_id}")
    if removed:
        from glimpse.services.locations import remove_data

        remove_data(rt, image_id, removed, lease, Credentials.of(ctx))
    if readers_changed:
        store_acls.sync(rt, image_id, Credentials.of(ctx))
    rt.notifier.image_event("image.update", updated)
    return readable(rt, ctx, updated)


def _apply(ctx: RequestContext, image: ImageRecord, change: Change, core: dict[str, Any],
           props: dict[str, str], tags: list[str]) -> None:
    """One PATCH operation, with Glance's answers (403/409) for each case."""
    name = change.path
    rules.check_settable(name, creating=False)
    is_base = name in _BASE_ATTRIBUTES
    if change.op == "remove":
        if is_base:
            raise Forbidden(f"Property {name} may not be removed.")
        if name not in props:
            raise Conflict(f"Property {name} does not exist.")
        del props[name]
        return
    if change.op not in ("add", "replace"):
        raise BadRequest(f"Unsupported patch operation: {change.op}")
    if change.op == "add" and change.strict_add and (is_base or name in props):
        raise Conflict(f"Property {name} already present.")
    if name == "owner" and change.op == "replace" and not ctx.is_admin:
        raise Forbidden("Owner can't be updated by non admin.")
    if name == "tags":
        if not isinstance(change.value, list):
            raise BadRequest("Tags must be a list of strings.")
        for tag in change.value:
            rules.check_text("tag", tag)
        tags[:] = change.value
        return
    rules.check_text(f"value for {name}", change.value)
    if is_base:
        rules.check_format_change(image, name)
        core[name] = change.value
        return
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest("Custom property should not be greater than 255 characters.")
    rules.check_text("property name", name)
    if change.op == "replace" and name not in props:
        raise Conflict(f"Property {name} does not exist.")
    props[name] = change.value


# ---------------------------------------------------------------- delete


def delete_image(rt: Runtime, ctx: RequestContext, image_id: str,
                 proxy: bool = True) -> str | None:
    """Delete an image, its staged data on this worker, and (unless delayed) its data.

    When the image's data is staged on another worker and ``proxy`` is true,
    nothing is changed and that worker's URL is returned: the caller replays
    the request there, so the worker owning the staged data removes it."""
    from glimpse.imports.staging import remote_stage_host

    delayed = rt.conf.delayed_delete
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "delete_image")
        if image.protected:
            raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        stage_host = remote_stage_host(rt.conf, image.properties) if proxy else None
        if stage_host is not None:
            return stage_host
        has_data = bool(image.locations)
        event = Event.DELETE_DELAYED if (delayed and has_data) else Event.DELETE
        new_status = transition(image.status, event)
        if not repo.mark_deleted(session, image_id, image.status, new_status):
            raise Conflict(f"Image {image_id} changed while it was being deleted; retry.")
        repo.set_location_status(session, image_id,
                                 "pending_delete" if event is Event.DELETE_DELAYED else "deleted")
        repo.delete_all_members(session, image_id)
        urls = [loc["url"] for loc in image.locations] if event is Event.DELETE else []
        # The data still to remove, recorded with the deletion: if this process
        # dies (or a store fails) before it is gone, the recovery sweep removes it.
        lease = (rt.leases.acquire(session, DELETE, image_id=image_id, detail={"urls": urls})
                 if urls else None)
    if lease is not None:
        rt.leases.held(lease)
    crash_point("delete.committed")
    rt.notifier.image_event("image.delete", image, status=new_status)
    if rt.runner is not None:
        rt.runner.staging.remove(image_id)
    if rt.cache is not None:  # this node's copy; other nodes' cleaners drop theirs
        rt.cache.image_deleted(image_id)
    creds = Credentials.of(ctx)
    removed = all([_delete_data(rt, url, creds) for url in urls])
    if lease is not None:
        if removed:
            rt.leases.release_now(lease)
        else:
            rt.leases.forget(lease)
    LOG.info("Deleted image %s (%s, %d location(s)%s)", image_id, image.status,
             len(image.locations), ", data kept for the scrubber"
             if event is Event.DELETE_DELAYED else "")
    return None


def _delete_data(rt: Runtime, url: str, creds: Credentials | None = None) -> bool:
    try:
        rt.stores.for_url(url).delete(url, creds)
    except (DataNotFound, NotFound):
        pass
    except StoreError:
        LOG.exception("Could not delete image data at %s; the recovery sweep retries", url)
        return False
    return True


# ---------------------------------------------------------------- actions


def deactivate(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    _set_active_flag(rt, ctx, image_id, Event.DEACTIVATE, "deactivate")


def reactivate(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    _set_active_flag(rt, ctx, image_id, Event.REACTIVATE, "reactivate")


@retry_on_conflict
def _set_active_flag(rt: Runtime, ctx: RequestContext, image_id: str, event: Event,
                     rule: str) -> None:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, rule)
        if image.status not in ("active", "deactivated"):
            raise Forbidden(f"Not allowed to {rule} image in status '{image.status}'")
        new_status = transition(image.status, event)
        if new_status != image.status and not repo.set_status(
                session, image_id, image.status, new_status):
            raise Conflict(f"Image {image_id} changed status concurrently; retry.")
    rt.notifier.image_event("image.update", image, status=new_status, touched=True)


# ---------------------------------------------------------------- tags


@retry_on_conflict
def add_tag(rt: Runtime, ctx: RequestContext, image_id: str, tag: str) -> None:
    if len(tag) > MAX_NAME_LENGTH:
        raise BadRequest("Tag value is too long (maximum 255 characters).")
    rules.check_text("tag", tag)
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "modify_image")
        if tag not in image.tags:
            rules.check_quota("image tags", len(image.tags) + 1, rt.conf.image_tag_quota)
            repo.add_tag(session, image_id, tag)
        repo.touch(session, image_id)
    rt.notifier.image_event("image.update", image, tags=sorted({*image.tags, tag}), touched=True)


@retry_on_conflict
def delete_tag(rt: Runtime, ctx: RequestContext, image_id: str, tag: str) -> None:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "modify_image")
        if tag not in image.tags or not repo.remove_tag(session, image_id, tag):
            raise NotFound(f"Tag {tag} not found on image {image_id}")
        repo.touch(session, image_id)
    rt.notifier.image_event("image.update", image, tags=sorted(set(image.tags) - {tag}),
                            touched=True)


def is_gone(image: ImageRecord) -> bool:
    return image.status in GONE
