"""The task runner: background threads inside the API worker.

Each API worker owns one bounded thread pool (``import_workers`` threads).
A task row records which worker runs it (``host`` = this machine and staging
directory, ``worker`` = process id and a token per runner), so that a worker
starting on the same host can tell the tasks a dead worker left behind and
put their images back into a state from which the import can be retried.

Task statuses move pending -> processing -> success | failure (and pending
-> failure), each a compare-and-set in the database; a finished task gets
``expires_at`` = now + ``[task] task_time_to_live`` hours, as in Glance.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
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

if TYPE_CHECKING:
    from glimpse.services.runtime import Runtime

LOG = logging.getLogger(__name__)

IMPORTING_STORES = "os_glance_importing_to_stores"
FAILED_STORES = "os_glance_failed_import"
STAGE_HOST = staging_mod.STAGE_HOST

# Progress is written at most this often (it doubles as the task's heartbeat).
PROGRESS_INTERVAL = 1.0

# Runner tokens alive in this process (several runtimes can share one process).
_LIVE_WORKERS: set[str] = set()
_LIVE_LOCK = threading.Lock()


class TaskAborted(Exception):
    """The task lost its lock, its image went away, or the worker is stopping."""


class ImportFailed(Exception):
    """The import cannot complete; the message is shown in the task."""


def host_identity(rt: Runtime) -> str:
    """This worker's host for recovery: the machine and its staging directory."""
    return f"{socket.gethostname()}:{staging_mod.staging_dir(rt.conf)}"[:255]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_is_dead(worker: str | None) -> bool:
    """Whether the worker that owned a task (``<pid>/<token>``) is gone."""
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
        result = {"progress": {"phase": phase, "bytes_processed": done, "bytes_total": total}}
        message = f"Copied {done // (1024 * 1024)} MiB"
        with self.rt.db.write() as session, session.begin():
            if not tasks_repo.update_task(session, self.task_id,
                                          {"result": result, "message": message},
                                          expected_status="processing"):
                raise TaskAborted(f"Task {self.task_id} is no longer processing")


class TaskRunner:
    def __init__(self, rt: Runtime):
        staging_mod.register_opts(rt.conf)
        self.rt = rt
        self.staging = staging_mod.Staging(rt.conf)
        self.host = host_identity(rt)
        self.worker = f"{os.getpid()}/{uuid.uuid4().hex}"
        self.stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        with _LIVE_LOCK:
            _LIVE_WORKERS.add(self.worker)

    # ------------------------------------------------------------ running

    def submit(self, task_id: str) -> None:
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
        with _LIVE_LOCK:
            _LIVE_WORKERS.discard(self.worker)

    def task_values(self) -> dict[str, Any]:
        """Columns a new task row needs so this runner is known as its owner."""
        return {"host": self.host, "worker": self.worker}

    def _run(self, task_id: str) -> None:
        from glimpse.imports import methods  # the methods use this module

        with self.rt.db.write() as session, session.begin():
            started = tasks_repo.update_task(session, task_id, {"status": "processing"},
                                             expected_status="pending")
            task = tasks_repo.get_task(session, task_id)
        if not started or task is None:
            LOG.warning("Task %s was not pending any more; not run", task_id)
            return
        progress = Progress(self.rt, task_id, self.stopping)
        metrics.IMPORTS.inc()
        try:
            if task.type == "api_image_import":
                methods.run_api_import(self, task, progress)
            elif task.type == "import":
                methods.run_legacy_import(self, task, progress)
            else:
                raise ImportFailed(f"Task type {task.type} cannot be run by this service")
        except Exception as exc:  # noqa: BLE001 - a task records every failure
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
            tasks_repo.update_task(session, task_id, {
                "status": "failure", "message": message, "result": None,
                "expires_at": expiry(self.rt)}, expected_status=("pending", "processing"))

    # ------------------------------------------------------------ recovery

    def recover(self) -> None:
        """At worker start: fail what dead workers on this host left running,
        put their images back into a retryable state, clean staging."""
        try:
            with self.rt.db.read() as session:
                leftovers = [t for t in tasks_repo.unfinished_tasks(session, self.host)
                             if worker_is_dead(t.worker)]
        except Exception:  # noqa: BLE001 - e.g. a database not migrated yet
            LOG.warning("Could not look for interrupted tasks", exc_info=True)
            return
        for task in leftovers:
            try:
                self._recover_task(task)
            except Exception:  # noqa: BLE001 - one bad task must not stop the start
                LOG.exception("Could not recover interrupted task %s", task.id)
        self._clean_staging()

    def _recover_task(self, task: TaskRecord) -> None:
        LOG.warning("Task %s (%s) was interrupted by a worker restart; failing it",
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
            methods.revert_interrupted_import(self, task)
        elif task.type == "import":
            methods.revert_legacy_import(self, task)
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
