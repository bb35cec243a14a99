"""Ceph RBD store: one RBD image per Glance image, as Glance lays it out.

Each image is created with the layering feature and gets a protected snapshot
named ``snap`` once its data is complete, so Nova and Cinder can clone it.
Locations read ``rbd://<fsid>/<pool>/<image>/snap``. While ``add`` writes, the
RBD image carries an in-progress name (``glimpse-partial.<id>.<random>``); it is
renamed to the image id only after the data is flushed and the snapshot taken,
so ``list_data`` and the crash sweep can tell unfinished data from finished.

The bindings are Ceph's own (Debian python3-rados / python3-rbd, made importable
in a venv by scripts/ceph-bindings.sh); without them configuring an rbd store
stops the service at start-up with a clear message, not at the first upload.
"""

from __future__ import annotations

import collections
import datetime
import errno
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlparse

from oslo_config import cfg

from glimpse.stores import memory
from glimpse.stores.base import (
    Credentials,
    DataEntry,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreForbidden,
    StoreFull,
    StoreUnavailable,
)
from glimpse.stores.options import StoreConfig

MIB = 1024 * 1024
SNAPSHOT = "snap"
PARTIAL_PREFIX = "glimpse-partial."
# Writes in flight at once (each at most WRITE_SIZE bytes, within one RBD object):
# enough to keep the OSDs busy while the next piece arrives, bounded so memory stays
# flat (librbd copies each piece it is given: twice the window is held).
WRITE_WINDOW = 4
WRITE_SIZE = 4 * MIB
# Reads in flight at once, each at most READ_SIZE (librados holds a second copy of
# each while it is in flight): 2 MiB x 4 keeps a 1 GiB download under 200 MiB of
# worker RSS (4 MiB reads held about 50 MiB more for no measurable speed).
READ_SIZE = 2 * MIB
READ_AHEAD = 4
# glibc malloc: librados' threads each get an arena of their own, and the buffers
# they free stay mapped there (a 1 GiB transfer left a worker 100-150 MiB larger).
# One arena for the process keeps it flat (same speed, measured A/B); free memory is
# given back after every transfer.

OPTS = [
    cfg.StrOpt("rbd_store_pool", default="images", help="RADOS pool the images are kept in."),
    cfg.StrOpt("rbd_store_user",
               help="Ceph user (without 'client.') to connect as; unset: librados' default."),
    cfg.StrOpt("rbd_store_ceph_conf", default="",
               help="ceph.conf to read; empty: librados' default search ($CEPH_CONF, "
               "/etc/ceph/ceph.conf)."),
    cfg.IntOpt("rbd_store_chunk_size", default=8, min=1,
               help="RBD object size of new images in MiB (a power of two), also the size "
               "of each write."),
    cfg.IntOpt("rados_connect_timeout", default=0, min=0,
               help="Seconds to wait for the cluster when connecting; 0: librados' default."),
    cfg.IntOpt("rados_op_timeout", default=60, min=0,
               help="(Glimpse) Seconds one request to an OSD or a monitor (a write, a "
               "read, opening an image) may take before the transfer fails with 503: an "
               "upload is rolled back and its image queued again, a download fails over to "
               "another location or is cut. Keep it above Ceph's failure detection "
               "(osd_heartbeat_grace, 20 s) so an OSD failover is ridden out. 0: wait "
               "without limit (librados' default, Glance's behaviour: a stopped OSD then "
               "blocks the transfer forever)."),
    cfg.BoolOpt("rbd_thin_provisioning", default=False,
                help="Do not write chunks that are all zeros: the RBD image stays sparse."),
]


class RbdBindingsMissing(ValueError):
    """An rbd store is configured but Ceph's python bindings cannot be imported."""


def _bindings() -> tuple[Any, Any]:
    try:
        import rados  # noqa: PLC0415 - optional, only for rbd stores
        import rbd  # noqa: PLC0415
    except ImportError as exc:
        raise RbdBindingsMissing(
            f"An rbd store is configured but Ceph's python bindings cannot be imported "
            f"({exc}). Install python3-rados and python3-rbd and make them importable "
            f"(scripts/ceph-bindings.sh does both for a virtualenv).") from exc
    return rados, rbd


def build(config: StoreConfig) -> RbdStore:
    s = config.section
    return RbdStore(config.name, pool=s.rbd_store_pool, user=s.rbd_store_user,
                    conffile=s.rbd_store_ceph_conf, chunk_mib=s.rbd_store_chunk_size,
                    connect_timeout=s.rados_connect_timeout,
                    op_timeout=s.rados_op_timeout, thin=s.rbd_thin_provisioning,
                    description=config.description)


class RbdStore(Store):
    type = "rbd"

    def __init__(self, name: str, *, pool: str = "images", user: str | None = None,
                 conffile: str = "", chunk_mib: int = 8, connect_timeout: int = 0,
                 op_timeout: int = 60, thin: bool = False, description: str = ""):
        super().__init__(name, description)
        self._rados, self._rbd = _bindings()
        memory.one_arena()
        if chunk_mib & (chunk_mib - 1):
            raise ValueError(f"rbd_store_chunk_size of store '{name}' must be a power of two")
        self.pool, self.user, self.conffile = pool, user, conffile
        self.chunk_size = chunk_mib * MIB
        self.order = self.chunk_size.bit_length() - 1
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self.sparse_writes = thin
        self._cluster: Any = None
        self._fsid: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ connection

    def _connect(self) -> Any:
        with self._lock:
            if self._cluster is not None:
                return self._cluster
            rados = self._rados
            try:
                cluster = rados.Rados(rados_id=self.user or None)
                if self.conffile:
                    cluster.conf_read_file(self.conffile)
                else:
                    cluster.conf_read_file()
                # Data streams through once: librbd's cache would only hold a copy of
                # what is in flight and delay the final flush (measured faster without).
                cluster.conf_set("rbd_cache", "false")
                # librados waits for an OSD or a monitor without limit by default; with
                # these every operation (librbd's too) fails with ETIMEDOUT instead.
                if self.op_timeout:
                    cluster.conf_set("rados_osd_op_timeout", str(self.op_timeout))
                mon_timeout = self.op_timeout or self.connect_timeout
                if mon_timeout:
                    cluster.conf_set("rados_mon_op_timeout", str(mon_timeout))
                if self.connect_timeout:
                    cluster.connect(timeout=self.connect_timeout)
                else:
                    cluster.connect()
                self._fsid = cluster.get_fsid()
            except rados.Error as exc:
                raise _unreachable(self, exc) from exc
            self._cluster = cluster
            return cluster

    @contextmanager
    def _ioctx(self) -> Iterator[Any]:
        cluster = self._connect()
        try:
            ioctx = cluster.open_ioctx(self.pool)
        except self._rados.ObjectNotFound as exc:
            raise StoreError(f"RBD pool '{self.pool}' does not exist") from exc
        except self._rados.Error as exc:
            raise self._error(exc, f"pool {self.pool}") from exc
        try:
            yield ioctx
        except (self._rados.Error, self._rbd.Error) as exc:
            raise self._error(exc, f"pool {self.pool}") from exc
        finally:
            ioctx.close()

    def _error(self, exc: Exception, what: str) -> StoreError:
        rados, rbd = self._rados, self._rbd
        if isinstance(exc, rbd.ImageNotFound | rados.ObjectNotFound):
            return DataNotFound(f"Image data not found: {what}")
        if isinstance(exc, rbd.PermissionError | rados.PermissionError):
            return StoreForbidden(f"Ceph refused access to {what} for user "
                                  f"{self.user or '(default)'}")
        if isinstance(exc, rbd.NoSpace | rados.NoSpace | rbd.DiskQuotaExceeded):
            return StoreFull(f"No space left in RBD pool '{self.pool}'")
        if isinstance(exc, rbd.ConnectionShutdown | rados.ConnectionShutdown):
            with self._lock:
                self._cluster = None  # connect afresh next time
            return StoreUnavailable(f"Connection to the Ceph cluster shut down ({what})")
        if isinstance(exc, rbd.Timeout | rados.TimedOut):
            # The connection stays: librados finds the OSD or monitor again once it
            # answers (a new one per timeout would leak its threads while it lasts).
            return StoreUnavailable(f"Ceph cluster did not answer{self._within()} ({what})")
        return StoreError(f"RBD error on {what}: {exc}")

    def _within(self) -> str:
        return f" within {self.op_timeout}s" if self.op_timeout else ""

    def _failed(self, code: int, what: str) -> StoreError:
        """The StoreError for librbd's negative return value ``-code``."""
        if code == errno.ETIMEDOUT:
            return StoreUnavailable(f"Ceph cluster did not answer{self._within()} "
                                    f"(RBD {what})")
        return _errno_error(code, what)

    # ------------------------------------------------------------ URLs

    def _url(self, image: str) -> str:
        return f"rbd://{quote(self._fsid or '', safe='')}/{quote(self.pool, safe='')}/" \
               f"{quote(image, safe='')}/{SNAPSHOT}"

    def _image_of(self, url: str) -> str:
        """The RBD image name a URL of this store names; DataNotFound for others."""
        parsed = urlparse(url)
        parts = [unquote(p) for p in parsed.path.split("/")[1:]]
        if parsed.scheme != "rbd" or len(parts) != 3 or parts[2] != SNAPSHOT:
            raise DataNotFound(f"Not an RBD location of this store: {url}")
        fsid, pool, image = unquote(parsed.netloc), parts[0], parts[1]
        if pool != self.pool or not _plain(image, partial_ok=True):
            raise DataNotFound(f"Location is not in this store's pool: {url}")
        if self._fsid is None:
            try:
                self._connect()
            except StoreUnavailable:
                return image  # the operation itself reports the cluster is down
        if fsid != self._fsid:
            raise DataNotFound(f"Location is in another Ceph cluster: {url}")
        return image

    def owns(self, url: str) -> bool:
        try:
            self._image_of(url)
        except StoreError:
            return False
        return True

    # ------------------------------------------------------------ add

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        if not _plain(image_id):
            raise StoreError(f"Invalid image id for rbd store: {image_id!r}")
        rbd = self._rbd
        partial = f"{PARTIAL_PREFIX}{image_id}.{os.urandom(4).hex()}"
        with self._ioctx() as ioctx:
            rbd.RBD().create(ioctx, partial, 0, order=self.order, old_format=False,
                             features=rbd.RBD_FEATURE_LAYERING)
            try:
                with rbd.Image(ioctx, partial) as image:
                    size = _Writer(image, min(self.chunk_size, WRITE_SIZE),
                                   self.sparse_writes, self._failed).write(chunks)
                    image.create_snap(SNAPSHOT)
                    image.protect_snap(SNAPSHOT)
                try:
                    rbd.RBD().rename(ioctx, partial, image_id)
                except rbd.ImageExists as exc:
                    raise StoreError(f"RBD image {image_id} already exists in pool "
                                     f"'{self.pool}'") from exc
            except (StoreUnavailable, rbd.Timeout, self._rados.TimedOut):
                # Removing it now would only wait out another timeout: the orphan
                # sweep finds it by its in-progress name once the cluster answers.
                raise
            except BaseException:
                self._remove_quietly(ioctx, partial)
                raise
            finally:
                memory.give_back()
        return StoredData(url=self._url(image_id), size=size)

    def _remove_quietly(self, ioctx: Any, name: str) -> None:
        try:
            self._remove(ioctx, name)
        except (self._rados.Error, self._rbd.Error):
            pass  # the sweep finds it by its in-progress name

    def _remove(self, ioctx: Any, name: str) -> None:
        rbd = self._rbd
        with rbd.Image(ioctx, name) as image:
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap["name"]):
                    try:
                        image.unprotect_snap(snap["name"])
                    except rbd.ImageBusy as exc:
                        raise StoreError(f"RBD image {name} has clones and is in use") from exc
                image.remove_snap(snap["name"])
        try:
            rbd.RBD().remove(ioctx, name)
        except rbd.ImageBusy as exc:
            raise StoreError(f"RBD image {name} is in use (it has watchers)") from exc

    # ------------------------------------------------------------ read / delete

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        name = self._image_of(url)
        with self._ioctx() as ioctx, self._rbd.Image(ioctx, name, snapshot=SNAPSHOT,
                                                      read_only=True) as image:
            end = image.size()  # checks it exists before the first chunk is asked for
        if length is not None:
            end = min(end, offset + length)
        return self._read(name, offset, end)

    def _read(self, name: str, offset: int, end: int) -> Iterator[bytes]:
        with self._ioctx() as ioctx, self._rbd.Image(ioctx, name, snapshot=SNAPSHOT,
                                                      read_only=True) as image:
            try:
                yield from _Reader(image, min(self.chunk_size, READ_SIZE), offset,
                                   end, self._failed).pieces()
            finally:
                memory.give_back()

    def size(self, url: str, creds: Credentials | None = None) -> int:
        name = self._image_of(url)
        with self._ioctx() as ioctx, self._rbd.Image(ioctx, name, snapshot=SNAPSHOT,
                                                      read_only=True) as image:
            return image.size()

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        name = self._image_of(url)
        with self._ioctx() as ioctx:
            self._remove(ioctx, name)

    def list_data(self) -> Iterator[DataEntry]:
        with self._ioctx() as ioctx:
            names = self._rbd.RBD().list(ioctx)
            entries = []
            for name in names:
                try:
                    with self._rbd.Image(ioctx, name, read_only=True) as image:
                        size, stamp = image.size(), image.modify_timestamp()
                except self._rbd.ImageNotFound:
                    continue  # removed while listing
                entries.append(DataEntry(url=self._url(name),
                                         complete=not name.startswith(PARTIAL_PREFIX),
                                         modified=_epoch(stamp), size=size))
        return iter(entries)

    def properties(self) -> dict:
        # As Glance: the cluster's fsid once known (None before the first connection).
        return {"chunk_size": self.chunk_size // MIB, "pool": self.pool,
                "thin_provisioning": self.sparse_writes, "fsid": self._fsid}


class _Reader:
    """Reads [offset, end) in pieces in line with the RBD objects, READ_AHEAD of them
    in flight, so the OSDs work while the caller sends the previous piece."""

    def __init__(self, image: Any, piece: int, offset: int, end: int,
                 failed: Callable[[int, str], StoreError]):
        self.image, self.piece, self.position, self.end = image, piece, offset, end
        self.failed = failed
        self.pending: collections.deque = collections.deque()

    def _submit(self) -> None:
        step = min(self.piece - self.position % self.piece, self.end - self.position)
        box: dict[str, bytes] = {}

        def done(_completion: Any, data: bytes | None, box: dict = box) -> None:
            if data is not None:
                box["data"] = data

        self.pending.append((self.image.aio_read(self.position, step, done), box))
        self.position += step

    def pieces(self) -> Iterator[bytes]:
        try:
            while self.position < self.end and len(self.pending) < READ_AHEAD:
                self._submit()
            while self.pending:
                completion, box = self.pending.popleft()
                completion.wait_for_complete_and_cb()
                result = completion.get_return_value()
                if result < 0:
                    raise self.failed(-result, "read")
                if self.position < self.end:
                    self._submit()
                data = box.get("data", b"")
                if not data:
                    return
                yield data
        finally:
            for completion, _box in self.pending:  # the image must not close under them
                completion.wait_for_complete_and_cb()


class _Writer:
    """Writes a stream into an RBD image in chunk_size pieces, several in flight,
    growing the image ahead of the data and trimming it to the exact size last."""

    def __init__(self, image: Any, chunk_size: int, thin: bool,
                 failed: Callable[[int, str], StoreError]):
        self.image, self.chunk_size, self.thin, self.failed = image, chunk_size, thin, failed
        self.zeros = bytes(chunk_size) if thin else b""
        self.capacity = 0
        self.in_flight: collections.deque = collections.deque()

    def write(self, chunks: Iterable[bytes]) -> int:
        parts: list[memoryview] = []
        have = offset = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                while view:
                    take = min(len(view), self.chunk_size - have)
                    parts.append(view[:take])
                    have += take
                    view = view[take:]
                    if have == self.chunk_size:
                        self._put(b"".join(parts), offset)  # the only copy
                        offset += have
                        parts, have = [], 0
            if have:
                self._put(b"".join(parts), offset)
                offset += have
            self._drain(0)
        finally:
            self._drain(0, check=False)
        if self.capacity != offset:
            self.image.resize(offset)
        self.image.flush()
        return offset

    def _put(self, piece: bytes, offset: int) -> None:
        end = offset + len(piece)
        if end > self.capacity:
            # Grow ahead (doubling, at most 1 GiB at a time): one resize per many writes.
            self.capacity = max(end, min(2 * self.capacity, self.capacity + 1024 * MIB))
            # librbd's resize waits for the writes in flight anyway; waiting for them
            # here first makes a timed-out write fail the upload at once, not after
            # the resize's own request timed out as well (3 timeouts instead of 2).
            self._drain(0)
            self.image.resize(self.capacity)
        if self.thin and piece == self.zeros[:len(piece)]:
            return  # a hole: reads of unwritten extents return zeros
        self._drain(WRITE_WINDOW - 1)
        completion = self.image.aio_write(piece, offset, lambda _c: None)
        self.in_flight.append((completion, piece))

    def _drain(self, keep: int, check: bool = True) -> None:
        while len(self.in_flight) > keep:
            completion, _piece = self.in_flight.popleft()
            completion.wait_for_complete_and_cb()
            result = completion.get_return_value()
            if check and result < 0:
                raise self.failed(-result, "write")


def _errno_error(code: int, what: str = "write") -> StoreError:
    message = f"RBD {what} failed: {os.strerror(code)}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(message)
    if code in (errno.EPERM, errno.EACCES):
        return StoreForbidden(message)
    if code in (errno.ETIMEDOUT, errno.ESHUTDOWN, errno.ENOTCONN):
        return StoreUnavailable(message)
    return StoreError(message)


def _plain(name: str, partial_ok: bool = False) -> bool:
    if name in ("", ".", "..") or any(c in name for c in "/@\0"):
        return False
    return partial_ok or not name.startswith(PARTIAL_PREFIX)


def _unreachable(store: RbdStore, exc: Exception) -> StoreError:
    rados = store._rados
    if isinstance(exc, rados.PermissionError | rados.PermissionDeniedError):
        return StoreForbidden(f"Ceph refused user {store.user or '(default)'}: {exc}")
    return StoreUnavailable(f"Cannot connect to the Ceph cluster "
                            f"({store.conffile or 'default ceph.conf'}): {exc}")


def _epoch(stamp: datetime.datetime) -> float:
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()
