"""What a running import task does: glance-direct, web-download, copy-image,
and the legacy tasks-API import.

Steps, as Glance's api_image_import flow: check the import lock, get the data
(the staged file, a download into the tasks work directory, or an existing
location), run the import plugins (not for copy-image), write the data to
each target store (hashing and format inspection alongside the first write),
then finish: the image goes active, the staged and work files are removed,
the task succeeds and the lock is dropped. On failure everything this task
did is undone: its locations and their data, the image back to ``queued``
(``copy-image`` leaves the image as it was), the stores moved from
``os_glance_importing_to_stores`` to ``os_glance_failed_import``, the staged
and work files removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import httpx

from glimpse import outbound
from glimpse.context import RequestContext
from glimpse.crashpoints import crash_point
from glimpse.db import repository as repo
from glimpse.db import tasks_repo
from glimpse.db.tasks_repo import TaskRecord
from glimpse.domain import diskformat
from glimpse.domain.images import ImageRecord
from glimpse.domain.status import Event, transition
from glimpse.errors import GlimpseError, RequestEntityTooLarge
from glimpse.imports.tasks import (
    FAILED_STORES,
    IMPORTING_STORES,
    STAGE_HOST,
    STORE_PHASE,
    ImportFailed,
    Progress,
    TaskAborted,
)
from glimpse.services import signatures, storage_quota, store_acls
from glimpse.services.data import DataStream
from glimpse.stores.base import Credentials, DataNotFound, Store, StoredData, StoreError

if TYPE_CHECKING:
    from glimpse.imports.tasks import TaskRunner
    from glimpse.services.runtime import Runtime

LOG = logging.getLogger(__name__)

# Local files are read in chunks this big (hashed in parallel threads);
# downloads arrive in the HTTP client's chunks of DOWNLOAD_CHUNK.
CHUNK = 4 * 1024 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
MAX_REDIRECTS = 10
LEGACY_PURPOSE = "legacy import task"  # as uri_filter.LEGACY_IMPORT names it in messages
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=15.0)


@dataclass
class Source:
    """The data to store: a local file, or a location in one of our stores."""

    size: int | None
    path: str | None = None
    url: str | None = None


def _chunks(rt: Runtime, source: Source, creds: Credentials | None = None) -> Iterator[bytes]:
    if source.path is not None:
        with open(source.path, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                yield chunk
        return
    assert source.url is not None
    yield from rt.stores.for_url(source.url).get(source.url, creds=creds)


def _with_progress(chunks: Iterable[bytes], progress: Progress, phase: str,
                   total: int | None) -> Iterator[bytes]:
    done = 0
    progress.update(phase, 0, total, force=True)
    for chunk in chunks:
        done += len(chunk)
        progress.update(phase, done, total)
        yield chunk
    progress.update(phase, done, total, force=True)


# ---------------------------------------------------------------- image updates under the lock


def _locked(session, image_id: str, task_id: str | None) -> ImageRecord:  # noqa: ANN001
    """The image, if it still exists and (for imports) ``task_id`` holds its lock."""
    image = repo.get_image(session, image_id)
    if image is None:
        raise TaskAborted(f"Image {image_id} was deleted during the import")
    if task_id is not None and tasks_repo.lock_holder(session, image_id) != task_id:
        raise TaskAborted(f"Another import took over image {image_id}")
    return image


def merged(value: str | None, add: Iterable[str | None] = (),
           remove: Iterable[str | None] = ()) -> str:
    """A comma-separated store list with ``add`` added and ``remove`` removed (sorted)."""
    stores = {s for s in (value or "").split(",") if s}
    stores |= {s for s in add if s}
    stores -= {s for s in remove if s}
    return ",".join(sorted(stores))


def update_store_lists(session, image: ImageRecord, *,  # noqa: ANN001
                       add_importing: Iterable[str | None] = (),
                       remove_importing: Iterable[str | None] = (),
                       add_failed: Iterable[str | None] = (),
                       remove_failed: Iterable[str | None] = ()) -> None:
    """Maintain os_glance_importing_to_stores / os_glance_failed_import as Glance does:
    both are (re)written, possibly as empty strings, whenever stores are named."""
    names = [s for s in (*add_importing, *remove_importing, *add_failed, *remove_failed) if s]
    if not names:
        return
    props = image.properties
    to_set = {
        IMPORTING_STORES: merged(props.get(IMPORTING_STORES), add_importing, remove_importing),
        FAILED_STORES: merged(props.get(FAILED_STORES), add_failed, remove_failed),
    }
    to_set = {k: v for k, v in to_set.items() if props.get(k) != v}
    if to_set:
        repo.set_properties(session, image.id, to_set, ())
        image.properties.update(to_set)


# ---------------------------------------------------------------- storing


def _store(runner: TaskRunner, task: TaskRecord, image: ImageRecord, source: Source,
           store_name: str | None, *, measure: bool, activate_from: str | None,
           progress: Progress, lock: bool = True) -> str:
    """Write the data to one store and register the location; return its URL.

    ``measure``: hash and inspect the data on the way (the first data of the
    image); ``activate_from``: the status to make ``active`` afterwards."""
    rt = runner.rt
    store = rt.stores.get(store_name)
    if store.read_only:
        raise ImportFailed(f"Store {store.name} is read-only")
    with_quota = activate_from is not None  # a copy does not change what the image is
    limit, message = storage_quota.size_limit(rt, image.owner, image.id,
                                               with_quota=with_quota)
    algo = rt.conf.hashing_algorithm
    staged = _staged_measures(runner, image, source, algo) if measure else None
    inspector = (diskformat.inspector_for(image.disk_format, image.container_format)
                 if measure and not staged else None)
    hashed = measure and not staged
    # A signed image is verified on its first write (the data it will have), on
    # the requester's behalf; what can be checked before the data is, now.
    verifier = None
    if measure:
        try:
            verifier = signatures.verifier_for(rt, runner.context(task.id), image.id,
                                               image.properties)
        except GlimpseError as exc:
            raise ImportFailed(exc.message) from exc
    phase = f"{STORE_PHASE}{store.name}"
    # On the requester's behalf (multi-tenant stores use the caller's own account).
    creds = Credentials.of(runner.context(task.id))
    stream = DataStream(_with_progress(_chunks(rt, source, creds), progress, phase,
                                       source.size),
                        limit=limit, limit_error=RequestEntityTooLarge(message),
                        inspector=inspector, hash_algos=("md5", algo) if hashed else (),
                        verifier=verifier)
    backend = store.name if rt.conf.enabled_backends else None
    rt.notifier.image_event("image.prepare", image, backend=backend)
    try:
        stored = _add(store, image.id, source, stream, creds)
    except GlimpseError as exc:
        rt.notifier.upload_failed(image.id, exc)
        raise ImportFailed(exc.message) from exc
    except (StoreError, OSError) as exc:
        rt.notifier.upload_failed(image.id, exc)
        raise ImportFailed(f"Error storing image data in store {store.name}: {exc}") from exc
    crash_point("import.stored")
    try:
        # A linked file is not read: report what it holds as copied.
        progress.update(phase, stored.size, source.size, force=True)
        values: dict[str, Any] = staged or {}
        if hashed:
            try:
                virtual_size = diskformat.finish(
                    inspector, rt.conf.image_format.require_image_format_match)
            except GlimpseError as exc:
                raise ImportFailed(exc.message) from exc
            values = {"size": stream.size, "checksum": stream.hexdigest("md5"),
                      "os_hash_algo": algo, "os_hash_value": stream.hexdigest(algo),
                      "virtual_size": virtual_size}
        with rt.db.write() as session, session.begin():
            current = _locked(session, image.id, task.id if lock else None)
            repo.add_location(session, image.id, stored.url,
                              {**stored.metadata, "store": store.name})
            if rt.conf.enabled_backends:
                update_store_lists(session, current, remove_importing=[store.name])
            status = current.status
            if activate_from is not None and current.status == activate_from:
                if with_quota and "size" in values:
                    try:
                        storage_quota.recheck(rt, session, image.owner, image.id,
                                              values["size"])
                    except GlimpseError as exc:
                        raise ImportFailed(exc.message) from exc
                event = Event.IMPORT_DONE if activate_from == "importing" else Event.UPLOAD_DONE
                status = transition(activate_from, event)
                if not repo.set_status(session, image.id, activate_from, status, **values):
                    raise TaskAborted(f"Image {image.id} changed status during the import")
            elif values:
                repo.update_image(session, image.id, values)
    except BaseException:
        _delete_quietly(rt, stored.url, creds)
        raise
    store_acls.sync(rt, image.id, creds, [stored.url])
    rt.notifier.image_event("image.upload", replace(current, status=status, **values),
                            backend=backend)
    return stored.url


# What measuring the data gives an image.
_MEASURES = ("size", "checksum", "os_hash_algo", "os_hash_value", "virtual_size")


def _staged_measures(runner: TaskRunner, image: ImageRecord, source: Source,
                     algo: str) -> dict[str, Any] | None:
    """What the stage measured (glance-direct), when ``source`` is still exactly the
    staged data it measured: same file, unchanged, same disk_format and algorithm."""
    if source.path is None or source.path != runner.staging.path(image.id):
        return None
    measures = runner.staging.measures(image.id)
    if (measures is None or measures.get("disk_format") != image.disk_format
            or measures.get("container_format", image.container_format)
            != image.container_format
            or measures.get("os_hash_algo") != algo
            or not all(key in measures for key in _MEASURES)):
        return None
    return {key: measures[key] for key in _MEASURES}


def _add(store: Store, image_id: str, source: Source, stream: DataStream,
         creds: Credentials | None = None) -> StoredData:
    """Put the data into ``store``. A local file (staged upload, download, plugin
    output) is linked when the store can do that, so it is not copied: it is then
    read only if it must be measured (hashes, format, signature: still a single
    pass)."""
    linked = store.add_file(image_id, source.path) if source.path is not None else None
    if linked is None:
        stored = store.add(image_id, stream, creds)
        try:
            stream.verify()  # a store that stopped at the expected size
        except BaseException:
            _delete_quietly_from(store, stored.url, creds)
            raise
        return stored
    try:
        if stream.measures:
            stream.consume()
        else:
            stream.count(linked.size)
    except BaseException:
        _delete_quietly_from(store, linked.url, creds)
        raise
    return linked


def _delete_quietly(rt: Runtime, url: str, creds: Credentials | None = None) -> None:
    try:
        store = rt.stores.for_url(url)
    except GlimpseError:
        return
    _delete_quietly_from(store, url, creds)


def _delete_quietly_from(store: Store, url: str, creds: Credentials | None = None) -> None:
    try:
        store.delete(url, creds)
    except (DataNotFound, GlimpseError):
        pass
    except StoreError:
        LOG.exception("Could not remove image data at %s", url)


# ---------------------------------------------------------------- web-download


def _validation(req: dict[str, Any]) -> dict[str, str] | None:
    data = req.get("method", {}).get("validation_data") or req.get("validation_data")
    return data or None


def _check_uri(rt: Runtime, url: str, purpose: str) -> None:
    from glimpse.domain.uri_filter import check_uri

    try:
        check_uri(rt.conf, url, purpose)
    except GlimpseError as exc:
        raise ImportFailed(exc.message) from exc


def _refused(url: str, exc: outbound.DestinationRefused, purpose: str) -> ImportFailed:
    from glimpse.domain.uri_filter import refuse

    return ImportFailed(refuse(url, exc.reason, purpose).message)


def download(runner: TaskRunner, task: TaskRecord, image: ImageRecord, uri: str,
             validation: dict[str, str] | None, progress: Progress,
             purpose: str = "web-download") -> Source:
    """Fetch ``uri`` into the task's work file, following redirects by hand so
    that every hop passes the URI filter; stop at the size cap and the quota."""
    rt = runner.rt
    limit, message = storage_quota.size_limit(rt, image.owner, image.id)
    inspector = diskformat.inspector_for(image.disk_format, image.container_format)
    algo = validation["os_hash_algo"] if validation else None
    url = uri
    expected: int | None = None
    stored_size = 0
    progress.update("download", 0, None, force=True)
    try:
        # Every connection the client opens is to an address it resolved and
        # checked itself (glimpse.outbound), on each redirect hop too.
        with outbound.client(rt.conf, follow_redirects=False,
                             timeout=DOWNLOAD_TIMEOUT) as client:
            for _hop in range(MAX_REDIRECTS + 1):
                _check_uri(rt, url, purpose)
                with client.stream("GET", url) as resp:
                    location = resp.headers.get("location")
                    if resp.is_redirect and location:
                        url = str(resp.url.join(location))
                        continue
                    if resp.status_code != 200:
                        raise ImportFailed(f"Downloading {url} failed: the server answered "
                                           f"{resp.status_code} {resp.reason_phrase}")
                    length = resp.headers.get("content-length")
                    expected = int(length) if length and length.isdigit() else None
                    if expected is not None and expected > limit:
                        raise ImportFailed(message)
                    chunks = _with_progress(resp.iter_bytes(DOWNLOAD_CHUNK), progress,
                                            "download", expected)
                    stream = DataStream(chunks, limit=limit, limit_error=ImportFailed(message),
                                        inspector=inspector, hash_algos=[algo] if algo else [])
                    stored_size = runner.staging.work.add(task.id, stream).size
                    break
            else:
                raise ImportFailed(f"Downloading {uri} failed: more than {MAX_REDIRECTS} "
                                   "redirects")
    except outbound.DestinationRefused as exc:
        raise _refused(url, exc, purpose) from None
    except httpx.HTTPError as exc:
        raise ImportFailed(f"Downloading {url} failed: {exc}") from exc
    except StoreError as exc:
        raise ImportFailed(f"Could not write the download to the work directory: {exc}") from exc
    if expected is not None and stored_size != expected:
        raise ImportFailed(f"Task {task.id} failed because downloaded data size {stored_size} "
                           f"is different from expected {expected}")
    try:
        diskformat.finish(inspector, rt.conf.image_format.require_image_format_match)
    except GlimpseError as exc:
        raise ImportFailed(exc.message) from exc
    if algo is not None:
        assert validation is not None
        digest = stream.hexdigest(algo)
        if digest != validation["os_hash_value"].lower():
            raise ImportFailed(f"The downloaded data does not match the validation data: its "
                               f"{algo} hash is {digest}")
    return Source(size=stored_size, path=runner.staging.work_path(task.id))


# ---------------------------------------------------------------- plugins


def _run_plugins(runner: TaskRunner, task: TaskRecord, image: ImageRecord,
                 source: Source) -> tuple[Source, ImageRecord]:
    from glimpse.imports.plugins import build_pipeline
    from glimpse.imports.plugins.base import ImportData

    assert source.path is not None
    data = ImportData(path=source.path, disk_format=image.disk_format,
                      container_format=image.container_format,
                      properties=dict(image.properties), roles=task.roles, image_id=image.id)
    try:
        result = build_pipeline(runner.rt.conf).run(data)
    except (ImportFailed, TaskAborted):
        raise
    except GlimpseError as exc:
        raise ImportFailed(exc.message) from exc
    except Exception as exc:
        raise ImportFailed(f"Import plugin failed: {exc}") from exc
    if result.path != source.path:
        source = Source(size=os.path.getsize(result.path), path=result.path)
    core = {k: v for k, v in (("disk_format", result.disk_format),
                              ("container_format", result.container_format))
            if v != getattr(image, k)}
    # Reserved bookkeeping properties stay the import's business.
    old = {k: v for k, v in image.properties.items() if not k.startswith("os_glance")}
    new = {k: v for k, v in result.properties.items() if not k.startswith("os_glance")}
    to_set = {k: v for k, v in new.items() if old.get(k) != v}
    removed = set(old) - set(new)
    if core or to_set or removed:
        with runner.rt.db.write() as session, session.begin():
            _locked(session, image.id, task.id)
            if core:
                repo.update_image(session, image.id, core)
            repo.set_properties(session, image.id, to_set, removed)
            updated = repo.get_image(session, image.id)
        assert updated is not None
        image = updated
    return source, image


# ---------------------------------------------------------------- api_image_import


def run_api_import(runner: TaskRunner, task: TaskRecord, progress: Progress) -> None:
    rt = runner.rt
    image_id = task.image_id or (task.input or {}).get("image_id")
    if not image_id:
        raise ImportFailed("Missing required 'image_id' field")
    req = (task.input or {}).get("import_req") or {}
    method = (req.get("method") or {}).get("name")
    stores: list[str | None] = list((task.input or {}).get("backend") or [None])
    must_all = req.get("all_stores_must_succeed", True)
    copy = method == "copy-image"
    added: list[str] = []
    attempted: list[str | None] = []
    failed: list[str | None] = []
    work: list[str] = []
    try:
        with rt.db.read() as session:
            image = _locked(session, image_id, task.id)
        if method == "glance-direct":
            path = runner.staging.path(image_id)
            if not os.path.isfile(path):
                raise ImportFailed(f"The staged data of image {image_id} is not on this "
                                   "worker; stage the data again")
            source = Source(size=os.path.getsize(path), path=path)
        elif method == "web-download":
            source = download(runner, task, image, req["method"].get("uri") or "",
                              _validation(req), progress)
            work.append(source.path or "")
        elif copy:
            if not image.locations:
                raise ImportFailed(f"Image {image_id} has no data to copy")
            url = image.locations[0]["url"]
            try:
                size = rt.stores.for_url(url).size(
                    url, Credentials.of(runner.context(task.id)))
            except (StoreError, GlimpseError) as exc:
                raise ImportFailed(f"The data of image {image_id} cannot be read: {exc}") from exc
            source = Source(size=size, url=url)
        else:
            raise ImportFailed(f"Unknown import method {method}")
        if not copy:
            original = source.path
            source, image = _run_plugins(runner, task, image, source)
            if source.path != original:
                work.append(source.path or "")
        measured = copy
        for name in stores:
            # With all_stores_must_succeed the image goes active at the very end,
            # together with the task's success and the lock's release.
            activate = not copy and not must_all
            attempted.append(name)
            try:
                added.append(_store(runner, task, image, source, name, measure=not measured,
                                    activate_from="importing" if activate else None,
                                    progress=progress))
                measured = True
            except TaskAborted:
                raise
            except Exception as exc:
                failed.append(name)
                if must_all:
                    raise ImportFailed(f"Import to store {name or 'default'} failed: "
                                       f"{exc}") from exc
                LOG.warning("Task %s: import of image %s to store %s failed (%s); "
                            "all_stores_must_succeed is false, going on", task.id, image_id,
                            name, exc)
                with rt.db.write() as session, session.begin():
                    current = _locked(session, image_id, task.id)
                    update_store_lists(session, current, remove_importing=[name],
                                       add_failed=[name])
        with rt.db.write() as session, session.begin():
            current = _locked(session, image_id, task.id)
            if not copy and current.status == "importing" and added:
                current.status = transition("importing", Event.IMPORT_DONE)
                repo.set_status(session, image_id, "importing", current.status)
            elif not copy and current.status != "active":
                raise ImportFailed("None of the uploads finished!")
            if STAGE_HOST in current.properties:
                repo.set_properties(session, image_id, {}, [STAGE_HOST])
            tasks_repo.release_import_lock(session, image_id, task.id)
            # The message keeps the last progress ("Copied N MiB"), as in Glance.
            tasks_repo.update_task(session, task.id, {
                "status": "success", "result": {"image_id": image_id},
                "expires_at": _expiry(rt)}, expected_status="processing")
        crash_point("import.committed")
        rt.notifier.image_event("image.update", current, touched=True)
        if method == "glance-direct":
            runner.staging.remove(image_id)
    except TaskAborted:
        if not runner.stopping.is_set():
            _after_abort(runner, task, image_id, method)
        # Stopping: the task keeps its lock and lease; once the lease expires any
        # node (this one after a restart, at once) reverts it as an interrupted task.
        raise
    except BaseException as exc:
        unattempted = [s for s in stores if s not in attempted]
        if isinstance(exc, ImportFailed) and not failed and attempted:
            failed.append(attempted[-1])
        _revert(runner, task, image_id, method, stores, added, [*failed, *unattempted])
        raise
    finally:
        for path in work:
            if path and path != runner.staging.path(image_id):
                _unlink(path)
        runner.staging.remove_work(task.id)


def _expiry(rt: Runtime):  # noqa: ANN202
    from glimpse.imports.tasks import expiry

    return expiry(rt)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _after_abort(runner: TaskRunner, task: TaskRecord, image_id: str, method: str | None,
                 ) -> None:
    """Lock lost or image gone: leave the image alone; drop our lock if still ours."""
    with runner.rt.db.write() as session, session.begin():
        image = repo.get_image(session, image_id)
        tasks_repo.release_import_lock(session, image_id, task.id)
    if image is None and method == "glance-direct":
        runner.staging.remove(image_id)


def _revert(runner: TaskRunner, task: TaskRecord, image_id: str, method: str | None,
            stores: list[str | None], added: list[str], failed: list[str | None]) -> None:
    rt = runner.rt
    copy = method == "copy-image"
    to_delete: list[str] = []
    try:
        with rt.db.write() as session, session.begin():
            image = repo.get_image(session, image_id)
            if image is None or tasks_repo.lock_holder(session, image_id) != task.id:
                return
            for loc in image.locations:
                if loc["url"] in added:
                    repo.set_location_status(session, image_id, "deleted", loc["id"])
                    to_delete.append(loc["url"])
            if not copy and image.status == "importing":
                cleared: dict[str, Any] = {}
                if len(to_delete) == len(image.locations):
                    cleared = {"size": None, "checksum": None, "os_hash_algo": None,
                               "os_hash_value": None, "virtual_size": None}
                repo.set_status(session, image_id, "importing",
                                transition("importing", Event.IMPORT_FAILED), **cleared)
            if rt.conf.enabled_backends:
                update_store_lists(session, image, remove_importing=stores, add_failed=failed)
            if method == "glance-direct" and STAGE_HOST in image.properties:
                repo.set_properties(session, image_id, {}, [STAGE_HOST])
            tasks_repo.release_import_lock(session, image_id, task.id)
    except Exception:  # noqa: BLE001 - never hide the task's own failure
        LOG.exception("Could not revert image %s after task %s failed", image_id, task.id)
    for url in to_delete:
        _delete_quietly(rt, url, Credentials.of(runner.context(task.id)))
    if method == "glance-direct":
        runner.staging.remove(image_id)


def revert_interrupted_import(runner: TaskRunner, task: TaskRecord, local: bool = True,
                              ) -> None:
    """A worker died in the middle of this import: make the image retryable.

    glance-direct with the staged data still here goes back to ``uploading``
    (import again); anything else goes back to ``queued`` (stage or import again).
    Not ``local`` (another node recovers a dead node's task): the staged data is
    out of reach, so the image goes back to ``queued``."""
    rt = runner.rt
    image_id = task.image_id or ""
    req = (task.input or {}).get("import_req") or {}
    method = (req.get("method") or {}).get("name")
    stores = list((task.input or {}).get("backend") or [None])
    staged = local and method == "glance-direct" and runner.staging.has(image_id)
    to_delete: list[str] = []
    with rt.db.write() as session, session.begin():
        image = repo.get_image(session, image_id)
        if image is None or tasks_repo.lock_holder(session, image_id) != task.id:
            return
        with_data = {loc["metadata"].get("store") for loc in image.locations}
        if method != "copy-image" and image.status == "importing":
            for loc in image.locations:
                repo.set_location_status(session, image_id, "deleted", loc["id"])
                to_delete.append(loc["url"])
            with_data = set()
            cleared: dict[str, Any] = {"checksum": None, "os_hash_algo": None,
                                       "os_hash_value": None, "virtual_size": None}
            if not staged:
                cleared["size"] = None
            event = Event.IMPORT_INTERRUPTED if staged else Event.IMPORT_FAILED
            repo.set_status(session, image_id, "importing", transition("importing", event),
                            **cleared)
            if not staged and STAGE_HOST in image.properties:
                repo.set_properties(session, image_id, {}, [STAGE_HOST])
        if rt.conf.enabled_backends:
            update_store_lists(session, image, remove_importing=stores,
                               add_failed=[s for s in stores if s not in with_data])
        tasks_repo.release_import_lock(session, image_id, task.id)
    for url in to_delete:
        _delete_quietly(rt, url)
    if method == "glance-direct" and local:
        if staged:
            runner.staging.remove_derived(image_id)
        else:
            runner.staging.remove(image_id)


# ---------------------------------------------------------------- legacy tasks API import


def _task_context(task: TaskRecord) -> RequestContext:
    return RequestContext(user_id=task.user_id, project_id=task.owner, roles=task.roles,
                          is_admin="admin" in task.roles)


def _validate_location_uri(uri: Any) -> str:
    from glimpse.domain.uri_filter import check_legacy_location

    try:
        return check_legacy_location(uri)
    except GlimpseError as exc:
        raise ImportFailed(exc.message) from None


def run_legacy_import(runner: TaskRunner, task: TaskRecord, progress: Progress) -> None:
    """The tasks API 'import' task: create an image from image_properties and
    fill it from import_from (http/https only)."""
    from glimpse.services import images as image_svc

    rt = runner.rt
    task_input = task.input if isinstance(task.input, dict) else {}
    for key in ("import_from", "import_from_format", "image_properties"):
        if key not in task_input:
            raise ImportFailed(f"Input does not contain '{key}' field")
    uri = _validate_location_uri(task_input["import_from"])
    props = dict(task_input["image_properties"] or {})
    if not props:
        props = {"disk_format": "qcow2", "container_format": "bare"}
    try:
        image = image_svc.create_image(rt, _task_context(task), props)
    except GlimpseError as exc:
        raise ImportFailed(exc.message) from exc
    with rt.db.write() as session, session.begin():
        tasks_repo.update_task(session, task.id, {"image_id": image.id})
        if not repo.set_status(session, image.id, "queued",
                               transition("queued", Event.UPLOAD_START)):
            raise ImportFailed(f"Image {image.id} changed before its data was imported")
    task = _replace_image_id(task, image.id)
    try:
        source = download(runner, task, image, uri, None, progress, LEGACY_PURPOSE)
        _store(runner, task, image, source, None, measure=True, activate_from="saving",
               progress=progress, lock=False)
        runner.succeed(task.id, {"image_id": image.id})
    except BaseException:
        revert_legacy_import(runner, task)
        raise


def _replace_image_id(task: TaskRecord, image_id: str) -> TaskRecord:
    return replace(task, image_id=image_id)


def revert_legacy_import(runner: TaskRunner, task: TaskRecord) -> None:
    """Glance deletes the image a failed import task created."""
    if not task.image_id:
        return
    rt = runner.rt
    with rt.db.write() as session, session.begin():
        image = repo.get_image(session, task.image_id)
        if image is None or image.status == "active":
            return
        if not repo.mark_deleted(session, image.id, image.status,
                                 transition(image.status, Event.DELETE)):
            return
        repo.set_location_status(session, image.id, "deleted")
    for loc in image.locations:
        _delete_quietly(rt, loc["url"])

