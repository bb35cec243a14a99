"""Image data use cases: upload (PUT /file) and download (GET /file).

The upload runs in a worker thread; ``chunks`` is a blocking iterator fed by
the HTTP layer, so the request body streams through hashing, format
inspection and the store with back-pressure and is never held whole.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from glimpse.context import RequestContext
from glimpse.db import repository as repo
from glimpse.domain import images as rules
from glimpse.domain.diskformat import DiskFormatInspector
from glimpse.domain.status import READABLE, Event, transition
from glimpse.errors import (
    Conflict,
    Forbidden,
    GlimpseError,
    Gone,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
)
from glimpse.services.images import enforce_on_image, load_visible, require_change
from glimpse.services.runtime import Runtime
from glimpse.stores.base import DataNotFound, StoreError, StoreFull

LOG = logging.getLogger(__name__)


class DataStream:
    """Wraps the incoming chunks: counts, hashes, inspects, and enforces limits."""

    def __init__(self, chunks: Iterable[bytes], hash_algo: str, limit: int,
                 limit_message: str, inspector: DiskFormatInspector | None):
        self._chunks = chunks
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.os_hash = hashlib.new(hash_algo)
        self.size = 0
        self._limit = limit
        self._limit_message = limit_message
        self.inspector = inspector

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self._limit:
                raise RequestEntityTooLarge(self._limit_message)
            self.md5.update(chunk)
            self.os_hash.update(chunk)
            if self.inspector is not None:
                self.inspector.feed(chunk)
            yield chunk


def upload(rt: Runtime, ctx: RequestContext, image_id: str, chunks: Iterable[bytes],
           store_name: str | None = None) -> None:
    with rt.db.write() as session, session.begin():
        image, is_member = load_visible(rt, session, ctx, image_id)
        require_change(rt, ctx, image, is_member, "upload_image")
        rules.check_required_formats(image)
        if image.status != "queued":
            raise Conflict(f"Image status transition from {image.status} to saving "
                           "is not allowed")
        store = rt.stores.get(store_name)
        if store.read_only:
            raise Forbidden(f"Store {store.name} is read-only")
        saving = transition(image.status, Event.UPLOAD_START)
        if not repo.set_status(session, image_id, image.status, saving):
            raise Conflict("Image status transition from queued to saving is not allowed")
        limit, message = _size_limit(rt, session, image.owner, image_id)
    stored = None
    try:
        # Inside the try: a bad hashing_algorithm must not leave the image 'saving'.
        inspector = DiskFormatInspector(image.disk_format)
        stream = DataStream(chunks, rt.conf.hashing_algorithm, limit, message, inspector)
        stored = store.add(image_id, stream)
        virtual_size = inspector.finish(rt.conf.image_format.require_image_format_match)
        with rt.db.write() as session, session.begin():
            done = repo.set_status(
                session, image_id, saving, transition(saving, Event.UPLOAD_DONE),
                size=stream.size, checksum=stream.md5.hexdigest(),
                os_hash_algo=rt.conf.hashing_algorithm,
                os_hash_value=stream.os_hash.hexdigest(), virtual_size=virtual_size)
            if not done:
                # Glance's answer when the image was deleted mid-upload.
                raise Gone(f"Image {image_id} could not be found after upload. The image "
                           "may have been deleted during the upload.")
            repo.add_location(session, image_id, stored.url, {"store": store.name})
    except BaseException as exc:
        _abort_upload(rt, image_id, saving, stored.url if stored else None, store)
        if isinstance(exc, StoreFull):
            raise RequestEntityTooLarge(str(exc)) from exc
        if isinstance(exc, StoreError):
            raise ServiceUnavailable(f"Error storing image data: {exc}") from exc
        raise


def _abort_upload(rt: Runtime, image_id: str, saving: str, url: str | None, store) -> None:  # noqa: ANN001
    """Put everything back: no data left behind, image queued again."""
    if url is not None:
        try:
            store.delete(url)
        except StoreError:
            LOG.exception("Could not remove data of failed upload at %s", url)
    try:
        with rt.db.write() as session, session.begin():
            repo.set_status(session, image_id, saving, transition(saving, Event.UPLOAD_FAILED))
    except Exception:  # noqa: BLE001 - never mask the original error
        LOG.exception("Could not reset image %s to queued after a failed upload", image_id)


def _size_limit(rt: Runtime, session, owner: str | None, image_id: str) -> tuple[int, str]:  # noqa: ANN001
    cap = rt.conf.image_size_cap
    limit, message = cap, f"Image exceeds the maximum image size of {cap} bytes"
    quota = rt.storage_quota
    if quota > 0 and owner is not None:
        remaining = quota - repo.storage_used(session, owner, exclude_image=image_id)
        if remaining < limit:
            limit = max(remaining, 0)
            message = (f"Denying attempt to upload image because it exceeds the quota: "
                       f"the remaining storage quota is {limit} bytes")
    return limit, message


# ---------------------------------------------------------------- download


@dataclass
class Download:
    image_id: str
    size: int
    checksum: str | None
    url: str | None              # None: no data (204)
    local_path: str | None = None

    def open(self, rt: Runtime, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        assert self.url is not None
        try:
            return rt.stores.for_url(self.url).get(self.url, offset, length)
        except DataNotFound as exc:
            raise NotFound(f"Image data for {self.image_id} is missing") from exc


def prepare_download(rt: Runtime, ctx: RequestContext, image_id: str) -> Download:
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
    enforce_on_image(rt, ctx, image, is_member, "download_image")
    if image.status == "deactivated" and not ctx.is_admin:
        raise Forbidden("The requested image has been deactivated. "
                        "Image data download is forbidden.")
    if image.status not in READABLE or not image.locations:
        return Download(image_id, 0, None, None)
    url = image.locations[0]["url"]
    try:
        store = rt.stores.for_url(url)
        size = store.size(url)
    except (DataNotFound, NotFound) as exc:
        raise NotFound(f"Image data for {image_id} is missing") from exc
    except StoreError as exc:
        raise GlimpseError(f"Could not read image data: {exc}") from exc
    return Download(image_id, size, image.checksum, url, store.local_path(url))
