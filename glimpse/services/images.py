"""Image record use cases: create, show, list, update, delete, (de)activate, tags.

Each function checks policy first, then domain rules, then touches the
database (and stores, for delete).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from glimpse.context import RequestContext
from glimpse.db import repository as repo
from glimpse.domain import images as rules
from glimpse.domain.images import ImageRecord
from glimpse.domain.status import GONE, Event, transition
from glimpse.errors import BadRequest, Conflict, Forbidden, NotFound
from glimpse.policy import image_target, new_image_target
from glimpse.services.runtime import Runtime
from glimpse.stores.base import DataNotFound, StoreError

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------- lookups


def load_visible(rt: Runtime, session: Session, ctx: RequestContext, image_id: str,
                 ) -> tuple[ImageRecord, bool]:
    """Fetch an image the caller may see, or raise 404 (never reveal others' images).

    Returns the record and whether the caller's project is a member of it.
    """
    image = repo.get_image(session, image_id)
    if image is None:
        raise NotFound(f"No image found with ID {image_id}")
    is_member = False
    if ctx.project_id and image.owner != ctx.project_id and image.visibility == "shared":
        is_member = repo.get_member(session, image_id, ctx.project_id) is not None
    if not rules.can_view(ctx, image, is_member):
        raise NotFound(f"No image found with ID {image_id}")
    return image, is_member


def target(image: ImageRecord, ctx: RequestContext, is_member: bool) -> dict[str, Any]:
    return image_target(image.as_target(), ctx.project_id if is_member else None)


def require_change(rt: Runtime, ctx: RequestContext, image: ImageRecord, is_member: bool,
                   rule: str) -> None:
    """Policy check for an operation that changes an image (owner or admin)."""
    rt.policy.enforce(ctx, rule, target(image, ctx, is_member))
    if not rules.can_change(ctx, image):
        raise Forbidden(f"You are not permitted to {rule.replace('_', ' ')} this image.")


# ---------------------------------------------------------------- create / show


def create_image(rt: Runtime, ctx: RequestContext, doc: dict[str, Any]) -> ImageRecord:
    doc = dict(doc)
    tags = doc.pop("tags", None) or []
    if "locations" in doc:
        raise Forbidden("Attribute 'locations' is reserved.")
    image_id = doc.pop("id", None) or str(uuid.uuid4())
    core: dict[str, Any] = {}
    props: dict[str, str] = {}
    for name, value in doc.items():
        rules.check_settable(name, creating=True)
        if name in rules.SETTABLE_CORE:
            core[name] = value
        else:
            props[name] = value
    visibility = core.get("visibility") or "shared"
    rules.check_visibility_value(visibility)
    owner = core.pop("owner", None)
    if owner is not None and owner != ctx.project_id and not ctx.is_admin:
        raise Forbidden("You are not permitted to create images owned by another project.")
    owner = owner if owner is not None else ctx.project_id
    tgt = new_image_target({**props, "owner": owner, "visibility": visibility}, ctx)
    rt.policy.enforce(ctx, "add_image", tgt)
    _check_visibility_policy(rt, ctx, visibility, tgt)
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
        if repo.image_exists_any(session, image_id):
            raise Conflict(f"An image with identifier {image_id} already exists")
        repo.create_image(session, values, props, tags)
    with rt.db.read() as session:
        image = repo.get_image(session, image_id)
    assert image is not None
    return image


def get_image(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
    rt.policy.enforce(ctx, "get_image", target(image, ctx, is_member))
    return image


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


def list_images(rt: Runtime, ctx: RequestContext, query: repo.ListQuery) -> list[ImageRecord]:
    rt.policy.enforce(ctx, "get_images", {"project_id": ctx.project_id,
                                          "owner": ctx.project_id})
    with rt.db.read() as session:
        return repo.list_images(session, ctx, query)


# ---------------------------------------------------------------- update (PATCH)


@dataclass
class Change:
    op: str               # add | replace | remove
    path: str             # attribute name (first path element)
    value: Any = None
    strict_add: bool = False  # v2.0 patch media type: add of an existing property is 409


def update_image(rt: Runtime, ctx: RequestContext, image_id: str,
                 changes: list[Change]) -> ImageRecord:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        tgt = target(image, ctx, is_member)
        rt.policy.enforce(ctx, "modify_image", tgt)
        if not rules.can_change(ctx, image):
            raise Forbidden("You are not permitted to modify this image.")
        core: dict[str, Any] = {}
        props = dict(image.properties)
        tags = list(image.tags)
        for change in changes:
            _apply(ctx, image, change, core, props, tags)
        if "visibility" in core and core["visibility"] != image.visibility:
            rules.check_visibility_value(core["visibility"])
            _check_visibility_policy(rt, ctx, core["visibility"], tgt)
        if "owner" in core:
            rules.check_owner_change(ctx, image, core["owner"])
        _check_formats(rt, core)
        rules.check_quota("image properties", len(props), rt.conf.image_property_quota)
        rules.check_quota("image tags", len(set(tags)), rt.conf.image_tag_quota)
        removed = set(image.properties) - set(props)
        to_set = {k: v for k, v in props.items() if image.properties.get(k) != v}
        repo.update_image(session, image_id, core)
        repo.set_properties(session, image_id, to_set, removed)
        if sorted(set(tags)) != sorted(image.tags):
            repo.replace_tags(session, image_id, tags)
    with rt.db.read() as session:
        updated = repo.get_image(session, image_id)
    if updated is None:
        raise NotFound(f"No image found with ID {image_id}")
    return updated


def _apply(ctx: RequestContext, image: ImageRecord, change: Change, core: dict[str, Any],
           props: dict[str, str], tags: list[str]) -> None:
    name = change.path
    if name == "tags":
        if change.op == "remove":
            raise Forbidden("Property tags may not be removed.")
        if not isinstance(change.value, list):
            raise BadRequest("Tags must be a list of strings.")
        tags[:] = change.value
        return
    if name == "locations":
        raise Forbidden("Changing image locations is not supported by this deployment.")
    if name in ("id",):
        raise Forbidden(f"Attribute '{name}' is read-only.")
    rules.check_settable(name, creating=False)
    if name in rules.SETTABLE_CORE:
        if change.op == "remove":
            raise Forbidden(f"Property {name} may not be removed.")
        rules.check_format_change(image, name)
        core[name] = change.value
        return
    if change.op == "add":
        if change.strict_add and name in props:
            raise Conflict(f"Property {name} already present.")
        props[name] = change.value
    elif change.op == "replace":
        if name not in props:
            raise Conflict(f"Property {name} does not exist.")
        props[name] = change.value
    elif change.op == "remove":
        if name not in props:
            raise Conflict(f"Property {name} does not exist.")
        del props[name]
    else:
        raise BadRequest(f"Unsupported patch operation: {change.op}")


# ---------------------------------------------------------------- delete


def delete_image(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    delayed = rt.conf.delayed_delete
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "delete_image")
        if image.protected:
            raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        has_data = bool(image.locations)
        event = Event.DELETE_DELAYED if (delayed and has_data) else Event.DELETE
        new_status = transition(image.status, event)
        if not repo.mark_deleted(session, image_id, image.status, new_status):
            raise Conflict(f"Image {image_id} changed while it was being deleted; retry.")
        repo.set_location_status(session, image_id,
                                 "pending_delete" if event is Event.DELETE_DELAYED else "deleted")
        repo.delete_all_members(session, image_id)
    if event is Event.DELETE:
        for loc in image.locations:
            _delete_data(rt, loc["url"])


def _delete_data(rt: Runtime, url: str) -> None:
    try:
        rt.stores.for_url(url).delete(url)
    except (DataNotFound, NotFound):
        pass
    except StoreError:
        LOG.exception("Could not delete image data at %s; it is left for an operator", url)


# ---------------------------------------------------------------- actions


def deactivate(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    _set_active_flag(rt, ctx, image_id, Event.DEACTIVATE, "deactivate")


def reactivate(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    _set_active_flag(rt, ctx, image_id, Event.REACTIVATE, "reactivate")


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


# ---------------------------------------------------------------- tags


def add_tag(rt: Runtime, ctx: RequestContext, image_id: str, tag: str) -> None:
    if len(tag) > 255:
        raise BadRequest("Tag value is too long (maximum 255 characters).")
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "modify_image")
        if tag not in image.tags:
            rules.check_quota("image tags", len(image.tags) + 1, rt.conf.image_tag_quota)
            repo.add_tag(session, image_id, tag)
        repo.touch(session, image_id)


def delete_tag(rt: Runtime, ctx: RequestContext, image_id: str, tag: str) -> None:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "modify_image")
        if not repo.remove_tag(session, image_id, tag):
            raise NotFound(f"Tag {tag} not found on image {image_id}")
        repo.touch(session, image_id)


def is_gone(image: ImageRecord) -> bool:
    return image.status in GONE
