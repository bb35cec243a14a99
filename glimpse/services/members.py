"""Image sharing: members of shared images and their acceptance status."""

from __future__ import annotations

from sqlalchemy.orm import Session

from glimpse.context import RequestContext
from glimpse.db import repository as repo
from glimpse.db.repository import MemberRecord
from glimpse.db.retry import retry_on_conflict
from glimpse.domain import images as rules
from glimpse.domain.images import ImageRecord
from glimpse.errors import BadRequest, Forbidden, NotFound
from glimpse.services import store_acls
from glimpse.services.images import enforce_on_image, load_visible
from glimpse.services.runtime import Runtime
from glimpse.stores.base import Credentials

MEMBER_STATUSES = ("pending", "accepted", "rejected")
MAX_MEMBER_LENGTH = 255

# Glance's order for every member call: find the image (404), require a shared
# image (403), find the membership (404), then the policy rule (403), then the
# request values (400).


def _require_shared(visibility: str, message: str) -> None:
    if visibility != "shared":
        raise Forbidden(f"{message}: Only shared images have members.")


def _lookup(session: Session, ctx: RequestContext, image: ImageRecord,
            member_id: str) -> MemberRecord:
    """The membership, if the caller may see it: the owner (or an admin) sees
    every member, a member project only its own row."""
    member = None
    if len(member_id) <= MAX_MEMBER_LENGTH and "\x00" not in member_id:
        member = repo.get_member(session, image.id, member_id)
    if member is not None and member.member_id != member_id:
        member = None  # a case-insensitive match on MariaDB is not this member
    if member is None or not (rules.can_change(ctx, image) or member_id == ctx.project_id):
        raise NotFound(f"{member_id} not found in the member list of the image {image.id}.")
    return member


@retry_on_conflict
def add_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str) -> MemberRecord:
    if not isinstance(member_id, str) or not member_id or len(member_id) > MAX_MEMBER_LENGTH:
        raise BadRequest("Member must be a project id of at most 255 characters.")
    rules.check_text("member", member_id)
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        _require_shared(image.visibility, f"Not allowed to create members for image {image_id}")
        enforce_on_image(rt, ctx, image, is_member, "add_member")
        if not rules.can_change(ctx, image):
            raise Forbidden("Only the image owner may add members.")
        count = repo.count_members(session, image_id)
        rules.check_quota("image members for this image", count + 1,
                          rt.conf.image_member_quota)
        member = repo.add_member(session, image_id, member_id)
    store_acls.sync(rt, image_id, Credentials.of(ctx))
    rt.notifier.member_event("image.member.create", member)
    return member


def list_members(rt: Runtime, ctx: RequestContext, image_id: str) -> list[MemberRecord]:
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
        _require_shared(image.visibility, f"Not allowed to list members for image {image_id}")
        enforce_on_image(rt, ctx, image, is_member, "get_members")
        members = repo.list_members(session, image_id)
    if rules.can_change(ctx, image):
        return members
    # A member sees only its own membership, never the other consumers.
    return [m for m in members if m.member_id == ctx.project_id]


def get_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str) -> MemberRecord:
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
        try:
            _require_shared(image.visibility, f"Not allowed to show members of image {image_id}")
            member = _lookup(session, ctx, image, member_id)
            enforce_on_image(rt, ctx, image, is_member, "get_member")
        except Forbidden as exc:
            # As Glance: a refused show is a 404, so it reveals nothing.
            raise NotFound(exc.message) from None
    return member


@retry_on_conflict
def update_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str,
                  status: object) -> MemberRecord:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        _require_shared(image.visibility, f"Not allowed to update members for image {image_id}")
        _lookup(session, ctx, image, member_id)
        enforce_on_image(rt, ctx, image, is_member, "modify_member")
        if member_id != ctx.project_id and not ctx.is_admin:
            raise Forbidden("Only the member itself may change its membership status.")
        if status not in MEMBER_STATUSES:
            raise BadRequest('Incorrect request: Status must be "pending", "accepted" '
                             'or "rejected".')
        # Every member may read the data, whatever its status (data_readers): the
        # stores' access lists stay as they are.
        repo.update_member_status(session, image_id, member_id, str(status))
        updated = repo.get_member(session, image_id, member_id)
    assert updated is not None
    rt.notifier.member_event("image.member.update", updated)
    return updated


@retry_on_conflict
def delete_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str) -> None:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        _require_shared(image.visibility, f"Not allowed to delete members for image {image_id}")
        member = _lookup(session, ctx, image, member_id)
        enforce_on_image(rt, ctx, image, is_member, "delete_member")
        if not rules.can_change(ctx, image):
            raise Forbidden("Only the image owner may remove members.")
        repo.delete_member(session, image_id, member_id)
    store_acls.sync(rt, image_id, Credentials.of(ctx))
    rt.notifier.member_event("image.member.delete", member)
