"""The ``location_import`` task behind POST /v2/images/{id}/locations (Images API 2.17).

As Glance's location_import flow, under the image's import lock:

- the location is added to the (queued) image, with the store that holds it;
- ``do_secure_hash`` with validation_data: the image goes ``importing``, its data
  is read and hashed, compared with the validation_data, then ``active``;
- ``do_secure_hash`` without it: the image goes ``active`` at once and the hashes
  are computed afterwards (``http_retries`` further attempts when reading fails;
  a failure then only logs, the image stays active);
- without ``do_secure_hash``: the validation_data given is copied as it is.

A failure puts the image back to ``queued`` without hashes. As in Glance an http
location stays on the image (the http store cannot forget one); any other is
dropped (its data, which Glimpse did not write, is left alone).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from glimpse.db import repository as repo
from glimpse.db import tasks_repo
from glimpse.db.tasks_repo import TaskRecord
from glimpse.domain.status import Event, transition
from glimpse.errors import GlimpseError
from glimpse.imports.tasks import ImportFailed, Progress, TaskAborted, expiry
from glimpse.services import signatures, store_acls
from glimpse.services.data import DataStream
from glimpse.services.signatures import Verifier
from glimpse.stores.base import Credentials, StoreError

if TYPE_CHECKING:
    from glimpse.imports.tasks import TaskRunner
    from glimpse.services.runtime import Runtime

LOG = logging.getLogger(__name__)
HASH_PHASE = "hash"


def _locked(session: Any, image_id: str, task_id: str) -> Any:
    image = repo.get_image(session, image_id)
    if image is None:
        raise TaskAborted(f"Image {image_id} was deleted")
    if tasks_repo.lock_holder(session, image_id) != task_id:
        raise TaskAborted(f"Another operation took over image {image_id}")
    return image


def _hash(
    rt: Runtime,
    url: str,
    algo: str,
    size: int,
    progress: Progress,
    verifier: Verifier | None = None,
    creds: Credentials | None = None,
) -> tuple[str, str, int]:
    """(md5, digest with ``algo``, bytes read) of the data at ``url``; a signed
    image's signature is checked in the same pass (SignatureVerificationFailed)."""

    def chunks() -> Iterator[bytes]:
        done = 0
        progress.update(HASH_PHASE, 0, size, force=True)
        for chunk in rt.stores.for_url(url).get(url, creds=creds):
            done += len(chunk)
            progress.update(HASH_PHASE, done, size)
            yield chunk

    stream = DataStream(
        chunks(),
        limit=sys.maxsize,
        limit_error=ImportFailed("too large"),
        hash_algos=("md5", algo),
        verifier=verifier,
    )
    stream.consume()
    return stream.hexdigest("md5"), stream.hexdigest(algo), stream.size


def _hash_with_retries(
    rt: Runtime,
    url: str,
    algo: str,
    size: int,
    progress: Progress,
    new_verifier: Callable[[], Verifier] | None = None,
    creds: Credentials | None = None,
) -> tuple[str, str, int]:
    attempts = rt.conf.http_retries + 1
    for attempt in range(1, attempts + 1):
        try:
            verifier = new_verifier() if new_verifier is not None else None
            return _hash(rt, url, algo, size, progress, verifier, creds)
        except (StoreError, OSError) as exc:
            LOG.warning("[%d/%d] Hash calculation of %s failed: %s", attempt, attempts, url, exc)
            if attempt == attempts:
                raise ImportFailed(f"Hash calculation failed for the data at {url}: {exc}") from exc
    raise AssertionError("unreachable")


def run(runner: TaskRunner, task: TaskRecord, progress: Progress) -> None:
    from glimpse.services.locations import check_location

    rt = runner.rt
    task_input = task.input if isinstance(task.input, dict) else {}
    image_id = task.image_id or task_input.get("image_id") or ""
    url = task_input.get("loc_url") or ""
    given: dict[str, str] = dict(task_input.get("validation_data") or {})
    algo = given.get("os_hash_algo") or rt.conf.hashing_algorithm
    secure = rt.conf.do_secure_hash
    added = False
    # The caller's credentials: a location in a store reached with them (multi-tenant
    # Swift: the caller's own account) is sized and read with them.
    creds = Credentials.of(runner.context(task.id))
    try:
        try:
            checked = check_location(rt, url, creds=creds)
            # A signed image: its properties are checked now, the certificate while
            # the data is read (and verified) before the image goes active, whatever
            # do_secure_hash says. (Glimpse; Glance's location import does not verify
            # signatures.)
            with rt.db.read() as session:
                current = _locked(session, image_id, task.id)
            new_verifier = signatures.verifier_factory(
                rt, runner.context(task.id), image_id, current.properties
            )
        except GlimpseError as exc:
            raise ImportFailed(exc.message) from exc
        signed = new_verifier is not None
        # 1. the location, and the status the image waits in while it is checked
        with rt.db.write() as session, session.begin():
            image = _locked(session, image_id, task.id)
            if image.status != "queued":
                raise ImportFailed(f"Image {image_id} is {image.status}, not queued")
            repo.add_location(session, image_id, checked.url, checked.metadata)
            added = True
            values: dict[str, Any] = {"size": checked.size}
            if (secure and given) or signed:
                status = transition("queued", Event.IMPORT_START)  # importing
                values["os_hash_algo"] = algo
            elif secure:
                status = transition("queued", Event.LOCATION_ADDED)  # active
                values["os_hash_algo"] = algo
            else:
                status = transition("queued", Event.LOCATION_ADDED)
                values.update(given)
            repo.set_status(session, image_id, "queued", status, **values)
        LOG.info(
            "Task %s: location %s added to image %s (%s)", task.id, checked.url, image_id, status
        )
        store_acls.sync(rt, image_id, creds, [checked.url])
        # 2. the hashes
        if (secure and given) or signed:
            try:
                checksum, digest, _read = _hash_with_retries(
                    rt, checked.url, algo, checked.size, progress, new_verifier, creds
                )
            except GlimpseError as exc:  # the signature does not match the data
                raise ImportFailed(exc.message) from exc
            if given and digest != given["os_hash_value"]:
                raise ImportFailed(
                    f"os_hash_value: ({given['os_hash_value']}) not matched "
                    f"with actual os_hash_value: ({digest})"
                )
            with rt.db.write() as session, session.begin():
                _locked(session, image_id, task.id)
                repo.set_status(
                    session,
                    image_id,
                    status,
                    transition(status, Event.IMPORT_DONE),
                    checksum=checksum,
                    os_hash_value=digest,
                )
        elif secure:
            try:
                checksum, digest, _read = _hash_with_retries(
                    rt, checked.url, algo, checked.size, progress, creds=creds
                )
            except ImportFailed as exc:
                # The location is added and the image active: that stands (Glance).
                LOG.warning(
                    "Task %s: %s; image %s stays active without hashes", task.id, exc, image_id
                )
            else:
                with rt.db.write() as session, session.begin():
                    _locked(session, image_id, task.id)
                    repo.update_image(
                        session,
                        image_id,
                        {"checksum": checksum, "os_hash_value": digest},
                        expected_status="active",
                    )
        _finish(rt, task, image_id)
    except TaskAborted:
        raise
    except BaseException:
        _revert(rt, task, image_id, url if added else None)
        raise
    image = None
    with rt.db.read() as session:
        image = repo.get_image(session, image_id)
    if image is not None:
        rt.notifier.image_event("image.update", image, touched=True)


def _finish(rt: Runtime, task: TaskRecord, image_id: str) -> None:
    with rt.db.write() as session, session.begin():
        tasks_repo.release_import_lock(session, image_id, task.id)
        tasks_repo.update_task(
            session,
            task.id,
            {
                "status": "success",
                "result": {"image_id": image_id},
                "message": "",
                "expires_at": expiry(rt),
            },
            expected_status="processing",
        )


def _revert(rt: Runtime, task: TaskRecord, image_id: str, url: str | None) -> None:
    """Back to queued without hashes; the location stays only if it is http."""
    try:
        with rt.db.write() as session, session.begin():
            image = repo.get_image(session, image_id)
            if image is None or tasks_repo.lock_holder(session, image_id) != task.id:
                return
            if url is not None and not url.startswith("http"):
                for loc in image.locations:
                    if loc["url"] == url:
                        repo.set_location_status(session, image_id, "deleted", loc["id"])
            cleared = {"checksum": None, "os_hash_algo": None, "os_hash_value": None}
            if image.status == "importing":
                repo.set_status(
                    session,
                    image_id,
                    "importing",
                    transition("importing", Event.IMPORT_FAILED),
                    **cleared,
                )
            elif image.status == "queued":
                repo.update_image(session, image_id, cleared, expected_status="queued")
            tasks_repo.release_import_lock(session, image_id, task.id)
    except Exception:  # noqa: BLE001 - never hide the task's own failure
        LOG.exception("Could not revert image %s after task %s failed", image_id, task.id)


def revert_interrupted(runner: TaskRunner, task: TaskRecord) -> None:
    """The worker running the task died: the image goes back as after a failure."""
    url = (task.input or {}).get("loc_url") if isinstance(task.input, dict) else None
    _revert(runner.rt, task, task.image_id or "", url)
