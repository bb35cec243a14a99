"""Image import use cases: stage (PUT /stage) and import (POST /import).

``import_image`` checks everything Glance checks, in Glance's order, then in
one transaction creates the task, takes the image's import lock (the
``os_glance_import_task`` property, a compare-and-set), moves the image to
``importing`` and records the target stores; the work itself runs in this
worker's task runner (glimpse.imports.tasks).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from glimpse.context import RequestContext
from glimpse.crashpoints import crash_point
from glimpse.db import repository as repo
from glimpse.db import tasks_repo
from glimpse.db.repository import utcnow
from glimpse.db.tasks_repo import IMPORT_LOCK, TaskRecord
from glimpse.domain import diskformat
from glimpse.domain.images import ImageRecord
from glimpse.domain.status import Event, transition
from glimpse.errors import (
    BadRequest,
    Conflict,
    GlimpseError,
    Gone,
    NotFound,
    RequestEntityTooLarge,
)
from glimpse.imports import staging as staging_mod
from glimpse.imports.methods import merged, update_store_lists
from glimpse.imports.tasks import FAILED_STORES, IMPORTING_STORES, STAGE_HOST, expiry
from glimpse.services import storage_quota
from glimpse.services.data import DataStream
from glimpse.services.images import enforce_on_image, load_visible, require_change
from glimpse.services.leases import STAGE
from glimpse.services.runtime import Runtime
from glimpse.services.store_errors import http_error
from glimpse.stores.base import StoreError, StoreFull

LOG = logging.getLogger(__name__)

GLANCE_DIRECT, WEB_DOWNLOAD, COPY_IMAGE = "glance-direct", "web-download", "copy-image"


def self_url(rt: Runtime) -> str | None:
    """The URL other workers reach this one at (recorded as the stage host)."""
    return staging_mod.self_url(rt.conf)


# ---------------------------------------------------------------- stage


def stage(rt: Runtime, ctx: RequestContext, image_id: str, chunks: Iterable[bytes]) -> None:
    if GLANCE_DIRECT not in rt.conf.enabled_import_methods:
        raise NotFound("'glance-direct' method is not available at this site.")
    staging = rt.runner.staging
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "modify_image")
        if image.status != "queued" or not repo.set_status(
                session, image_id, "queued", transition("queued", Event.STAGE_START)):
            raise Conflict(f"Image status transition from {image.status} to uploading is "
                           "not allowed")
        lease = rt.leases.acquire(session, STAGE, image_id=image_id)
    rt.leases.held(lease)
    crash_point("stage.started")
    limit, message = storage_quota.size_limit(rt, image.owner, image_id, wording="stage")
    try:
        # The digests are taken now, while the data streams in (in parallel with
        # the write), and kept beside the staged file for the import.
        inspector = diskformat.inspector_for(image.disk_format, image.container_format)
        algo = rt.conf.hashing_algorithm
        stream = DataStream(chunks, limit=limit, limit_error=RequestEntityTooLarge(message),
                            inspector=inspector, hash_algos=("md5", algo))
        staging.store.add(image_id, stream)
        virtual_size = diskformat.finish(inspector,
                                         rt.conf.image_format.require_image_format_match)
        staging.save_measures(image_id, {
            "disk_format": image.disk_format, "container_format": image.container_format,
            "size": stream.size,
            "checksum": stream.hexdigest("md5"), "os_hash_algo": algo,
            "os_hash_value": stream.hexdigest(algo), "virtual_size": virtual_size})
        crash_point("stage.stored")
        with rt.db.write() as session, session.begin():
            storage_quota.recheck(rt, session, image.owner, image_id, stream.size)
            if not repo.set_status(session, image_id, "uploading",
                                   transition("uploading", Event.STAGE_DONE), size=stream.size):
                raise Gone(f"Image {image_id} could not be found after upload. The image may "
                           "have been deleted during the upload.")
            url = self_url(rt)
            if url:
                repo.set_properties(session, image_id, {STAGE_HOST: url}, ())
            rt.leases.release(session, lease)
        crash_point("stage.committed")
        rt.notifier.image_event("image.update", image, status="uploading", size=stream.size,
                                touched=True)
    except BaseException as exc:
        _unstage(rt, image_id, lease)
        if isinstance(exc, StoreFull):
            raise RequestEntityTooLarge(f"Image storage media is full: {exc}") from exc
        if isinstance(exc, StoreError):
            raise http_error(exc, "Error staging image data") from exc
        raise


def _unstage(rt: Runtime, image_id: str, lease: str) -> None:
    rt.runner.staging.remove(image_id)
    try:
        with rt.db.write() as session, session.begin():
            repo.set_status(session, image_id, "uploading",
                            transition("uploading", Event.STAGE_FAILED), size=None)
            rt.leases.release(session, lease)
    except Exception:  # noqa: BLE001 - never mask the original error
        LOG.exception("Could not reset image %s to queued after a failed stage", image_id)
        rt.leases.forget(lease)  # it expires; the recovery sweep finishes the job


# ---------------------------------------------------------------- import


@dataclass
class ImportOutcome:
    """What the API answers: 202 (task_id None when there was nothing to do), or
    the worker holding the staged data the request must be proxied to."""

    task_id: str | None = None
    proxy_to: str | None = None


def validate_import_body(rt: Runtime, body: Any) -> dict[str, Any]:
    """Glance's checks of an import body (400s), before the image is looked up."""
    method = body.get("method") if isinstance(body, dict) else None
    if method is None:
        raise BadRequest("Import request requires a 'method' field.")
    name = method.get("name") if isinstance(method, dict) else None
    if name is None:
        raise BadRequest("Import request requires a 'name' field.")
    if name not in rt.conf.enabled_import_methods:
        raise BadRequest(f"Unknown import method name '{name}'.")
    if not isinstance(body.get("all_stores_must_succeed", True), bool):
        raise BadRequest("'all_stores_must_succeed' must be boolean value only")
    if not isinstance(body.get("all_stores", False), bool):
        raise BadRequest("'all_stores' must be boolean value only")
    return body


def _check_import_status(image: ImageRecord, method: str) -> None:
    if image.status == "active" and method != COPY_IMAGE:
        raise Conflict("Image with status active cannot be target for import")
    if image.status != "active" and method == COPY_IMAGE:
        raise Conflict("Only images with status active can be targeted for copying")
    if image.status != "queued" and method == WEB_DOWNLOAD:
        raise Conflict(f"Image needs to be in 'queued' state to use '{method}' method")
    if image.status != "uploading" and method == GLANCE_DIRECT:
        raise Conflict("Image needs to be staged before 'glance-direct' method can be used")
    if not image.container_format:
        raise Conflict("'container_format' needs to be set before import")
    if not image.disk_format:
        raise Conflict("'disk_format' needs to be set before import")


def _target_stores(rt: Runtime, body: dict[str, Any], header: str | None) -> list[str | None]:
    if not rt.conf.enabled_backends:
        return [None]
    if body.get("all_stores", False):
        if "stores" in body or header is not None:
            raise BadRequest("All_stores parameter can't be used with x-image-meta-store "
                             "header or stores parameter")
        stores = rt.stores.writable_names()
    elif "stores" in body:
        if header is not None:
            raise BadRequest("Stores parameter and x-image-meta-store header can't be both "
                             "specified")
        stores = body["stores"]
        if not isinstance(stores, list) or not all(isinstance(s, str) for s in stores):
            raise BadRequest("'stores' must be a list of store identifiers")
    else:
        stores = [header or rt.stores.default_name]
    for name in stores:
        if name not in rt.stores.stores:
            raise Conflict(f"Unknown scheme '{name}' found in URI")
    return list(dict.fromkeys(stores))


def _validation_data(body: dict[str, Any], method: str) -> dict[str, str] | None:
    data = body["method"].get("validation_data", body.get("validation_data"))
    if data is None:
        return None
    if method != WEB_DOWNLOAD:
        raise BadRequest("validation_data is only accepted by the web-download import method")
    if (not isinstance(data, dict) or set(data) - {"os_hash_algo", "os_hash_value"}
            or not isinstance(data.get("os_hash_algo"), str)
            or not isinstance(data.get("os_hash_value"), str)):
        raise BadRequest("validation_data must be an object with the strings os_hash_algo "
                         "and os_hash_value")
    algo, value = data["os_hash_algo"], data["os_hash_value"]
    if algo not in hashlib.algorithms_available or algo.startswith("shake"):
        raise BadRequest(f"os_hash_algo {algo} is not a supported hash algorithm")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadRequest(f"os_hash_value ({value}) is not a valid hexadecimal value") from None
    want = hashlib.new(algo).digest_size
    if len(raw) != want:
        raise BadRequest(f"os_hash_value ({value}) is not the correct size for {algo} "
                         f"(should be {want} bytes)")
    return data


def _check_uri(rt: Runtime, uri: Any) -> None:
    from glimpse.outbound import check_destination

    if not isinstance(uri, str) or not uri:
        raise BadRequest(f"URI for web-download does not pass filtering: {uri}")
    try:
        # The URI filter, then the addresses its host resolves to (no loopback,
        # no link-local unless allowed_hosts names the host).
        check_destination(rt.conf, uri)
    except GlimpseError as exc:
        # The filter's message is Glance's ("URI for web-download does not pass
        # filtering: <uri>") followed by the reason.
        raise BadRequest(exc.message) from None


def import_image(rt: Runtime, ctx: RequestContext, image_id: str, body: Any,
                 store_header: str | None = None) -> ImportOutcome:
    body = validate_import_body(rt, body)
    method = body["method"]["name"]
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
    _check_import_status(image, method)
    if method == COPY_IMAGE:
        enforce_on_image(rt, ctx, image, is_member, "copy_image")
    else:
        require_change(rt, ctx, image, is_member, "modify_image")
    if IMPORT_LOCK in image.properties:
        with rt.db.read() as session:
            _lock_is_stale(rt, session, image)  # 409 now if the lock is valid
    stores = _target_stores(rt, body, store_header)
    if method == COPY_IMAGE:
        present = {loc["metadata"].get("store") for loc in image.locations}
        if stores == [None]:
            # One store only: the data is already in the only place it could go.
            raise BadRequest(f"Image is already present at store '{rt.stores.default_name}'")
        if body.get("all_stores", False):
            stores = [s for s in stores if s not in present]
            if not stores:
                LOG.info("Image %s is already in every store; nothing to copy", image_id)
                return ImportOutcome()
        else:
            for name in stores:
                if name in present:
                    raise BadRequest(f"Image is already present at store '{name}'")
    if not body.get("all_stores_must_succeed", True) and not rt.conf.enabled_backends:
        raise BadRequest("All_stores_must_succeed can only be set with enabled_backends "
                         f"{body['method'].get('uri')}")
    stage_host = staging_mod.remote_stage_host(rt.conf, image.properties)
    if method == GLANCE_DIRECT and stage_host is not None:
        return ImportOutcome(proxy_to=stage_host)
    if method == WEB_DOWNLOAD:
        _check_uri(rt, body["method"].get("uri"))
    _validation_data(body, method)
    task = _start(rt, ctx, image, body, method, stores)
    if method != COPY_IMAGE:  # the image is importing now (copy-image keeps it active)
        rt.notifier.image_event("image.update", image, touched=True,
                                status=transition(image.status, Event.IMPORT_START))
    rt.notifier.task_started(task)
    rt.runner.submit(task.id, ctx)
    return ImportOutcome(task_id=task.id)


def _lock_is_stale(rt: Runtime, session, image: ImageRecord) -> TaskRecord | None:  # noqa: ANN001
    """Glance's rule: the lock of a missing task, or of one whose last update
    is older than the timeout (doubled while pending), may be taken over.
    Glimpse also takes over at once a lock left by a finished task.

    Returns the task the lock would be taken from (None if it is gone);
    raises 409 when the lock is valid."""
    holder = image.properties[IMPORT_LOCK]
    task = tasks_repo.get_task(session, holder, include_deleted=True)
    if task is None:
        LOG.warning("Image %s has non-existent import task %s; considering it stale",
                    image.id, holder)
        return None
    timeout = timedelta(seconds=rt.conf.import_lock_timeout)
    if task.status == "pending":
        timeout *= 2
    age = utcnow() - task.updated_at
    if task.status in ("success", "failure") or age >= timeout:
        return task
    LOG.warning("Image %s has active import task %s in status %s; the lock remains valid "
                "for %d more seconds", image.id, task.id, task.status,
                (timeout - age).total_seconds())
    raise Conflict("Image has active task")


def _start(rt: Runtime, ctx: RequestContext, image: ImageRecord, body: dict[str, Any],
           method: str, stores: list[str | None]) -> TaskRecord:
    task_id = str(uuid.uuid4())
    with rt.db.write() as session, session.begin():
        # The image row locked first: two imports of one image take turns here, and
        # the second sees the first's lock (on MariaDB two inserts of the lock row
        # racing each other could deadlock instead of one losing cleanly).
        current = repo.get_image(session, image.id, for_update=True)
        if current is None:
            raise NotFound(f"No image found with ID {image.id}")
        if current.status != image.status:
            raise Conflict(f"Image {image.id} changed status to {current.status} during the "
                           "request; retry")
        stolen: TaskRecord | None = None
        holder = current.properties.get(IMPORT_LOCK)
        if holder is not None:
            stolen = _lock_is_stale(rt, session, current)
            if stolen is not None and stolen.status in ("pending", "processing"):
                tasks_repo.update_task(session, stolen.id, {
                    "status": "failure", "message": "Expired lock preempted",
                    "expires_at": expiry(rt)}, expected_status=("pending", "processing"))
            if not tasks_repo.release_import_lock(session, image.id, holder):
                raise Conflict("Image has active task")
            del current.properties[IMPORT_LOCK]
            LOG.warning("Image %s had a stale import task %s; its lock was taken over",
                        image.id, holder)
        if not tasks_repo.acquire_import_lock(session, image.id, task_id):
            raise Conflict(f"New operation on image '{image.id}' is not permitted as prior "
                           "operation is still in progress")
        task = tasks_repo.create_task(session, {
            "id": task_id, "type": "api_image_import", "status": "pending",
            "owner": ctx.owner, "image_id": image.id, "request_id": ctx.request_id,
            "user_id": ctx.user_id, "roles": ctx.roles,
            "input": {"image_id": image.id, "import_req": body, "backend": stores},
            **rt.runner.task_values()})
        rt.runner.lease_task(session, task_id, image.id, stores)
        if stolen is not None:
            old_stores = (stolen.input or {}).get("backend") or []
            props = current.properties
            cleaned = {key: merged(props[key], remove=old_stores)
                       for key in (IMPORTING_STORES, FAILED_STORES) if key in props}
            cleaned = {k: v for k, v in cleaned.items() if v != props[k]}
            if cleaned:
                repo.set_properties(session, image.id, cleaned, ())
                props.update(cleaned)
        if method != COPY_IMAGE and not repo.set_status(
                session, image.id, current.status,
                transition(current.status, Event.IMPORT_START)):
            raise Conflict(f"Image {image.id} changed status during the request; retry")
        if rt.conf.enabled_backends:
            update_store_lists(session, current, add_importing=stores, remove_failed=stores)
    return task
