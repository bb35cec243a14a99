"""Leases: who owns a long operation, and proof that the owner still lives.

Every operation that holds an image in a transient status takes a lease in
the same transaction that moves the image there (upload -> ``saving``, stage
-> ``uploading``, an import task -> ``importing``, a delete whose data is not
removed yet). The lease names its owner: the host (machine and staging
directory) and the worker (``<pid>/<token>``, the token unique per runtime).

One background thread per runtime renews all of its leases with a single
UPDATE every third of ``lease_period``; nothing on the data path touches the
database for it. When the process dies the renewals stop, the lease expires,
and any node's sweep (glimpse.services.recovery) takes it over with a
compare-and-set and undoes or finishes the operation. On the owner's own host
a dead pid is noticed at once, without waiting for the expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta
from typing import Any

from oslo_config import cfg

from glimpse.db import leases_repo
from glimpse.db.engine import Database
from glimpse.db.leases_repo import LeaseRecord
from glimpse.db.repository import utcnow

LOG = logging.getLogger(__name__)

UPLOAD, STAGE, IMPORT, DELETE = "upload", "stage", "import", "delete"

# Worker identities alive in this process (several runtimes can share one process).
_LIVE_WORKERS: set[str] = set()
_LIVE_LOCK = threading.Lock()


def host_identity(conf: cfg.ConfigOpts) -> str:
    """This worker's host: the machine and its staging directory."""
    from glimpse.imports.staging import staging_dir

    return f"{socket.gethostname()}:{staging_dir(conf)}"[:255]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_is_dead(worker: str | None) -> bool:
    """Whether the worker ``<pid>/<token>`` is gone (only meaningful on its own host)."""
    if not worker or "/" not in worker:
        return True
    pid_text, _, _token = worker.partition("/")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if pid == os.getpid():
        with _LIVE_LOCK:
            return worker not in _LIVE_WORKERS
    return not _pid_alive(pid)


class Leases:
    """This runtime's identity, and the thread that keeps its leases alive."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database):
        self.db = db
        self.period = float(conf.lease_period)
        self.host = host_identity(conf)
        self.worker = f"{os.getpid()}/{uuid.uuid4().hex}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        with _LIVE_LOCK:
            _LIVE_WORKERS.add(self.worker)

    def expiry(self):  # noqa: ANN201 - datetime
        return utcnow() + timedelta(seconds=self.period)

    def acquire(self, session: Any, operation: str, image_id: str | None = None,
                task_id: str | None = None, detail: dict[str, Any] | None = None,
                ) -> str:
        """Insert a lease owned by this runtime into the caller's transaction.
        The caller calls ``held`` once that transaction has committed."""
        lease_id = str(uuid.uuid4())
        now = utcnow()
        leases_repo.insert_lease(session, LeaseRecord(
            id=lease_id, operation=operation, image_id=image_id, task_id=task_id,
            host=self.host, worker=self.worker, expires_at=now + timedelta(seconds=self.period),
            created_at=now, detail=detail or {}))
        return lease_id

    def held(self, lease_id: str) -> None:
        """Keep renewing ``lease_id`` until ``release``/``forget``."""
        with self._lock:
            self._held.add(lease_id)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                                name="glimpse-leases")
                self._thread.start()

    def release(self, session: Any, lease_id: str) -> None:
        """Drop the lease in the caller's transaction (and stop renewing it)."""
        leases_repo.release(session, lease_id, self.worker)
        self.forget(lease_id)

    def release_now(self, lease_id: str) -> None:
        try:
            with self.db.write() as session, session.begin():
                self.release(session, lease_id)
        except Exception:  # noqa: BLE001 - the lease then expires; the sweep drops it
            LOG.warning("Could not release lease %s", lease_id, exc_info=True)
            self.forget(lease_id)

    def forget(self, lease_id: str) -> None:
        with self._lock:
            self._held.discard(lease_id)

    def is_held(self, lease_id: str) -> bool:
        with self._lock:
            return lease_id in self._held

    def renew(self) -> None:
        with self._lock:
            if not self._held:
                return
            held = set(self._held)
        # Only those still held: one given up on (forget) must expire, so that a
        # sweep, this process's own included, finishes its operation.
        with self.db.write() as session, session.begin():
            leases_repo.renew_all(session, self.worker, self.expiry(), held)

    def _renew_loop(self) -> None:
        interval = max(self.period / 3, 0.05)
        while not self._wake.wait(interval):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - try again at the next tick
                LOG.warning("Could not renew this worker's leases", exc_info=True)

    def close(self) -> None:
        """Stop renewing: what is still held expires and is recovered by a sweep."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(5)
        with _LIVE_LOCK:
            _LIVE_WORKERS.discard(self.worker)
