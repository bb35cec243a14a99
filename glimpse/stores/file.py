"""Local filesystem store: one file per image under one or more directories.

Options are glance_store's: ``filesystem_store_datadir`` or several
``filesystem_store_datadirs = DIR:PRIORITY`` (new data goes to the highest
priority with free space), ``filesystem_store_file_perm``,
``filesystem_store_chunk_size``, ``filesystem_thin_provisioning`` and
``filesystem_store_metadata_file`` (JSON id/mountpoint put in each location's
metadata). A data directory that cannot be written (a share that failed to mount
under a read-only mount point) makes the store read-only with the reason; it
never writes anywhere else.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import unquote, urlparse

from oslo_config import cfg

from glimpse.stores.base import (
    Credentials,
    DataEntry,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreForbidden,
    StoreFull,
)
from glimpse.stores.options import StoreConfig

LOG = logging.getLogger(__name__)
READ_SIZE = 2 * 1024 * 1024
# While an upload is written, its data is flushed to disk every FLUSH_EVERY bytes
# in the background, so that the fdatasync that makes it durable at the end has
# little left to do (the kernel alone would start only after gigabytes or 30 s).
FLUSH_EVERY = 64 * 1024 * 1024
# Zero runs shorter than this are written: a hole costs a block anyway.
HOLE_MIN = 4096

OPTS = [
    cfg.StrOpt("filesystem_store_datadir",
               help="Directory of the file store. Defaults to <data_dir>/images (single "
               "store) or <data_dir>/stores/<name>."),
    cfg.MultiStrOpt("filesystem_store_datadirs", default=[],
                    help="Several directories as DIR or DIR:PRIORITY (default priority 0), "
                    "one per line; new data goes to the highest priority with room."),
    cfg.IntOpt("filesystem_store_file_perm", default=0,
               help="Permissions of new image files in octal digits (e.g. 640); 0: "
               "owner read/write only."),
    cfg.IntOpt("filesystem_store_chunk_size", default=READ_SIZE, min=1,
               help="Size in bytes of each read from an image file. Glance's default is "
               "64 KiB; Glimpse's is 2 MiB: a download streamed through Python (uvicorn, "
               "Range requests) makes one thread hop and one send per read, and 64 KiB "
               "reads cut its rate several times (bench/download_chunks.py)."),
    cfg.BoolOpt("filesystem_thin_provisioning", default=False,
                help="Leave zero runs as holes (sparse files) instead of writing them."),
    cfg.StrOpt("filesystem_store_metadata_file",
               help="JSON file with {\"id\": ..., \"mountpoint\": ...} (or a list of them, "
               "one per data directory) added to the metadata of each location."),
]


@functools.cache
def _flush_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(8, thread_name_prefix="glimpse-flush")


def build(config: StoreConfig) -> FileStore:
    from glimpse.config import data_path  # noqa: PLC0415 - avoids a cycle at import

    s = config.section
    dirs = _parse_datadirs(config.name, s.filesystem_store_datadirs)
    if s.filesystem_store_datadir and dirs:
        raise ValueError(f"Store '{config.name}': set filesystem_store_datadir or "
                         "filesystem_store_datadirs, not both")
    if not dirs:
        default = (data_path(config.conf, "images") if config.legacy
                   else data_path(config.conf, "stores", config.name))
        dirs = [(s.filesystem_store_datadir or default, 0)]
    return FileStore(config.name, dirs[0][0], config.description, datadirs=dirs,
                     file_perm=s.filesystem_store_file_perm,
                     chunk_size=s.filesystem_store_chunk_size,
                     thin=s.filesystem_thin_provisioning,
                     metadata=_load_metadata(config.name, s.filesystem_store_metadata_file))


def _parse_datadirs(name: str, values: list[str]) -> list[tuple[str, int]]:
    dirs = []
    for value in values:
        path, sep, priority = value.strip().rpartition(":")
        if not sep or not priority.strip().lstrip("-").isdigit():
            path, priority = value.strip(), "0"
        dirs.append((path, int(priority)))
    if len({os.path.realpath(d) for d, _ in dirs}) != len(dirs):
        raise ValueError(f"Store '{name}': a directory appears twice in "
                         "filesystem_store_datadirs")
    return dirs


def _load_metadata(name: str, path: str | None) -> list[dict]:
    if not path:
        return []
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"Store '{name}': cannot read filesystem_store_metadata_file "
                         f"{path}: {exc}") from exc
    entries = doc if isinstance(doc, list) else [doc]
    for entry in entries:
        if (not isinstance(entry, dict) or not isinstance(entry.get("id"), str)
                or not isinstance(entry.get("mountpoint"), str)):
            raise ValueError(f"Store '{name}': {path} must hold an object (or a list of "
                             "objects) with string keys 'id' and 'mountpoint'")
    return entries


class FileStore(Store):
    type = "file"

    def __init__(self, name: str, datadir: str, description: str = "", *,
                 datadirs: list[tuple[str, int]] | None = None, file_perm: int = 0,
                 chunk_size: int = READ_SIZE, thin: bool = False,
                 metadata: list[dict] | None = None):
        super().__init__(name, description)
        pairs = datadirs or [(datadir, 0)]
        self.datadirs = [(os.path.realpath(d), p) for d, p in pairs]
        self.datadir = self.datadirs[0][0]
        self.file_perm = int(str(file_perm), 8) if file_perm else 0
        self.chunk_size = chunk_size
        self.sparse_writes = thin
        self.metadata = metadata or []
        self.read_only_reason = ""
        self.writable: list[tuple[str, int]] = []
        for path, priority in self.datadirs:
            problem = _writable_problem(path)
            if problem:
                LOG.error("File store %s: %s", name, problem)
                self.read_only_reason = problem
            else:
                self.writable.append((path, priority))
        self.read_only = not self.writable
        if not self.read_only:
            self.read_only_reason = ""

    # The only way from a URL to a path; refuses anything outside the data dirs.
    def _path(self, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise DataNotFound(f"Not a file store URL: {url}")
        path = os.path.realpath(unquote(parsed.path))
        if os.path.dirname(path) not in {d for d, _ in self.datadirs}:
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

    def _choose_dir(self, size: int = 0) -> str:
        """Glance's rule: the highest priority first; within it the directory with the
        most free space; a lower priority only when that one has less than ``size``."""
        if self.read_only:
            raise StoreForbidden(f"File store {self.name} is read-only: "
                                 f"{self.read_only_reason}")
        for priority in sorted({p for _, p in self.writable}, reverse=True):
            best, room = max(((d, _free(d)) for d, p in self.writable if p == priority),
                             key=lambda pair: pair[1])
            if room > size:
                return best
        raise StoreFull("There is not enough disk space on the image store")

    def _stored(self, path: str, size: int) -> StoredData:
        return StoredData(url=self._url(path), size=size, metadata=self._metadata_for(path))

    def _metadata_for(self, path: str) -> dict:
        for entry in self.metadata:
            mount = os.path.realpath(entry["mountpoint"])
            if path == mount or path.startswith(mount.rstrip(os.sep) + os.sep):
                return dict(entry)
        return dict(self.metadata[0]) if len(self.metadata) == 1 else {}

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        _check_id(image_id)
        datadir = self._choose_dir()
        final = os.path.join(datadir, image_id)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{image_id}.", suffix=".tmp", dir=datadir)
        except OSError as exc:
            raise self._write_error(exc, datadir) from exc
        try:
            try:
                size = _write_durably(fd, chunks, self.sparse_writes)
                if self.file_perm:
                    os.fchmod(fd, self.file_perm)
            finally:
                os.close(fd)
            self._publish(tmp, final)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise _store_error(exc) from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return self._stored(final, size)

    def _write_error(self, exc: OSError, datadir: str) -> StoreError:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StoreForbidden(f"File store {self.name} cannot write to {datadir}: "
                                  f"{exc.strerror}")
        return _store_error(exc)

    def add_file(self, image_id: str, path: str) -> StoredData | None:
        """Take a local file's data as ``image_id`` by hard-linking it: no copy.
        None when it is on another filesystem (the caller streams it)."""
        _check_id(image_id)
        if self.file_perm or self.sparse_writes:
            return None  # the staged file keeps its own mode and its zeros: stream it
        datadir = self._choose_dir()
        final = os.path.join(datadir, image_id)
        tmp = os.path.join(datadir, f".{image_id}.{os.urandom(6).hex()}.tmp")
        try:
            os.link(path, tmp)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                return None
            raise _store_error(exc) from exc
        try:
            _sync_file(tmp)  # a no-op for a file already flushed, as staged data is
            self._publish(tmp, final)
            return self._stored(final, os.stat(final).st_size)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise _store_error(exc) from exc

    def _publish(self, tmp: str, final: str) -> None:
        """Give a complete file its final name, durably."""
        os.replace(tmp, final)
        dir_fd = os.open(os.path.dirname(final), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        path = self._path(url)
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            raise StoreError(f"File store read failed: {exc.strerror}") from exc
        return _read(handle, offset, length, self.chunk_size)

    def size(self, url: str, creds: Credentials | None = None) -> int:
        try:
            return os.stat(self._path(url)).st_size
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            raise StoreError(f"File store stat failed: {exc.strerror}") from exc

    def delete(self, url: str, creds: Credentials | None = None) -> None:
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
        for datadir in dict.fromkeys(d for d, _priority in self.datadirs):
            yield from self._list_dir(datadir)

    def _list_dir(self, datadir: str) -> Iterator[DataEntry]:
        try:
            entries = list(os.scandir(datadir))
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

    def properties(self) -> dict:
        props: dict = {"data_dir": self.datadir, "chunk_size": self.chunk_size,
                       "thin_provisioning": self.sparse_writes}
        if len(self.datadirs) > 1:
            props["data_dirs"] = [f"{d}:{p}" for d, p in self.datadirs]
        return props


class FlushBehind:
    """Counts what is written to ``fd`` and flushes it to disk in the background every
    FLUSH_EVERY bytes, so that the fdatasync making it durable at the end has little
    left to do (the file store's writes and the image cache's fills)."""

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


def _write_durably(fd: int, chunks: Iterable[bytes], thin: bool = False) -> int:
    flusher = FlushBehind(fd)
    zeros = b""
    try:
        for chunk in chunks:
            if thin and len(chunk) >= HOLE_MIN:
                if len(zeros) < len(chunk):
                    zeros = bytes(len(chunk))
                if chunk == zeros[:len(chunk)]:
                    os.lseek(fd, len(chunk), os.SEEK_CUR)  # a hole
                    flusher.size += len(chunk)
                    continue
            _write_all(fd, chunk)
            flusher.wrote(len(chunk))
    finally:
        flusher.wait()
    if thin:
        os.ftruncate(fd, flusher.size)  # a trailing hole still counts
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


def _read(handle, offset: int, length: int | None,  # noqa: ANN001
          read_size: int = READ_SIZE) -> Iterator[bytes]:
    with handle:
        if offset:
            handle.seek(offset)
        remaining = length
        while remaining is None or remaining > 0:
            want = read_size if remaining is None else min(read_size, remaining)
            data = handle.read(want)
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


def _check_id(image_id: str) -> None:
    if os.sep in image_id or image_id in ("", ".", ".."):
        raise StoreError(f"Invalid image id for file store: {image_id!r}")


def _free(path: str) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def _writable_problem(path: str) -> str:
    """Why new data cannot be written under ``path``; empty when it can. Tries for real
    (a probe file): permission bits do not tell a read-only mount, nor apply to root."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".glimpse-probe.", dir=path)
    except OSError as exc:
        return (f"data directory {path} is not writable ({exc.strerror}); if it should be "
                "a mounted share, check that the share is mounted")
    os.close(fd)
    os.unlink(probe)
    return ""


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
