"""Local filesystem store: one file per image under one directory."""

from __future__ import annotations

import errno
import functools
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import unquote, urlparse

from glimpse.stores.base import (
    DataEntry,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreFull,
)

READ_SIZE = 2 * 1024 * 1024
# While an upload is written, its data is flushed to disk every FLUSH_EVERY bytes
# in the background, so that the fdatasync that makes it durable at the end has
# little left to do (the kernel alone would start only after gigabytes or 30 s).
FLUSH_EVERY = 64 * 1024 * 1024


@functools.cache
def _flush_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(8, thread_name_prefix="glimpse-flush")


class FileStore(Store):
    type = "file"

    def __init__(self, name: str, datadir: str, description: str = ""):
        super().__init__(name, description)
        self.datadir = os.path.realpath(datadir)
        os.makedirs(self.datadir, exist_ok=True)

    # The only way from a URL to a path; refuses anything outside datadir.
    def _path(self, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise DataNotFound(f"Not a file store URL: {url}")
        path = os.path.realpath(unquote(parsed.path))
        if os.path.dirname(path) != self.datadir:
            raise DataNotFound(f"Location is outside the store: {url}")
        return path

    def _url(self, path: str) -> str:
        return "file://" + path

    def owns(self, url: str) -> bool:
        try:
            self._path(url)
        except DataNotFound:
            return False
        return True

    def add(self, image_id: str, chunks: Iterable[bytes]) -> StoredData:
        final = self._final_path(image_id)
        fd, tmp = tempfile.mkstemp(prefix=f".{image_id}.", suffix=".tmp", dir=self.datadir)
        try:
            try:
                size = _write_durably(fd, chunks)
            finally:
                os.close(fd)
            self._publish(tmp, final)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise _store_error(exc) from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return StoredData(url=self._url(final), size=size)

    def add_file(self, image_id: str, path: str) -> StoredData | None:
        """Take a local file's data as ``image_id`` by hard-linking it: no copy.
        None when it is on another filesystem (the caller streams it)."""
        final = self._final_path(image_id)
        tmp = os.path.join(self.datadir, f".{image_id}.{os.urandom(6).hex()}.tmp")
        try:
            os.link(path, tmp)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                return None
            raise _store_error(exc) from exc
        try:
            _sync_file(tmp)  # a no-op for a file already flushed, as staged data is
            self._publish(tmp, final)
            return StoredData(url=self._url(final), size=os.stat(final).st_size)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise _store_error(exc) from exc

    def _final_path(self, image_id: str) -> str:
        if os.sep in image_id or image_id in ("", ".", ".."):
            raise StoreError(f"Invalid image id for file store: {image_id!r}")
        return os.path.join(self.datadir, image_id)

    def _publish(self, tmp: str, final: str) -> None:
        """Give a complete file its final name, durably."""
        os.replace(tmp, final)
        dir_fd = os.open(self.datadir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        path = self._path(url)
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            raise StoreError(f"File store read failed: {exc.strerror}") from exc
        return _read(handle, offset, length)

    def size(self, url: str) -> int:
        try:
            return os.stat(self._path(url)).st_size
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            raise StoreError(f"File store stat failed: {exc.strerror}") from exc

    def delete(self, url: str) -> None:
        try:
            os.unlink(self._path(url))
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            # Callers (delete, scrubber) handle StoreError; a bare OSError would be a 500.
            raise StoreError(f"File store delete failed: {exc.strerror}") from exc

    def list_data(self) -> Iterator[DataEntry]:
        """Every file of the store. ``add`` writes to ``.<image_id>.<random>.tmp``
        and renames when done, so a name ending in ``.tmp`` is in progress."""
        try:
            entries = list(os.scandir(self.datadir))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while listing
            yield DataEntry(url=self._url(entry.path), complete=not entry.name.endswith(".tmp"),
                            modified=stat.st_mtime, size=stat.st_size)

    def local_path(self, url: str) -> str | None:
        path = self._path(url)
        return path if os.path.exists(path) else None


class _Flusher:
    """Counts what is written to ``fd`` and flushes it in the background."""

    def __init__(self, fd: int):
        self.fd = fd
        self.size = 0
        self._unflushed = 0
        self._pending: Future | None = None

    def wrote(self, count: int) -> None:
        self.size += count
        self._unflushed += count
        if self._unflushed >= FLUSH_EVERY and (self._pending is None or self._pending.done()):
            self.wait()
            self._unflushed = 0
            self._pending = _flush_pool().submit(os.fdatasync, self.fd)

    def wait(self) -> None:
        """Let the flush in flight finish (the fd must stay open until then)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def _sync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _write_durably(fd: int, chunks: Iterable[bytes]) -> int:
    flusher = _Flusher(fd)
    try:
        for chunk in chunks:
            _write_all(fd, chunk)
            flusher.wrote(len(chunk))
    finally:
        flusher.wait()
    os.fdatasync(fd)
    return flusher.size


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]


def _store_error(exc: OSError) -> StoreError:
    if exc.errno == errno.ENOSPC:
        return StoreFull("There is not enough disk space on the image store")
    return StoreError(f"File store write failed: {exc.strerror}")


def _read(handle, offset: int, length: int | None) -> Iterator[bytes]:  # noqa: ANN001
    with handle:
        if offset:
            handle.seek(offset)
        remaining = length
        while remaining is None or remaining > 0:
            want = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
            data = handle.read(want)
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
