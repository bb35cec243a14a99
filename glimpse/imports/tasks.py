"""The task runner: background threads inside the API worker.

Each API worker owns one bounded thread pool (``import_workers`` threads).
Every task is owned by a lease (glimpse.services.leases) taken with the task
row and renewed until the task has run; when its worker dies, any node's
recovery sweep fails the task and puts its image back into a state from which
the import can be retried (``recover_task``). The row's ``host`` and
``worker`` columns still name the owner, for tasks written before leases
existed (``recover`` handles those at start-up on their own host).

Task statuses move pending -> processing -> success | failure (and pending
-> failure), each a compare-and-set in the database; a finished task gets
``expires_at`` = now + ``[task] task_time_to_live`` hours, as in Glance.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from glimpse import metrics
from glimpse.db import repository as repo
from glimpse.db import tasks_repo
from glimpse.db.repository import utcnow
from glimpse.db.tasks_repo import TaskRecord
from glimpse.domain.status import Event, transition
from glimpse.imports import staging as staging_mod
from glimpse.services import leases as leases_mod
from glimpse.services.leases import worker_is_dead

__all__ = ["worker_is_dead", "host_identity", "TaskRunner"]

if TYPE_CHECKING:
    from glimpse.services.runtime import Runtime

LOG = logging.getLogger(__name__)

IMPORTING_STORES = "os_glance_importing_to_stores"
FAILED_STORES = "os_glance_failed_import"
STAGE_HOST = staging_mod.STAGE_HOST

# Progress is written at most this often (it doubles as the task's heartbeat).
PROGRESS_INTERVAL = 1.0
STORE_PHASE = "store:"  # progress phases of writing to a store: "store:<name>"

class TaskAborted(Exception):
    """The task lost its lock, its image went away, or the worker is stopping."""


class ImportFailed(Exception):
    """The import cannot complete; the message is shown in the task."""


def host_identity(rt: Runtime) -> str:
    """This worker's host for recovery: the machine and its staging directory."""
    return leases_mod.host_identity(rt.conf)


def expiry(rt: Runtime):  # noqa: ANN201 - datetime
    return utcnow() + timedelta(hours=rt.conf.task.task_time_to_live)


class Progress:
    """Reports bytes processed (and the total when known) in the task's result.

    Also the abort check: a task that is no longer ``processing`` (failed by
    someone else) or a runner that is stopping ends the work."""

    def __init__(self, rt: Runtime, task_id: str, stopping: threading.Event):
        self.rt = rt
        self.task_id = task_id
        self.stopping = stopping
        self._last = 0.0

    def update(self, phase: str, done: int, total: int | None, force: bool = False) -> None:
        if self.stopping.is_set():
            raise TaskAborted("The worker is shutting down")
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        values: dict[str, Any] = {"result": {"progress": {
            "phase": phase, "bytes_processed": done, "bytes_total": total}}}
        if phase.startswith(STORE_PHASE):
            # Glance's text, written while data goes to a store (not while it is
            # downloaded) and left in place when the task succeeds.
            values["message"] = f"Copied {done // (1024 * 1024)} MiB"
        with self.rt.db.write() as session, session.begin():
            if not tasks_repo.update_task(session, self.task_id, values,
                                          expected_status="processing"):
                raise TaskAborted(f"Task {self.task_id} is no longer processing")


class TaskRunner:
    def __init__(self, rt: Runtime):
        staging_mod.register_opts(rt.conf)
        self.rt = rt
        self.staging = staging_mod.Staging(rt.conf)
        # The task's owner is this runtime's lease holder (glimpse.services.leases).
        self.host = rt.leases.host
        self.worker = rt.leases.worker
        self.stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._leases: dict[str, str] = {}
        # The requester of each submitted task, kept in memory only (its token is
        # never written down): the key manager is asked on its behalf.
        self._contexts: dict[str, Any] = {}

    # ------------------------------------------------------------ running

    def context(self, task_id: str) -> Any:
        """The RequestContext the task was submitted with (None after a restart)."""
        return self._contexts.get(task_id)

    def lease_task(self, session, task_id: str, image_id: str | None,  # noqa: ANN001
                   stores: list[str | None] | None = None) -> None:
        """Take the lease of a new task in the transaction that creates it; it is
        renewed from ``submit`` until the task has run."""
        self._leases[task_id] = self.rt.leases.acquire(
            session, leases_mod.IMPORT, image_id=image_id, task_id=task_id,
            detail={"stores": stores or [None]})

    def submit(self, task_id: str, ctx: Any = None) -> None:
        if ctx is not None:
            self._contexts[task_id] = ctx
        lease_id = self._leases.get(task_id)
        if lease_id is not None:
            self.rt.leases.held(lease_id)
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.rt.conf.import_workers, thread_name_prefix="glimpse-task")
            self._pool.submit(self._run, task_id)

    def shutdown(self, wait: bool = True) -> None:
        """Stop: running tasks abort at their next progress step; queued ones
        stay pending and are failed by the next worker start on this host."""
        self.stopping.set()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def task_values(self) -> dict[str, Any]:
        """Columns a new task row needs so this runner is known as its owner."""
        return {"host": self.host, "worker": self.worker}

    def _run(self, task_id: str) -> None:
        try:
            self._run_task(task_id)
        finally:
            self._contexts.pop(task_id, None)
            lease_id = self._leases.pop(task_id, None)
            if lease_id is not None and not self.stopping.is_set():
                self.rt.leases.release_now(lease_id)

    def _run_task(self, task_id: str) -> None:
        from glimpse.imports import methods  # the methods use this module

        with self.rt.db.write() as session, session.begin():
            started = tasks_repo.update_task(session, task_id, {"status": "processing"},
                                             expected_status="pending")
            task = tasks_repo.get_task(session, task_id)
        if not started or task is None:
            LOG.warning("Task %s was not pending any more; not run", task_id)
            return
        self.rt.notifier.task_event("task.processing", task)
        progress = Progress(self.rt, task_id, self.stopping)
        metrics.IMPORTS.inc()
        try:
            if task.type == "api_image_import":
                methods.run_api_import(self, task, progress)
            elif task.type == "import":
                methods.run_legacy_import(self, task, progress)
            elif task.type == "location_import":
                from glimpse.imports import location_import

                location_import.run(self, task, progress)
            else:
                raise ImportFailed(f"Task type {task.type} cannot be run by this service")
            self._notify(task_id, "task.success")
        except Exception as exc:  # noqa: BLE001 - a task records every failure
            if isinstance(exc, TaskAborted) and self.stopping.is_set():
                LOG.warning("Task %s interrupted by the worker's shutdown; its lease "
                            "expires and the recovery sweep reverts it", task_id)
                return
            if isinstance(exc, ImportFailed | TaskAborted):
                LOG.warning("Task %s failed: %s", task_id, exc)
            else:
                LOG.exception("Task %s failed", task_id)
            self.fail(task_id, str(exc) or exc.__class__.__name__)
        finally:
            metrics.IMPORTS.dec()

    def succeed(self, task_id: str, result: dict[str, Any]) -> None:
        with self.rt.db.write() as session, session.begin():
            tasks_repo.update_task(session, task_id, {
                "status": "success", "result": result, "message": "",
                "expires_at": expiry(self.rt)}, expected_status="processing")

    def fail(self, task_id: str, message: str) -> None:
        with self.rt.db.write() as session, session.begin():
            failed = tasks_repo.update_task(session, task_id, {
                "status": "failure", "message": message, "result": None,
                "expires_at": expiry(self.rt)}, expected_status=("pending", "processing"))
        if failed:
            self._notify(task_id, "task.failure")

    def _notify(self, task_id: str, event_type: str) -> None:
        """Send ``event_type`` with the task as now stored (read only when it is sent)."""
        if not self.rt.notifier.wants(event_type):
            return
        with self.rt.db.read() as session:
            task = tasks_repo.get_task(session, task_id)
        if task is not None:
            self.rt.notifier.task_event(event_type, task)

    # ------------------------------------------------------------ recovery

    def recover(self) -> None:
        """At worker start: fail what dead workers on this host left running,
        put their images back into a retryable state, clean staging."""
        from glimpse.db import leases_repo

        try:
            with self.rt.db.read() as session:
                leased = leases_repo.leased_task_ids(session)  # the lease sweep's business
                leftovers = [t for t in tasks_repo.unfinished_tasks(session, self.host)
                             if t.id not in leased and worker_is_dead(t.worker)]
        except Exception:  # noqa: BLE001 - e.g. a database not migrated yet
            LOG.warning("Could not look for interrupted tasks", exc_info=True)
            return
        for task in leftovers:
            try:
                self.recover_task(task)
            except Exception:  # noqa: BLE001 - one bad task must not stop the start
                LOG.exception("Could not recover interrupted task %s", task.id)
        self._clean_staging()

    def recover_task(self, task: TaskRecord, local: bool = True) -> None:
        """Fail a task whose worker died and make its image retryable. ``local``:
        the task ran on this host, so its staged and work files are here."""
        LOG.warning("Task %s (%s) was interrupted: its worker stopped; failing it",
                    task.id, task.type)
        with self.rt.db.write() as session, session.begin():
            failed = tasks_repo.update_task(session, task.id, {
                "status": "failure", "result": None, "expires_at": expiry(self.rt),
                "message": "The worker running this task stopped before the task finished"},
                expected_status=("pending", "processing"))
        if not failed:
            return
        from glimpse.imports import methods

        if task.type == "api_image_import" and task.image_id:
            methods.revert_interrupted_import(self, task, local=local)
        elif task.type == "import":
            methods.revert_legacy_import(self, task)
        elif task.type == "location_import" and task.image_id:
            from glimpse.imports import location_import

            location_import.revert_interrupted(self, task)
        if local:
            self.staging.remove_work(task.id)

    def _clean_staging(self) -> None:
        """Staged data of images that are gone or no longer waiting for an import."""
        for image_id in self.staging.staged_images():
            with self.rt.db.read() as session:
                image = repo.get_image(session, image_id, with_locations=False)
            if image is None or image.status not in ("uploading", "importing"):
                LOG.info("Removing stale staged data of image %s", image_id)
                self.staging.remove(image_id)


def revert_status(rt: Runtime, image_id: str, current: str, event: Event,
                  **values: Any) -> bool:
    """Compare-and-set the image status through the transition table."""
    with rt.db.write() as session, session.begin():
        return repo.set_status(session, image_id, current, transition(current, event), **values)
