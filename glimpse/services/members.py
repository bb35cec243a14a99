"""Image sharing: members of shared images and their acceptance status."""

from __future__ import annotations

from glimpse.context import RequestContext
from glimpse.db import repository as repo
from glimpse.db.repository import MemberRecord
from glimpse.domain import images as rules
from glimpse.errors import BadRequest, Forbidden, NotFound
from glimpse.services.images import load_visible, target
from glimpse.services.runtime import Runtime

MEMBER_STATUSES = ("pending", "accepted", "rejected")


def _require_shared(image_visibility: str, image_id: str) -> None:
    if image_visibility != "shared":
        raise Forbidden(f"Only shared images have members. Image {image_id} is "
                        f"{image_visibility}.")


def add_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str) -> MemberRecord:
    if not isinstance(member_id, str) or not member_id or len(member_id) > 255:
        raise BadRequest("Member must be a project id of at most 255 characters.")
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        rt.policy.enforce(ctx, "add_member", target(image, ctx, is_member))
        if not rules.can_change(ctx, image):
            raise Forbidden("Only the image owner may add members.")
        _require_shared(image.visibility, image_id)
        count = repo.count_members(session, image_id)
        rules.check_quota("image members", count + 1, rt.conf.image_member_quota)
        return repo.add_member(session, image_id, member_id)


def list_members(rt: Runtime, ctx: RequestContext, image_id: str) -> list[MemberRecord]:
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
        rt.policy.enforce(ctx, "get_members", target(image, ctx, is_member))
        _require_shared(image.visibility, image_id)
        members = repo.list_members(session, image_id)
    if rules.can_change(ctx, image):
        return members
    # A member sees only its own membership, never the other consumers.
    return [m for m in members if m.member_id == ctx.project_id]


def get_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str) -> MemberRecord:
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
        rt.policy.enforce(ctx, "get_member", target(image, ctx, is_member))
        _require_shared(image.visibility, image_id)
        member = repo.get_member(session, image_id, member_id)
    if member is None or not (rules.can_change(ctx, image) or member_id == ctx.project_id):
        raise NotFound(f"Member {member_id} not found for image {image_id}")
    return member


def update_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str,
                  status: object) -> MemberRecord:
    if status not in MEMBER_STATUSES:
        raise BadRequest(f"Invalid status: {status}. Allowed: {', '.join(MEMBER_STATUSES)}")
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        rt.policy.enforce(ctx, "modify_member", target(image, ctx, is_member))
        _require_shared(image.visibility, image_id)
        member = repo.get_member(session, image_id, member_id)
        if member is None or not (rules.can_change(ctx, image) or member_id == ctx.project_id):
            raise NotFound(f"Member {member_id} not found for image {image_id}")
        if member_id != ctx.project_id and not ctx.is_admin:
            raise Forbidden("Only the member itself may change its membership status.")
        repo.update_member_status(session, image_id, member_id, str(status))
        updated = repo.get_member(session, image_id, member_id)
    assert updated is not None
    return updated


def delete_member(rt: Runtime, ctx: RequestContext, image_id: str, member_id: str) -> None:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        rt.policy.enforce(ctx, "delete_member", target(image, ctx, is_member))
        _require_shared(image.visibility, image_id)
        member = repo.get_member(session, image_id, member_id)
        if member is None or not (rules.can_change(ctx, image) or member_id == ctx.project_id):
            raise NotFound(f"Member {member_id} not found for image {image_id}")
        if not rules.can_change(ctx, image):
            raise Forbidden("Only the image owner may remove members.")
        repo.delete_member(session, image_id, member_id)
