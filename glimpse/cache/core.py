"""The cache itself: files, fills, hits, pruning and cleaning.

Layout of ``image_cache_dir`` (Glance's): ``<id>`` committed copies,
``incomplete/<id>`` copies being written, ``invalid/<id>`` copies that did not
match the image record, ``queue/<id>`` images queued for caching.

A fill reads the store once, in a thread of its own, and writes ``incomplete/<id>``;
every client that missed the image (the first one too) follows that file as it grows.
The fill publishes its progress one chunk behind what it has written, and the last
chunk only once size and md5 match the image record: a client never receives the end
of bad data, so a corrupted back-end object ends in a broken response, not in bytes
marked good. Then the file is renamed into place (open readers keep reading the same
inode) and recorded.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from glimpse.cache import drivers
from glimpse.stores.file import FlushBehind

LOG = logging.getLogger(__name__)

READ_SIZE = 2 * 1024 * 1024  # as the file store reads
INCOMPLETE, INVALID, QUEUE = "incomplete", "invalid", "queue"


_FOREIGN = object()  # a fill run by another worker process of this node


class CacheFillError(Exception):
    """The fill a client was following failed: the response cannot be completed."""


@dataclass(frozen=True)
class FillSource:
    """What a fill needs to know about an image: the record's size and md5, and how
    to read the whole of its data from the store."""

    image_id: str
    size: int
    checksum: str | None
    read: Callable[[], Iterable[bytes]]  # opens the store: may raise at once


def _valid_id(image_id: str) -> bool:
    return bool(image_id) and os.sep not in image_id and image_id not in (".", "..") \
        and not image_id.startswith(".")


def parse_floor(value: str, total: int) -> int:
    """``image_cache_min_free_space`` in bytes: '5%' of ``total``, '2GB', or bytes."""
    from glimpse.config import parse_size

    text = str(value).strip()
    if text.endswith("%"):
        return int(total * float(text[:-1]) / 100)
    return parse_size(text)


class _Fill:
    """One copy being written; followers read it as far as ``available`` says."""

    def __init__(self, image_id: str, path: str, size: int):
        self.image_id = image_id
        self.path = path
        self.size = size
        self.cond = threading.Condition()
        self.available = 0
        self.done = False
        self.error: Exception | None = None
        self.final: str | None = None

    def publish(self, available: int) -> None:
        with self.cond:
            self.available = available
            self.cond.notify_all()

    def fail(self, error: Exception) -> None:
        with self.cond:
            self.error, self.done = error, True
            self.cond.notify_all()

    def follow(self) -> Iterator[bytes]:
        """The copy's bytes as they are confirmed, to the end (or CacheFillError)."""
        with self.cond:
            if self.error is not None:
                raise CacheFillError(str(self.error))
            # final is set under this lock together with the rename
            fd = os.open(self.final or self.path, os.O_RDONLY)
        return _FdChunks(fd, self._read(fd))

    def _read(self, fd: int) -> Iterator[bytes]:
        pos = 0
        while True:
            with self.cond:
                while pos >= self.available and not self.done:
                    self.cond.wait()
                if self.error is not None:
                    raise CacheFillError(f"Copy of image {self.image_id} failed: {self.error}")
                limit, done = self.available, self.done
            while pos < limit:
                data = os.pread(fd, min(READ_SIZE, limit - pos), pos)
                if not data:
                    raise CacheFillError(f"Copy of image {self.image_id} was truncated")
                pos += len(data)
                yield data
            if done:
                return


class _FdChunks:
    """An iterator owning a file descriptor: closed even if never iterated."""

    def __init__(self, fd: int, chunks: Iterator[bytes]):
        self._fd: int | None = fd
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class ImageCache:
    """One node's cache (one object per worker process; workers share the directory)."""

    def __init__(self, conf: Any, db: Any):
        self.conf = conf
        self.dir = os.path.abspath(conf.image_cache_dir)
        for sub in ("", INCOMPLETE, INVALID, QUEUE):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.node_url = (conf.worker_self_reference_url or conf.public_endpoint
                         or f"{socket.gethostname()}:{self.dir}")
        self.records = drivers.build(conf, db, self.dir, self.node_url)
        self.max_size = conf.image_cache_max_size
        self._lock = threading.Lock()
        self._fills: dict[str, _Fill] = {}
        self._slots = threading.BoundedSemaphore(conf.image_cache_max_concurrent_fills)
        self._pool = ThreadPoolExecutor(conf.image_cache_max_concurrent_fills,
                                        thread_name_prefix="glimpse-cache-fill")
        self._prune_lock = threading.Lock()
        # queued images are copied one at a time, beside the fills of downloads
        self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="glimpse-cache-prefetch")
        # set by the runtime: image id -> FillSource, or None (not active, gone)
        self.source_for: Callable[[str], FillSource | None] | None = None
        # set by the runtime: image ids -> those that are still active images
        self.still_active: Callable[[list[str]], set[str]] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_floor_warning = 0.0

    # ------------------------------------------------------------ paths

    def path(self, image_id: str, sub: str = "") -> str:
        return os.path.join(self.dir, sub, image_id)

    def is_cached(self, image_id: str) -> bool:
        return _valid_id(image_id) and os.path.isfile(self.path(image_id))

    # ------------------------------------------------------------ reading

    def read(self, image_id: str, offset: int, length: int | None,
             source: FillSource | None, from_store: Callable[[], Iterable[bytes]],
             ) -> Iterable[bytes]:
        """The data for one download.

        ``source`` is what a fill would copy (None: this read may not fill, e.g. a
        range); ``from_store`` reads the requested bytes from the store directly."""
        copy = self._open_copy(image_id, offset, length)
        if copy is not None:
            return copy
        if source is None or offset or length is not None:
            return from_store()
        fill = self._fill(source)
        if fill is _FOREIGN:
            # Another worker process of this node is copying it: follow its file.
            foreign = self._follow_foreign(image_id, source.size)
            if foreign is not None:
                return foreign
            copy = self._open_copy(image_id, 0, None)  # it may just have finished
            return copy if copy is not None else from_store()
        if fill is None:
            copy = self._open_copy(image_id, 0, None)  # another worker may just have
            return copy if copy is not None else from_store()  # committed one
        try:
            return fill.follow()
        except CacheFillError:
            return from_store()  # that fill just failed: nothing was sent yet

    def _follow_foreign(self, image_id: str, size: int) -> Iterator[bytes] | None:
        try:
            fd = os.open(self.path(image_id, INCOMPLETE), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return _FdChunks(fd, self._read_foreign(fd, image_id, size))

    def _read_foreign(self, fd: int, image_id: str, size: int) -> Iterator[bytes]:
        """A copy written by another process, read as it grows. Its last byte is only
        read once that copy is committed (renamed into place, so the same inode), so a
        copy that fails never ends up as a complete response here either."""
        inode = os.fstat(fd).st_ino
        pos = 0
        idle_limit = min(self.conf.image_cache_stall_time or 600, 600)
        last_progress = time.monotonic()
        while True:
            current = os.fstat(fd).st_size
            if current < pos:  # a stale file truncated by a new writer
                raise CacheFillError(f"Copy of image {image_id} was restarted")
            limit = min(current, size - 1)
            if pos < limit:
                while pos < limit:
                    data = os.pread(fd, min(READ_SIZE, limit - pos), pos)
                    if not data:
                        break
                    pos += len(data)
                    yield data
                last_progress = time.monotonic()
                continue
            verdict = self._foreign_verdict(fd, image_id, inode)
            if verdict is False:
                raise CacheFillError(f"Copy of image {image_id} by another worker failed")
            if verdict is True:
                while pos < size:
                    data = os.pread(fd, min(READ_SIZE, size - pos), pos)
                    if not data:
                        raise CacheFillError(f"Copy of image {image_id} was truncated")
                    pos += len(data)
                    yield data
                return
            if time.monotonic() - last_progress > idle_limit:
                raise CacheFillError(f"Copy of image {image_id} by another worker stalled")
            time.sleep(0.01)

    def _foreign_verdict(self, fd: int, image_id: str, inode: int) -> bool | None:
        """True: committed; False: failed or abandoned; None: still being written."""
        def committed() -> bool:
            try:
                return os.stat(self.path(image_id)).st_ino == inode
            except FileNotFoundError:
                return False

        if committed():
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return None  # its writer still holds the lock
        fcntl.flock(fd, fcntl.LOCK_UN)
        return committed()  # the writer renames before it lets go

    def _open_copy(self, image_id: str, offset: int, length: int | None,
                   ) -> Iterator[bytes] | None:
        if not _valid_id(image_id):
            return None
        try:
            fd = os.open(self.path(image_id), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            self.records.hit(image_id)
        except Exception:  # noqa: BLE001 - a lost hit count must not fail a download
            LOG.warning("Could not count a cache hit of image %s", image_id, exc_info=True)
        return _FdChunks(fd, _read_file(fd, offset, length))

    def hit_path(self, image_id: str) -> str | None:
        """The committed copy's path for a server to send itself (ASGI pathsend),
        counted as a hit; None when there is no copy (any more)."""
        if not _valid_id(image_id):
            return None
        path = self.path(image_id)
        if not os.path.isfile(path):
            return None
        try:
            self.records.hit(image_id)
        except Exception:  # noqa: BLE001 - a lost hit count must not fail a download
            LOG.warning("Could not count a cache hit of image %s", image_id, exc_info=True)
        return path

    def fill_behind(self, source: FillSource) -> None:
        """Start copying an image that a client is being sent from elsewhere (a miss
        served by the server from the file store's path): the copy runs in the
        background; a failure to start one only costs the next hit."""
        try:
            self._fill(source)
        except Exception:  # noqa: BLE001 - this client is served either way
            LOG.warning("Could not start caching image %s", source.image_id, exc_info=True)

    # ------------------------------------------------------------ filling

    def _fill(self, source: FillSource) -> Any:
        """The fill of this image on this node: the one in progress, a new one, or
        None when none may start (limits, free space), or _FOREIGN when another
        worker process of this node is writing it.

        A new fill opens the store here, in the caller's thread, so that a store
        that cannot be read fails this request before anything is sent."""
        image_id = source.image_id
        if not _valid_id(image_id):
            return None
        with self._lock:
            fill = self._fills.get(image_id)
            if fill is not None:
                return fill
            if not self._may_fill(source.size):
                return None
            if not self._slots.acquire(blocking=False):
                LOG.debug("Not caching image %s: %d fills already running", image_id,
                          self.conf.image_cache_max_concurrent_fills)
                return None
            try:
                lock_fd = self._lock_incomplete(image_id)
            except BaseException:
                self._slots.release()
                raise
            if lock_fd is None:
                self._slots.release()
                return _FOREIGN  # another worker process of this node is writing it
            if self.is_cached(image_id):  # committed since this read looked for a copy
                with contextlib.suppress(OSError):
                    os.unlink(self.path(image_id, INCOMPLETE))  # the empty file just made
                os.close(lock_fd)
                self._slots.release()
                return None
            fill = _Fill(image_id, self.path(image_id, INCOMPLETE), source.size)
            self._fills[image_id] = fill
        try:
            chunks = source.read()
        except BaseException as exc:
            self._end_fill(fill, lock_fd)
            with contextlib.suppress(OSError):
                os.unlink(fill.path)
            fill.fail(exc if isinstance(exc, Exception) else CacheFillError(repr(exc)))
            raise
        self._pool.submit(self._run_fill, fill, source, chunks, lock_fd)
        return fill

    def _end_fill(self, fill: _Fill, lock_fd: int) -> None:
        os.close(lock_fd)
        with self._lock:
            self._fills.pop(fill.image_id, None)
        self._slots.release()

    def _lock_incomplete(self, image_id: str) -> int | None:
        fd = os.open(self.path(image_id, INCOMPLETE), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        os.ftruncate(fd, 0)
        return fd

    def _may_fill(self, size: int) -> bool:
        if size <= 0 or size > self.max_size:
            return False
        if self.current_size() + size > self.max_size:
            self.prune(target=self.max_size - size)
        usage = shutil.disk_usage(self.dir)
        floor = parse_floor(self.conf.image_cache_min_free_space, usage.total)
        if usage.free - size < floor:
            now = time.monotonic()
            if now - self._last_floor_warning > 60:
                self._last_floor_warning = now
                LOG.warning("Not caching: %s has %d bytes free, an image of %d bytes would "
                            "leave less than image_cache_min_free_space (%d bytes)",
                            self.dir, usage.free, size, floor)
            return False
        return True

    def _run_fill(self, fill: _Fill, source: FillSource, chunks: Iterable[bytes],
                  fd: int) -> None:
        image_id = fill.image_id
        md5 = hashlib.md5(usedforsecurity=False)
        written = 0
        flusher = FlushBehind(fd)
        try:
            with open(fd, "wb", buffering=0, closefd=False) as out:
                for chunk in chunks:
                    if self._stop.is_set():  # shutting down: do not hold the exit
                        raise CacheFillError("the server is stopping")
                    if not chunk:
                        continue
                    view = memoryview(chunk)
                    while view:
                        view = view[out.write(view):]
                    md5.update(chunk)
                    written += len(chunk)
                    flusher.wrote(len(chunk))
                    if written > source.size:
                        break
                    fill.publish(written - len(chunk))
            flusher.wait()
            got = md5.hexdigest()
            if written != source.size or (source.checksum and got != source.checksum):
                os.replace(fill.path, self.path(image_id, INVALID))
                LOG.warning("Image %s: the data read from the store (%d bytes, md5 %s) does "
                            "not match the image record (%d bytes, md5 %s); the copy was "
                            "moved to %s and is not served", image_id, written, got,
                            source.size, source.checksum, self.path(image_id, INVALID))
                fill.fail(CacheFillError(f"image {image_id} data does not match its "
                                         "checksum or size"))
                return
            # On disk before it is committed: a power cut must not leave a committed
            # copy with pages missing (it would be served as the image).
            os.fdatasync(fd)
            final = self.path(image_id)
            with fill.cond:
                os.replace(fill.path, final)
                fill.final = final
            try:
                self.records.add(image_id, written, source.checksum)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(final)
                raise
            with fill.cond:
                fill.available, fill.done = written, True
                fill.cond.notify_all()
            self._dequeue(image_id)
            LOG.info("Cached image %s (%d bytes)", image_id, written)
        except BaseException as exc:  # noqa: BLE001 - every follower must learn of it
            LOG.warning("Caching image %s failed after %d bytes: %s", image_id, written,
                        exc.__class__.__name__ + (f": {exc}" if str(exc) else ""))
            with contextlib.suppress(OSError):
                os.unlink(fill.path)
            fill.fail(exc if isinstance(exc, Exception) else CacheFillError(repr(exc)))
        finally:
            with contextlib.suppress(OSError):
                flusher.wait()  # a flush in flight still uses fd
            close = getattr(chunks, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            self._end_fill(fill, fd)
        if self.current_size() > self.max_size:
            self.prune()

    def cache_now(self, image_id: str) -> bool:
        """Fill the cache with one image and wait (prefetcher); True when cached."""
        if self.is_cached(image_id):
            self._dequeue(image_id)
            return True
        if self.source_for is None:
            return False
        source = self.source_for(image_id)
        if source is None:
            if self._dequeue(image_id):
                LOG.warning("Dropped image %s from the cache queue: it is no longer an "
                            "active image with data", image_id)
            return False
        fill = self._fill(source)
        if fill is None or fill is _FOREIGN:
            return False  # the worker copying it dequeues it when done
        with fill.cond:
            fill.cond.wait_for(lambda: fill.done)
        return fill.error is None

    # ------------------------------------------------------------ management

    def cached_images(self) -> list[dict[str, Any]]:
        entries = [e for e in self.records.entries() if self.is_cached(e.image_id)]
        return [e.as_doc(n) for n, e in enumerate(entries, 1)]

    def current_size(self) -> int:
        return sum(e.size for e in self.records.entries())

    def evict(self, image_id: str) -> bool:
        """Drop this node's copy of an image (and its record); True if there was one."""
        if not _valid_id(image_id):
            return False
        had = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(image_id))
            had = True
        self.records.remove(image_id)
        return had

    def image_deleted(self, image_id: str) -> None:
        """Forget a deleted image on this node: its copy, its record, its queue entry."""
        self.evict(image_id)
        self.dequeue(image_id)

    def evict_all(self) -> int:
        count = 0
        for entry in self.records.entries():
            count += self.evict(entry.image_id)
        for name in self._names(""):
            count += self.evict(name)
        return count

    def queued_images(self) -> list[str]:
        return self._names(QUEUE)

    def queue(self, image_id: str) -> bool:
        """Queue an image (False: already cached or being cached)."""
        if not _valid_id(image_id) or self.is_cached(image_id) or image_id in self._fills:
            return False
        with open(self.path(image_id, QUEUE), "wb"):
            pass
        return True

    def _dequeue(self, image_id: str) -> bool:
        try:
            os.unlink(self.path(image_id, QUEUE))
            return True
        except FileNotFoundError:
            return False

    def dequeue(self, image_id: str) -> bool:
        return _valid_id(image_id) and self._dequeue(image_id)

    def dequeue_all(self) -> int:
        return sum(self._dequeue(name) for name in self.queued_images())

    def _names(self, sub: str) -> list[str]:
        directory = os.path.join(self.dir, sub)
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        return [n for n in names if _valid_id(n) and os.path.isfile(os.path.join(directory, n))
                and not n.endswith((".db", ".db-wal", ".db-shm", ".db-journal"))]

    def prune(self, target: int | None = None) -> tuple[int, int]:
        """Remove least recently used copies until the cache holds at most ``target``
        bytes (default image_cache_max_size); (files removed, bytes removed)."""
        target = self.max_size if target is None else max(target, 0)
        files = removed = 0
        with self._prune_lock:
            entries = self.records.entries()
            total = sum(e.size for e in entries)
            for entry in sorted(entries, key=lambda e: e.last_accessed):
                if total <= target:
                    break
                if entry.image_id in self._fills:
                    continue
                self.evict(entry.image_id)
                total -= entry.size
                files += 1
                removed += entry.size
        if files:
            LOG.info("Pruned %d cached image(s), %d bytes, to stay under %d bytes", files,
                     removed, target)
        return files, removed

    def clean(self, stall_time: int | None = None) -> int:
        """Remove invalid copies, stalled partial ones, records without a file, files
        without a record and copies of images that are no longer active."""
        stall = self.conf.image_cache_stall_time if stall_time is None else stall_time
        count = 0
        for name in self._names(INVALID):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name, INVALID))
                count += 1
        now = time.time()
        for name in self._names(INCOMPLETE):
            path = self.path(name, INCOMPLETE)
            with contextlib.suppress(FileNotFoundError):
                if name in self._fills or now - os.stat(path).st_mtime < stall:
                    continue
                lock = self._lock_incomplete(name)  # nobody writes it any more
                if lock is not None:
                    os.unlink(path)
                    os.close(lock)
                    count += 1
        recorded = {e.image_id for e in self.records.entries()}
        on_disk = set(self._names(""))
        for image_id in recorded - on_disk:
            self.records.remove(image_id)
        for image_id in on_disk - recorded:
            if image_id not in self._fills:
                count += self.evict(image_id)
        if self.still_active is not None and on_disk:
            keep = self.still_active(sorted(on_disk))
            for image_id in sorted(on_disk - keep):
                count += self.evict(image_id)
        return count

    # ------------------------------------------------------------ background

    def start(self) -> None:
        """The pruner/cleaner and the prefetcher of this worker."""
        if self._threads:
            return
        for target, name in ((self._maintain, "glimpse-cache-pruner"),
                             (self._prefetch_loop, "glimpse-cache-prefetcher")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def prefetch_soon(self, image_id: str) -> None:
        """Cache a queued image now, in the background (a failure stays queued)."""
        def run() -> None:
            try:
                self.cache_now(image_id)
            except Exception:  # noqa: BLE001 - the periodic pass retries
                LOG.warning("Caching queued image %s failed", image_id, exc_info=True)

        self._prefetcher.submit(run)

    def _maintain(self) -> None:
        interval = self.conf.image_cache_prune_interval
        if not interval:
            return
        while not self._stop.wait(interval):
            try:
                self.prune()
                self.clean()
            except Exception:  # noqa: BLE001 - try again at the next pass
                LOG.warning("Cache maintenance pass failed", exc_info=True)

    def _prefetch_loop(self) -> None:
        while not self._stop.wait(self.conf.cache_prefetcher_interval):
            self._prefetcher.submit(self.prefetch)

    def prefetch(self) -> int:
        """Cache every queued image that can be; the others stay queued."""
        done = 0
        for image_id in self.queued_images():
            try:
                if self.cache_now(image_id):
                    done += 1
            except Exception:  # noqa: BLE001 - stays queued for the next pass
                LOG.warning("Prefetching image %s failed", image_id, exc_info=True)
        return done

    def close(self) -> None:
        self._stop.set()
        self._prefetcher.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.records.close()


def _read_file(fd: int, offset: int, length: int | None) -> Iterator[bytes]:
    pos, end = offset, None if length is None else offset + length
    while end is None or pos < end:
        want = READ_SIZE if end is None else min(READ_SIZE, end - pos)
        data = os.pread(fd, want, pos)
        if not data:
            return
        pos += len(data)
        yield data


def from_conf(conf: Any, db: Any) -> ImageCache | None:
    if not conf.image_cache_dir:
        return None
    return ImageCache(conf, db)
