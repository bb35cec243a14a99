"""Database access for tasks and for the image import lock.

Like glimpse.db.repository, functions take an open Session and the service
layer owns transactions. Every task status change is a compare-and-set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from glimpse.db.models import Image, ImageLocation, ImageProperty, Task
from glimpse.db.repository import utcnow

IMPORT_LOCK = "os_glance_import_task"

# Columns a task list may be sorted and filtered on (Glance accepts any column).
TASK_COLUMNS = frozenset({
    "id", "type", "status", "owner", "image_id", "request_id", "user_id", "expires_at",
    "created_at", "updated_at", "message",
})


@dataclass
class TaskRecord:
    id: str
    type: str
    status: str
    owner: str | None
    image_id: str | None
    request_id: str | None
    user_id: str | None
    input: Any
    result: Any
    message: str
    host: str | None
    worker: str | None
    roles: tuple[str, ...]
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    deleted: bool = False


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _record(row: Task) -> TaskRecord:
    return TaskRecord(
        id=row.id, type=row.type, status=row.status, owner=row.owner, image_id=row.image_id,
        request_id=row.request_id, user_id=row.user_id, input=_loads(row.input),
        result=_loads(row.result), message=row.message or "", host=row.host, worker=row.worker,
        roles=tuple(r for r in (row.roles or "").split(",") if r), expires_at=row.expires_at,
        created_at=row.created_at, updated_at=row.updated_at, deleted_at=row.deleted_at,
        deleted=row.deleted)


# ---------------------------------------------------------------- tasks


def create_task(session: Session, values: dict[str, Any]) -> TaskRecord:
    now = utcnow()
    row = Task(
        id=values["id"], type=values["type"], status=values.get("status", "pending"),
        owner=values.get("owner"), image_id=values.get("image_id"),
        request_id=values.get("request_id"), user_id=values.get("user_id"),
        input=json.dumps(values.get("input")), result=None, message=values.get("message", ""),
        host=values.get("host"), worker=values.get("worker"),
        roles=",".join(values.get("roles") or ()), expires_at=None,
        created_at=now, updated_at=now, deleted=False)
    session.add(row)
    session.flush()
    return _record(row)


def get_task(session: Session, task_id: str, include_deleted: bool = False,
             ) -> TaskRecord | None:
    stmt = select(Task).where(Task.id == task_id)
    if not include_deleted:
        stmt = stmt.where(Task.deleted == false())
    row = session.scalars(stmt).first()
    # MariaDB compares strings case-insensitively; ids are exact.
    if row is None or row.id != task_id:
        return None
    return _record(row)


def update_task(session: Session, task_id: str, values: dict[str, Any],
                expected_status: str | tuple[str, ...] | None = None) -> bool:
    """Update a task; with ``expected_status`` a compare-and-set on its status."""
    values = dict(values)
    for key in ("input", "result"):
        if key in values:
            values[key] = None if values[key] is None else json.dumps(values[key])
    values.setdefault("updated_at", utcnow())
    stmt = update(Task).where(Task.id == task_id, Task.deleted == false())
    if isinstance(expected_status, str):
        stmt = stmt.where(Task.status == expected_status)
    elif expected_status is not None:
        stmt = stmt.where(Task.status.in_(expected_status))
    result = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


def soft_delete_expired(session: Session, owner: str | None = None) -> None:
    """Hide tasks past their expires_at, as Glance does on every list."""
    now = utcnow()
    stmt = update(Task).where(Task.deleted == false(), Task.expires_at.is_not(None),
                              Task.expires_at <= now)
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    session.execute(stmt.values(deleted=True, deleted_at=now)
                    .execution_options(synchronize_session=False))


@dataclass
class TaskQuery:
    owner: str | None = None       # None: every owner (admins)
    filters: dict[str, str] | None = None
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    limit: int = 25
    marker: TaskRecord | None = None


def list_tasks(session: Session, q: TaskQuery) -> list[TaskRecord]:
    stmt = select(Task).where(Task.deleted == false())
    if q.owner is not None:
        stmt = stmt.where(Task.owner == q.owner)
    for key, value in (q.filters or {}).items():
        stmt = stmt.where(getattr(Task, key) == value)
    keys = [q.sort_key] + [k for k in ("created_at", "id") if k != q.sort_key]
    if q.marker is not None:
        stmt = stmt.where(_after(q.marker, keys, q.sort_dir))
    cols = [getattr(Task, k) for k in keys]
    order = [c.desc() if q.sort_dir == "desc" else c.asc() for c in cols]
    rows = session.scalars(stmt.order_by(*order).limit(q.limit))
    return [_record(r) for r in rows]


def _after(marker: TaskRecord, keys: list[str], direction: str) -> ColumnElement[bool]:
    clauses = []
    for i, key in enumerate(keys):
        prefix = [getattr(Task, k) == getattr(marker, k) for k in keys[:i]]
        col, value = getattr(Task, key), getattr(marker, key)
        if value is None:
            # NULLs sort first ascending on SQLite/MariaDB and last on PostgreSQL;
            # only non-NULL sort keys are exact here, ties fall to created_at/id.
            continue
        clauses.append(and_(*prefix, col < value if direction == "desc" else col > value))
    return or_(*clauses)


def tasks_for_image(session: Session, image_id: str) -> list[TaskRecord]:
    rows = session.scalars(select(Task).where(Task.image_id == image_id, Task.deleted == false())
                           .order_by(Task.created_at, Task.id))
    return [_record(r) for r in rows]


def unfinished_tasks(session: Session, host: str) -> list[TaskRecord]:
    rows = session.scalars(select(Task).where(
        Task.deleted == false(), Task.host == host,
        Task.status.in_(("pending", "processing"))))
    return [_record(r) for r in rows]


# ---------------------------------------------------------------- import lock


def acquire_import_lock(session: Session, image_id: str, task_id: str) -> bool:
    """Create the lock property; False if it already exists (someone else holds it).

    The (image_id, name) primary key makes this a compare-and-set on every
    database. Call it first in its transaction: a failed insert aborts a
    PostgreSQL transaction, and the caller must then roll back."""
    try:
        with session.begin_nested():
            session.execute(insert(ImageProperty).values(
                image_id=image_id, name=IMPORT_LOCK, value=task_id))
    except IntegrityError:
        return False
    return True


def release_import_lock(session: Session, image_id: str, task_id: str) -> bool:
    """Drop the lock only if ``task_id`` holds it."""
    result = session.execute(delete(ImageProperty).where(
        ImageProperty.image_id == image_id, ImageProperty.name == IMPORT_LOCK,
        ImageProperty.value == task_id))
    return result.rowcount == 1


def lock_holder(session: Session, image_id: str) -> str | None:
    return session.scalar(select(ImageProperty.value).where(
        ImageProperty.image_id == image_id, ImageProperty.name == IMPORT_LOCK))


# ---------------------------------------------------------------- usage (GET /v2/info/usage)

_UPLOADING = ("saving", "uploading", "importing")


def _copying(owner: str, excluded: tuple[str, ...]) -> Any:
    """Images of ``owner`` with a copy in progress (os_glance_importing_to_stores set)."""
    copying = select(ImageProperty.image_id).where(
        ImageProperty.name == "os_glance_importing_to_stores", ImageProperty.value != "")
    return and_(Image.owner == owner, Image.id.in_(copying), Image.status.not_in(excluded))


def usage(session: Session, owner: str) -> dict[str, int]:
    """Glance's four usage figures for a project (sizes in bytes here)."""
    live = and_(Image.owner == owner, Image.status.not_in(("killed", "deleted")))
    size_total = 0
    rows = session.execute(
        select(Image.size, func.count(ImageLocation.id))
        .join(ImageLocation, ImageLocation.image_id == Image.id)
        .where(live, Image.size > 0, ImageLocation.status != "deleted")
        .group_by(Image.id, Image.size))
    for size, locations in rows:
        size_total += int(size) * int(locations)
    staged = session.scalar(select(func.coalesce(func.sum(Image.size), 0)).where(
        Image.owner == owner, Image.size > 0, Image.status.in_(("uploading", "importing")))) or 0
    copying = session.scalar(select(func.coalesce(func.sum(Image.size), 0)).where(
        Image.size > 0, _copying(owner, ("uploading", "importing", "killed", "deleted")))) or 0
    count = session.scalar(select(func.count()).select_from(Image).where(live)) or 0
    uploading = session.scalar(select(func.count()).select_from(Image).where(
        Image.owner == owner, Image.status.in_(_UPLOADING))) or 0
    copies = session.scalar(select(func.count()).select_from(Image).where(
        _copying(owner, (*_UPLOADING, "killed", "deleted")))) or 0
    return {"image_size_total": size_total, "image_stage_total": int(staged) + int(copying),
            "image_count_total": int(count), "image_count_uploading": int(uploading + copies)}
