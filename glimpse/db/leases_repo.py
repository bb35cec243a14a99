"""Database access for leases (glimpse.db.models.Lease).

Functions take an open Session; the caller owns the transaction. Taking a
lease over is a compare-and-set on its owner and expiry, so two sweeping
nodes never both act on one lease.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from glimpse.db.models import Lease
from glimpse.db.repository import utcnow


@dataclass
class LeaseRecord:
    id: str
    operation: str
    image_id: str | None
    task_id: str | None
    host: str
    worker: str
    expires_at: datetime
    created_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


def _record(row: Any) -> LeaseRecord:
    return LeaseRecord(id=row.id, operation=row.operation, image_id=row.image_id,
                       task_id=row.task_id, host=row.host, worker=row.worker,
                       expires_at=row.expires_at, created_at=row.created_at,
                       detail=json.loads(row.detail or "{}"))


def insert_lease(session: Session, lease: LeaseRecord) -> None:
    session.execute(insert(Lease).values(
        id=lease.id, operation=lease.operation, image_id=lease.image_id,
        task_id=lease.task_id, host=lease.host, worker=lease.worker,
        detail=json.dumps(lease.detail), expires_at=lease.expires_at,
        created_at=lease.created_at))


def renew_all(session: Session, worker: str, expires_at: datetime,
              lease_ids: Collection[str] | None = None) -> int:
    """Push the expiry of every lease ``worker`` still owns (of those of ``lease_ids``
    when given: a lease its worker gave up on must expire): one statement."""
    stmt = update(Lease).where(Lease.worker == worker)
    if lease_ids is not None:
        stmt = stmt.where(Lease.id.in_(list(lease_ids)))
    result = session.execute(stmt
                             .values(expires_at=expires_at)
                             .execution_options(synchronize_session=False))
    return result.rowcount


def release(session: Session, lease_id: str, worker: str | None = None) -> bool:
    """Drop a lease; with ``worker`` only if that worker still owns it."""
    stmt = delete(Lease).where(Lease.id == lease_id)
    if worker is not None:
        stmt = stmt.where(Lease.worker == worker)
    return session.execute(stmt.execution_options(synchronize_session=False)).rowcount == 1


def set_detail(session: Session, lease_id: str, detail: dict[str, Any]) -> None:
    session.execute(update(Lease).where(Lease.id == lease_id)
                    .values(detail=json.dumps(detail))
                    .execution_options(synchronize_session=False))


def take_over(session: Session, lease: LeaseRecord, worker: str, host: str,
              expires_at: datetime) -> bool:
    """Compare-and-set: become the owner of ``lease`` if nobody renewed or took
    it since it was read."""
    result = session.execute(
        update(Lease).where(Lease.id == lease.id, Lease.worker == lease.worker,
                            Lease.expires_at == lease.expires_at)
        .values(worker=worker, host=host, expires_at=expires_at)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def all_leases(session: Session) -> list[LeaseRecord]:
    return [_record(r) for r in session.scalars(select(Lease).order_by(Lease.created_at))]


def candidates(session: Session, host: str) -> list[LeaseRecord]:
    """Leases that may be dead: expired ones, and every lease of ``host`` (whose
    owners' processes can be checked directly)."""
    now = utcnow()
    rows = session.scalars(select(Lease).where((Lease.expires_at < now) | (Lease.host == host))
                           .order_by(Lease.created_at))
    return [_record(r) for r in rows]


def live_image_ids(session: Session) -> set[str]:
    """Images some unexpired lease is working on."""
    now = utcnow()
    return {i for i in session.scalars(select(Lease.image_id).where(
        Lease.expires_at >= now, Lease.image_id.is_not(None))) if i}


def live_task_ids(session: Session) -> set[str]:
    now = utcnow()
    return {i for i in session.scalars(select(Lease.task_id).where(
        Lease.expires_at >= now, Lease.task_id.is_not(None))) if i}


def leased_task_ids(session: Session) -> set[str]:
    return {i for i in session.scalars(select(Lease.task_id).where(
        Lease.task_id.is_not(None))) if i}
