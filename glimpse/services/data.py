"""Image data use cases: upload (PUT /file) and download (GET /file).

The upload runs in a worker thread; ``chunks`` is a blocking iterator fed by
the HTTP layer, so the request body streams through hashing, format
inspection and the store with back-pressure and is never held whole.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from glimpse import metrics
from glimpse.cache import FillSource
from glimpse.context import RequestContext
from glimpse.crashpoints import crash_point
from glimpse.db import repository as repo
from glimpse.domain import diskformat
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
)
from glimpse.services import storage_quota, store_acls
from glimpse.services.images import enforce_on_image, load_visible, require_change
from glimpse.services.leases import UPLOAD
from glimpse.services.runtime import Runtime
from glimpse.services.signatures import Verifier, verifier_for
from glimpse.services.store_errors import http_error
from glimpse.stores.base import Credentials, DataNotFound, StoreError, StoreFull

LOG = logging.getLogger(__name__)


# Chunks at least this big are hashed in helper threads; smaller ones are not
# worth the hand-off (hashlib keeps the GIL below 2 KiB anyway).
PARALLEL_HASH_MIN = 256 * 1024
_HASH_THREADS = 8


@functools.cache
def _hash_pool() -> ThreadPoolExecutor:
    # Shared by all streams of the process. A hash task never waits for anything,
    # so a busy pool only delays hashing, it cannot deadlock.
    return ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="glimpse-hash")


def new_hash(algo: str) -> Any:
    """A hashlib object; md5 is used as a checksum, not for security."""
    if algo == "md5":
        return hashlib.md5(usedforsecurity=False)
    return hashlib.new(algo)


class DataStream:
    """The one wrapper for incoming image data (upload, stage, web-download,
    import): counts the bytes, enforces a size limit, feeds an optional format
    inspector, computes optional digests and feeds an optional signature verifier
    (glimpse.services.signatures), while passing the chunks on. The signature is
    checked after the last chunk, before the end of the data reaches the consumer, so
    a store sees a bad signature as a failed write and keeps nothing; ``verify``
    checks it too, for a consumer that stops at the expected size.

    Each digest of a large chunk is computed in its own helper thread while the
    consumer writes that chunk (hashlib and os.write release the GIL), so md5 +
    sha512 cost the time of the slower of the two, not their sum. Hashing runs
    at most one chunk behind the consumer, which keeps memory bounded."""

    def __init__(self, chunks: Iterable[bytes], *, limit: int, limit_error: Exception,
                 inspector: DiskFormatInspector | None = None,
                 hash_algos: Iterable[str] = (), verifier: Verifier | None = None):
        self._chunks = chunks
        self._limit = limit
        self._limit_error = limit_error
        self.inspector = inspector
        self._hashers = {algo: new_hash(algo) for algo in hash_algos}
        # The verifier is one more digest, fed in order alongside the others; or, when
        # the signature's hash method is one of those digests, that digest itself.
        self.verifier = verifier
        self._updates = [h.update for h in self._hashers.values()]
        self._poll = None
        if verifier is not None:
            shared = self._hashers.get(verifier.hash_name)
            if shared is not None:
                verifier.share_digest(shared)
                self._poll = verifier.poll
            else:
                self._updates.append(verifier.update)
        self._pending: list[Future] = []
        self.size = 0

    def hexdigest(self, algo: str) -> str:
        self._settle()
        return self._hashers[algo].hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self._limit:
                raise self._limit_error
            if self.inspector is not None:
                self.inspector.feed(chunk)
            self._settle()  # the previous chunk is hashed: updates stay in order
            if self._poll is not None:
                self._poll()
            self._hash(chunk)
            yield chunk
        self.verify()

    def verify(self) -> None:
        """Finish the digests and check the signature, if there is one (raises
        SignatureVerificationFailed). Idempotent."""
        self._settle()
        if self.verifier is not None:
            self.verifier.verify()

    @property
    def measures(self) -> bool:
        """Whether the data itself must be seen (digests, format, signature), not
        just counted."""
        return bool(self._updates) or self.inspector is not None

    def consume(self) -> None:
        """Read everything, to measure data stored without being copied."""
        for _chunk in self:
            pass

    def count(self, size: int) -> None:
        """Account for ``size`` bytes stored without being read (nothing to measure)."""
        self.size += size
        if self.size > self._limit:
            raise self._limit_error

    def _hash(self, chunk: bytes) -> None:
        if len(chunk) < PARALLEL_HASH_MIN:
            for update in self._updates:
                update(chunk)
            return
        pool = _hash_pool()
        self._pending = [pool.submit(update, chunk) for update in self._updates]

    def _settle(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()


class _Active:
    """How many uploads this process is running, to wait for at shutdown."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def __enter__(self) -> None:
        with self.cond:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.count -= 1
            self.cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count == 0, timeout)


ACTIVE_UPLOADS = _Active()


def upload(rt: Runtime, ctx: RequestContext, image_id: str, chunks: Iterable[bytes],
           store_name: str | None = None) -> None:
    """Store an image's data; on any failure (the client leaving, a shutdown cutting
    it short) the image is queued again and no data is left."""
    with ACTIVE_UPLOADS:
        _upload(rt, ctx, image_id, chunks, store_name)


def _upload(rt: Runtime, ctx: RequestContext, image_id: str, chunks: Iterable[bytes],
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
        limit, message = storage_quota.size_limit(rt, image.owner, image_id, session=session)
        # Owned from here on: if this process dies, any node puts the image back.
        lease = rt.leases.acquire(session, UPLOAD, image_id=image_id,
                                  detail={"store": store.name})
    rt.leases.held(lease)
    crash_point("upload.started")
    backend = store.name if rt.conf.enabled_backends else None
    rt.notifier.upload_started(image, saving, backend)
    stored = None
    stream: DataStream | None = None
    try:
        # Inside the try: a bad hashing_algorithm must not leave the image 'saving'.
        inspector = diskformat.inspector_for(image.disk_format, image.container_format)
        algo = rt.conf.hashing_algorithm
        # A signed image: its properties are checked now, before a byte is read;
        # the certificate is fetched while the data flows.
        verifier = verifier_for(rt, ctx, image_id, image.properties)
        stream = DataStream(chunks, limit=limit, limit_error=RequestEntityTooLarge(message),
                            inspector=inspector, hash_algos=("md5", algo), verifier=verifier)
        with metrics.in_flight(metrics.UPLOADS):
            stored = store.add(image_id, stream, Credentials.of(ctx))
        stream.verify()
        virtual_size = diskformat.finish(inspector,
                                         rt.conf.image_format.require_image_format_match)
        crash_point("upload.stored")
        with rt.db.write() as session, session.begin():
            storage_quota.recheck(rt, session, image.owner, image_id, stream.size)
            done = repo.set_status(
                session, image_id, saving, transition(saving, Event.UPLOAD_DONE),
                size=stream.size, checksum=stream.hexdigest("md5"), os_hash_algo=algo,
                os_hash_value=stream.hexdigest(algo), virtual_size=virtual_size)
            if not done:
                # Glance's answer when the image was deleted mid-upload.
                raise Gone(f"Image {image_id} could not be found after upload. The image "
                           "may have been deleted during the upload.")
            repo.add_location(session, image_id, stored.url,
                              {**stored.metadata, "store": store.name})
            rt.leases.release(session, lease)
        crash_point("upload.committed")
        LOG.info("Uploaded %d bytes to image %s (store %s)", stream.size, image_id,
                 store.name)
    except BaseException as exc:
        LOG.warning("Upload to image %s aborted after %d bytes: %s", image_id,
                    stream.size if stream is not None else 0,
                    exc.__class__.__name__ + (f": {exc}" if str(exc) else ""))
        rt.notifier.upload_failed(image_id, exc)
        _abort_upload(rt, image_id, saving, stored.url if stored else None, store, lease,
                      Credentials.of(ctx))
        if isinstance(exc, StoreFull):
            raise RequestEntityTooLarge(str(exc)) from exc
        if isinstance(exc, StoreError):
            metrics.STORE_ERRORS.labels(store.name).inc()
            raise http_error(exc, "Error storing image data") from exc
        raise
    store_acls.sync(rt, image_id, Credentials.of(ctx), [stored.url])
    rt.notifier.image_uploaded(replace(
        image, status=transition(saving, Event.UPLOAD_DONE), size=stream.size,
        checksum=stream.hexdigest("md5"), virtual_size=virtual_size), backend)


def _abort_upload(rt: Runtime, image_id: str, saving: str, url: str | None, store,  # noqa: ANN001
                  lease: str, creds: Credentials | None = None) -> None:
    """Put everything back: no data left behind, image queued again, lease dropped
    (if any of it fails, the lease expires and the recovery sweep finishes it)."""
    if url is not None:
        try:
            store.delete(url, creds)
        except StoreError:
            LOG.exception("Could not remove data of failed upload at %s", url)
            rt.leases.forget(lease)
            return
    try:
        with rt.db.write() as session, session.begin():
            repo.set_status(session, image_id, saving, transition(saving, Event.UPLOAD_FAILED))
            rt.leases.release(session, lease)
    except Exception:  # noqa: BLE001 - never mask the original error
        LOG.exception("Could not reset image %s to queued after a failed upload", image_id)
        rt.leases.forget(lease)



# ---------------------------------------------------------------- download


@dataclass
class Download:
    image_id: str
    size: int
    checksum: str | None
    url: str | None              # None: no data (204)
    local_path: str | None = None
    image: Any = None            # the ImageRecord and who asks, for image.send
    receiver: tuple[str | None, str | None] = (None, None)
    #: the image's other locations, in the order they are tried when ``url`` fails
    fallbacks: list[str] = field(default_factory=list)
    #: who reads (multi-tenant stores read with the caller's token)
    creds: Credentials | None = None
    #: prepare_download found this node's cached copy (glimpse.cache)
    cached: bool = False

    def open(self, rt: Runtime, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        assert self.url is not None
        expected = length if length is not None else self.size - offset
        if rt.cache is not None:  # this node's image cache (glimpse.cache)
            chunks = rt.cache.read(self.image_id, offset, length, self._fill_source(rt),
                                   functools.partial(self._from_store, rt, offset, expected))
        else:
            chunks = self._from_store(rt, offset, expected)
        return rt.notifier.watch_send(self.image, *self.receiver, chunks, expected)

    def send_path(self, rt: Runtime) -> str | None:
        """A file holding the whole image that the HTTP server may send itself (ASGI
        pathsend), or None to stream it: this node's cached copy (a hit, counted), or
        the file store's file (a miss: the cache, if any, is filled behind it)."""
        if rt.cache is None:
            return self.local_path
        if self.cached:
            path = rt.cache.hit_path(self.image_id)
            if path is not None:
                return path
        if self.local_path is None:  # another store: streamed, and the cache filled
            return None
        source = self._fill_source(rt)
        if source is not None:
            rt.cache.fill_behind(source)
        return self.local_path

    def _from_store(self, rt: Runtime, offset: int, length: int) -> Iterator[bytes]:
        assert self.url is not None
        return _read_with_fallback(rt, self.image_id, [self.url, *self.fallbacks],
                                   offset, length, self.creds)

    def _fill_source(self, rt: Runtime) -> FillSource | None:
        image = self.image
        if image is None or image.status != "active" or not image.size:
            return None
        return FillSource(self.image_id, image.size, image.checksum,
                          functools.partial(self._from_store, rt, 0, image.size))


def _open_first(rt: Runtime, image_id: str, urls: list[str], offset: int, length: int,
                creds: Credentials | None = None) -> tuple[int, Iterator[bytes], bytes]:
    """The first of ``urls`` (from index 0) that yields data: (its index, the rest of
    its chunks, its first chunk). Each failure is logged; the last one is raised."""
    failure: StoreError | GlimpseError | None = None
    for index, url in enumerate(urls):
        try:
            chunks = iter(rt.stores.for_url(url).get(url, offset, length, creds))
            first = next(chunks, b"")
            return index, chunks, first
        except (StoreError, GlimpseError) as exc:
            failure = exc
            if index + 1 < len(urls):
                LOG.warning("Image %s: cannot read location %s (%s); trying the next "
                            "location", image_id, url, exc)
    if isinstance(failure, DataNotFound | NotFound):
        raise NotFound(f"Image data for {image_id} is missing") from failure
    if isinstance(failure, StoreError):
        raise http_error(failure, "Could not read image data") from failure
    assert failure is not None
    raise failure


def _read_with_fallback(rt: Runtime, image_id: str, urls: list[str], offset: int,
                        length: int, creds: Credentials | None = None) -> Iterator[bytes]:
    """The bytes [offset, offset + length) of the image from the first location that
    can serve them. Opening fails over before anything is sent (404/503 only when no
    location can be read); a store failing mid-stream is resumed from the next
    location at the byte reached, so the client never sees it."""
    index, chunks, first = _open_first(rt, image_id, urls, offset, length, creds)
    sent = 0

    def stream() -> Iterator[bytes]:
        nonlocal index, chunks, first, sent
        while True:
            try:
                if first:
                    sent += len(first)
                    yield first
                    first = b""
                for chunk in chunks:
                    sent += len(chunk)
                    yield chunk
                return
            except StoreError as exc:
                if sent >= length or index + 1 >= len(urls):
                    raise
                LOG.warning("Image %s: location %s failed after %d bytes (%s); resuming "
                            "from the next location", image_id, urls[index], sent, exc)
                step, chunks, first = _open_first(rt, image_id, urls[index + 1:],
                                                  offset + sent, length - sent, creds)
                index += 1 + step

    return stream()


def prepare_download(rt: Runtime, ctx: RequestContext, image_id: str) -> Download:
    from glimpse.services.locations import ordered

    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
    enforce_on_image(rt, ctx, image, is_member, "download_image")
    if image.status == "deactivated" and not ctx.is_admin:
        raise Forbidden("The requested image has been deactivated. "
                        "Image data download is forbidden.")
    if image.status not in READABLE or not image.locations:
        return Download(image_id, 0, None, None)
    urls = [loc["url"] for loc in ordered(rt, image.locations)]
    creds = Credentials.of(ctx)
    if rt.cache is not None and image.size and rt.cache.is_cached(image_id):
        # A hit asks the store nothing: the record's size is the copy's.
        return Download(image_id, image.size, image.checksum, urls[0], None, image,
                        (ctx.project_id, ctx.user_id), fallbacks=urls[1:], creds=creds,
                        cached=True)
    failure: Exception | None = None
    for index, url in enumerate(urls):
        try:
            store = rt.stores.for_url(url)
            size = store.size(url, creds)
        except (StoreError, GlimpseError) as exc:
            failure = exc
            LOG.warning("Image %s: location %s cannot be read (%s)%s", image_id, url, exc,
                        "; trying the next location" if index + 1 < len(urls) else "")
            continue
        return Download(image_id, size, image.checksum, url, store.local_path(url), image,
                        (ctx.project_id, ctx.user_id), fallbacks=urls[index + 1:], creds=creds)
    if isinstance(failure, StoreError) and not isinstance(failure, DataNotFound):
        raise http_error(failure, "Could not read image data") from failure
    raise NotFound(f"Image data for {image_id} is missing") from failure


def cache_source(rt: Runtime, image_id: str) -> FillSource | None:
    """What the prefetcher copies for a queued image (None: not an active image)."""
    from glimpse.services.locations import ordered

    with rt.db.read() as session:
        image = repo.get_image(session, image_id)
    if image is None or image.status != "active" or not image.locations or not image.size:
        return None
    urls = [loc["url"] for loc in ordered(rt, image.locations)]
    dl = Download(image_id, image.size, image.checksum, urls[0], None, image,
                  fallbacks=urls[1:])
    return dl._fill_source(rt)
