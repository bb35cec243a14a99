"""Crash recovery: expired leases, orphaned data, and the report of ``glimpse doctor``.

Two sweeps, both safe on every node at once (each action is a compare-and-set
or is idempotent):

- ``sweep_leases``: a lease whose owner stopped renewing it (or whose pid is
  gone, on the owner's own host) is taken over with a compare-and-set; its
  operation is then undone (upload -> ``queued``, stage -> ``queued``, an
  import as the task recovery does it) or finished (the data removal of a
  delete), the partial data removed, and the lease dropped. Cheap: one
  indexed query per ``lease_sweep_interval``.
- ``sweep_data``: every store, the staging area and the tasks work area are
  listed (``Store.list_data``); data nothing references, older than the lease
  period and belonging to no image with a live lease, is orphaned. The
  periodic sweep removes only orphans of images the database knows (a store
  shared with another database is never emptied by accident);
  ``glimpse doctor --fix`` removes every orphan it lists.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from glimpse.db import leases_repo, recovery_repo, tasks_repo
from glimpse.db import repository as repo
from glimpse.db import retry as db_retry
from glimpse.db.leases_repo import LeaseRecord
from glimpse.domain.status import Event, transition
from glimpse.errors import GlimpseError
from glimpse.services import leases as leases_mod
from glimpse.services.runtime import Runtime
from glimpse.stores.base import (
    DataEntry,
    DataNotFound,
    Store,
    StoreError,
    StoreUnavailable,
)

LOG = logging.getLogger(__name__)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}")


def _owner_id(url: str) -> str | None:
    """The image (or task) id a piece of data is named after: the last UUID in its URL."""
    found = _UUID.findall(url.rsplit("/", 1)[-1]) or _UUID.findall(url)
    return found[-1] if found else None


def _name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------- leases


def _is_dead(rt: Runtime, lease: LeaseRecord, now: Any) -> bool:
    if lease.worker == rt.leases.worker:
        # Ours: dead only once it expired after we gave up on it (an operation that
        # could not undo itself, say while the database was away).
        return lease.expires_at < now and not rt.leases.is_held(lease.id)
    if lease.expires_at < now:
        return True
    return lease.host == rt.leases.host and leases_mod.worker_is_dead(lease.worker)


def dead_leases(rt: Runtime) -> list[LeaseRecord]:
    with rt.db.read() as session:
        found = leases_repo.candidates(session, rt.leases.host)
    now = repo.utcnow()
    return [lease for lease in found if _is_dead(rt, lease, now)]


def sweep_leases(rt: Runtime) -> list[LeaseRecord]:
    """Take over and resolve every dead lease; return those resolved here."""
    resolved = []
    for lease in dead_leases(rt):
        with rt.db.write() as session, session.begin():
            if not leases_repo.take_over(session, lease, rt.leases.worker, rt.leases.host,
                                         rt.leases.expiry()):
                continue  # renewed, or another node is on it
        rt.leases.held(lease.id)  # ours while we work on it
        LOG.warning("Lease %s (%s of image %s, owner %s on %s) expired; recovering",
                    lease.id, lease.operation, lease.image_id, lease.worker, lease.host)
        try:
            _resolve(rt, lease)
        except Exception:  # noqa: BLE001 - it expires again and the next sweep retries
            LOG.exception("Could not recover lease %s; retrying later", lease.id)
            rt.leases.forget(lease.id)
            continue
        rt.leases.release_now(lease.id)
        resolved.append(lease)
    return resolved


def _resolve(rt: Runtime, lease: LeaseRecord) -> None:
    image_id = lease.image_id
    local = lease.host == rt.leases.host
    if lease.operation == leases_mod.UPLOAD and image_id:
        _revert(rt, image_id, "saving", Event.UPLOAD_FAILED)
        remove_image_data(rt, image_id, [lease.detail.get("store")], lease.id)
    elif lease.operation == leases_mod.STAGE and image_id:
        _revert(rt, image_id, "uploading", Event.STAGE_FAILED, size=None)
        if local:
            rt.runner.staging.remove(image_id)
    elif lease.operation == leases_mod.IMPORT:
        _resolve_import(rt, lease)
    elif lease.operation == leases_mod.DELETE:
        for url in lease.detail.get("urls", []):
            _delete_url(rt, url)
        if local and image_id:
            rt.runner.staging.remove(image_id)


def _revert(rt: Runtime, image_id: str, current: str, event: Event, **values: Any) -> None:
    with rt.db.write() as session, session.begin():
        if repo.set_status(session, image_id, current, transition(current, event), **values):
            LOG.warning("Image %s was %s when its worker died; it is %s again", image_id,
                        current, transition(current, event))


def _resolve_import(rt: Runtime, lease: LeaseRecord) -> None:
    task = None
    if lease.task_id:
        with rt.db.read() as session:
            task = tasks_repo.get_task(session, lease.task_id, include_deleted=True)
    if task is not None and task.status in ("pending", "processing"):
        rt.runner.recover_task(task, local=lease.host == rt.leases.host)
    image_id = lease.image_id or (task.image_id if task else None)
    if image_id:
        stores = lease.detail.get("stores") or [None]
        remove_image_data(rt, image_id, stores, lease.id)


def remove_image_data(rt: Runtime, image_id: str, store_names: list[str | None],
                      lease_id: str | None = None) -> int:
    """Remove the data of ``image_id`` in those stores that no location references,
    unless another live lease works on the image. Returns how many were removed."""
    # Leases before locations: an operation drops its lease only with (or after)
    # the commit that adds its location, so this order never misses both.
    with rt.db.read() as session:
        busy = [lease for lease in leases_repo.all_leases(session)
                if lease.image_id == image_id and lease.id != lease_id
                and lease.expires_at >= repo.utcnow()]
        keep = recovery_repo.referenced_urls(session, image_id)
    if busy:
        return 0
    removed = 0
    for name in dict.fromkeys(store_names):
        try:
            store = rt.stores.get(name)
        except GlimpseError:
            continue
        for entry in _listing(store):
            if _owner_id(entry.url) == image_id and entry.url not in keep:
                removed += _remove(store, entry.url)
    return removed


def _listing(store: Store) -> list[DataEntry]:
    try:
        return list(store.list_data())
    except NotImplementedError:
        return []
    except StoreUnavailable as exc:
        # The store is down (every sweep of an outage says so): one line, no traceback.
        LOG.warning("Could not list the data of store %s: %s", store.name, exc)
        return []
    except StoreError:
        LOG.warning("Could not list the data of store %s", store.name, exc_info=True)
        return []


def _remove(store: Store, url: str) -> int:
    try:
        store.delete(url)
    except DataNotFound:
        return 0
    except StoreError:
        LOG.exception("Could not remove %s from store %s", url, store.name)
        return 0
    LOG.info("Removed orphaned data %s from store %s", url, store.name)
    return 1


def _delete_url(rt: Runtime, url: str) -> None:
    try:
        rt.stores.for_url(url).delete(url)
    except (DataNotFound, GlimpseError):
        pass


# ---------------------------------------------------------------- data


@dataclass
class Orphan:
    store: str
    url: str
    complete: bool
    size: int | None
    age: float
    image_id: str | None
    reason: str
    known_image: bool


def find_orphans(rt: Runtime) -> list[Orphan]:
    """Data in the stores, staging and tasks work areas that nothing needs."""
    now = time.time()
    grace = rt.leases.period
    listed: list[tuple[str, Store, DataEntry]] = []
    for store in rt.stores.stores.values():
        if not store.read_only:
            listed += [("store", store, e) for e in _listing(store)]
    staging = rt.runner.staging
    listed += [("staging", staging.store, e) for e in _listing(staging.store)]
    listed += [("work", staging.work, e) for e in _listing(staging.work)]
    listed = [item for item in listed if now - item[2].modified >= grace]
    # Read the database after listing: data an operation wrote before the listing
    # is by now referenced, or covered by a live lease, or abandoned. Leases first:
    # an operation drops its lease only with (or after) the commit that references
    # its data, so no commit can slip between the two reads unseen.
    ids = {_owner_id(e.url) for _k, _s, e in listed} - {None}
    with rt.db.read() as session:
        live_images = leases_repo.live_image_ids(session)
        live_tasks = leases_repo.live_task_ids(session)
        referenced = recovery_repo.referenced_locations(session)
        states = recovery_repo.image_states(session, ids)
        running = recovery_repo.unfinished_task_ids(session, ids)
    # A location may name the data by another path than the listing does (data
    # migrated from Glance under a symlinked directory, say): data named like a
    # referenced location of its own image is kept too.
    keep = {url for _i, url in referenced} | {(i, _name(url)) for i, url in referenced}
    orphans = []
    for kind, store, entry in listed:
        owner = _owner_id(entry.url)
        reason = _why_orphaned(kind, entry, owner, keep, live_images, live_tasks, states,
                               running)
        if reason:
            orphans.append(Orphan(
                store=store.name, url=entry.url, complete=entry.complete, size=entry.size,
                age=round(now - entry.modified, 1), image_id=owner, reason=reason,
                # Staging and work areas are this node's scratch space: always ours.
                known_image=kind != "store" or owner in states))
    return orphans


def _why_orphaned(kind: str, entry: DataEntry, owner: str | None, keep: set[Any],
                  live_images: set[str], live_tasks: set[str], states: dict,
                  running: set[str]) -> str | None:
    if owner in live_images or owner in live_tasks:
        return None
    if kind == "work":
        return None if owner in running else "work file of no running task"
    if kind == "staging":
        status, deleted, _host = states.get(owner, (None, True, None)) if owner else (
            None, True, None)
        if not entry.complete:
            return "unfinished stage"
        name = entry.url.rsplit("/", 1)[-1]
        if name not in (owner, f"{owner}.measures"):
            return "import plugin output of no running import"
        if deleted or status not in ("uploading", "importing"):
            return "staged data of an image that is not waiting for an import"
        return None
    if entry.url in keep or (owner, _name(entry.url)) in keep:
        return None
    if not entry.complete:
        return "unfinished write"
    return "data no location references"


def sweep_data(rt: Runtime, everything: bool = False) -> list[Orphan]:
    """Remove orphans (of known images only, unless ``everything``); return them."""
    removed = []
    stores = {s.name: s for s in (*rt.stores.stores.values(), rt.runner.staging.store,
                                  rt.runner.staging.work)}
    for orphan in find_orphans(rt):
        if not (everything or orphan.known_image):
            LOG.warning("Data %s in store %s belongs to no image this database knows; "
                        "left alone ('glimpse doctor --fix' removes it)", orphan.url,
                        orphan.store)
            continue
        if _remove(stores[orphan.store], orphan.url):
            removed.append(orphan)
    return removed


# ---------------------------------------------------------------- doctor


@dataclass
class Report:
    expired_leases: list[dict[str, Any]] = field(default_factory=list)
    stuck_images: list[dict[str, Any]] = field(default_factory=list)
    orphaned_data: list[dict[str, Any]] = field(default_factory=list)
    missing_data: list[dict[str, Any]] = field(default_factory=list)
    fixed: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.expired_leases or self.stuck_images or self.orphaned_data
                    or self.missing_data)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "found": self.found}


def _stuck_images(rt: Runtime) -> list[dict[str, Any]]:
    """Images in a transient status that no live operation owns."""
    with rt.db.read() as session:
        images = recovery_repo.transient_images(session)
        live = leases_repo.live_image_ids(session)
        live_tasks = leases_repo.live_task_ids(session)
        stuck = []
        for image_id, status, size in images:
            if image_id in live:
                continue
            if status == "uploading" and size is not None:
                continue  # staged and waiting for its import: a client can act on it
            if status == "importing" and any(
                    t.id in live_tasks for t in tasks_repo.tasks_for_image(session, image_id)):
                continue
            stuck.append({"image_id": image_id, "status": status})
    return stuck


def _missing_data(rt: Runtime) -> list[dict[str, Any]]:
    with rt.db.read() as session:
        locations = recovery_repo.active_locations(session)
    missing = []
    for image_id, url in locations:
        try:
            store = rt.stores.for_url(url)
        except GlimpseError:
            missing.append({"image_id": image_id, "url": url, "reason": "no configured store"})
            continue
        if store.read_only:
            continue  # http: not ours to check
        try:
            store.size(url)
        except DataNotFound:
            missing.append({"image_id": image_id, "url": url, "reason": "data is missing"})
        except StoreError as exc:
            missing.append({"image_id": image_id, "url": url, "reason": str(exc)})
    return missing


def doctor(rt: Runtime, fix: bool = False) -> Report:
    """What is wrong, and with ``fix`` what was repaired. Never touches data of a
    live lease or data younger than the lease period."""
    report = Report()
    report.expired_leases = [
        {"lease": lease.id, "operation": lease.operation, "image_id": lease.image_id,
         "task_id": lease.task_id, "owner": lease.worker, "host": lease.host}
        for lease in dead_leases(rt)]
    report.stuck_images = _stuck_images(rt)
    report.orphaned_data = [asdict(o) for o in find_orphans(rt)]
    report.missing_data = _missing_data(rt)
    if fix:
        report.fixed["leases"] = len(sweep_leases(rt))
        report.fixed["images"] = _fix_stuck(rt)
        report.fixed["data"] = len(sweep_data(rt, everything=True))
    return report


def _fix_stuck(rt: Runtime) -> int:
    """Stuck images whose operation left no lease (e.g. written by an older version)."""
    fixed = 0
    for item in _stuck_images(rt):
        event = {"saving": Event.UPLOAD_FAILED, "uploading": Event.STAGE_FAILED,
                 "importing": Event.IMPORT_FAILED}[item["status"]]
        with rt.db.write() as session, session.begin():
            if tasks_repo.lock_holder(session, item["image_id"]):
                tasks_repo.release_import_lock(
                    session, item["image_id"],
                    tasks_repo.lock_holder(session, item["image_id"]) or "")
            fixed += repo.set_status(session, item["image_id"], item["status"],
                                     transition(item["status"], event))
    return fixed


# ---------------------------------------------------------------- the background sweeper


class Sweeper:
    """Runs both sweeps in a daemon thread of each API worker: leases every
    ``lease_sweep_interval``, data every ``orphan_sweep_interval`` (both at once
    on start)."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="glimpse-sweeper")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _loop(self) -> None:
        conf = self.rt.conf
        next_data = time.monotonic()
        while not self._stop.is_set():
            try:
                sweep_leases(self.rt)
                if conf.orphan_sweep_interval and time.monotonic() >= next_data:
                    sweep_data(self.rt)
                    next_data = time.monotonic() + conf.orphan_sweep_interval
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the thread
                # An outage is one line per sweep, not a traceback every interval.
                LOG.warning("Recovery sweep failed; trying again",
                            exc_info=not db_retry.is_unavailable(exc))
            self._stop.wait(conf.lease_sweep_interval)
