"""Read-only queries the recovery sweep and ``glimpse doctor`` need."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import false, select

from glimpse.db.models import Image, ImageLocation, ImageProperty, Task

TRANSIENT = ("saving", "uploading", "importing")


def referenced_urls(session: Any, image_id: str | None = None) -> set[str]:
    """Location URLs whose data must stay (active or waiting for the scrubber)."""
    stmt = select(ImageLocation.value).where(ImageLocation.status != "deleted")
    if image_id is not None:
        stmt = stmt.where(ImageLocation.image_id == image_id)
    return set(session.scalars(stmt))


def referenced_locations(session: Any) -> set[tuple[str, str]]:
    """(image id, url) of every location whose data must stay."""
    return {(i, u) for i, u in session.execute(
        select(ImageLocation.image_id, ImageLocation.value)
        .where(ImageLocation.status != "deleted"))}


def image_states(session: Any, image_ids: Iterable[str]) -> dict[str, tuple[str, bool, str | None]]:
    """(status, deleted, stage host) of each image that has a row, deleted or not."""
    ids = sorted(set(image_ids))
    found: dict[str, tuple[str, bool, str | None]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        hosts = dict(session.execute(select(ImageProperty.image_id, ImageProperty.value).where(
            ImageProperty.image_id.in_(chunk),
            ImageProperty.name == "os_glance_stage_host")).all())
        for image_id, status, deleted in session.execute(
                select(Image.id, Image.status, Image.deleted).where(Image.id.in_(chunk))):
            found[image_id] = (status, bool(deleted), hosts.get(image_id))
    return found


def unfinished_task_ids(session: Any, task_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(task_ids))
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        found |= set(session.scalars(select(Task.id).where(
            Task.id.in_(ids[start:start + 500]), Task.status.in_(("pending", "processing")))))
    return found


def transient_images(session: Any) -> list[tuple[str, str, int | None]]:
    """(id, status, size) of live images in a transient status."""
    return [tuple(r) for r in session.execute(
        select(Image.id, Image.status, Image.size)
        .where(Image.deleted == false(), Image.status.in_(TRANSIENT)).order_by(Image.id))]


def active_locations(session: Any) -> list[tuple[str, str]]:
    """(image id, url) of every active location of a live image."""
    return [tuple(r) for r in session.execute(
        select(ImageLocation.image_id, ImageLocation.value)
        .join(Image, Image.id == ImageLocation.image_id)
        .where(Image.deleted == false(), ImageLocation.status == "active")
        .order_by(ImageLocation.image_id, ImageLocation.id))]
