"""The one place cross-cutting concerns wrap a driver: every store the registry
builds is a ``WrappedStore`` around the driver, so drivers stay small.

- errors: a driver's StoreError keeps its type (the API maps it to 404/403/413/503)
  and gains the store's name; anything else a driver lets escape is a bug shown as
  StoreError, except what the caller's own chunk iterator raised, which passes as is;
- timing: one debug line per add / get / delete with bytes, seconds and MiB/s;
- memory: the heap a transfer freed goes back to the kernel when it ends
  (glimpse.stores.memory), so transfers do not stack up in a worker's RSS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from glimpse.stores import memory
from glimpse.stores.base import Credentials, DataEntry, Store, StoredData, StoreError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
MIB = 1024 * 1024
# Transfers at least this large give their freed heap back when they end (a trim walks
# the heap: not worth it for small ones).
TRIM_AFTER = 64 * MIB


class _FromCaller(Exception):
    """Carries an exception raised by the caller's chunks through the driver."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def _tag(store: str, exc: StoreError) -> StoreError:
    message = str(exc)
    if not message.startswith(f"Store '{store}'"):
        exc.args = (f"Store '{store}': {message}", *exc.args[1:])
    exc.store = store  # type: ignore[attr-defined]
    return exc


class WrappedStore(Store):
    def __init__(self, driver: Store):
        super().__init__(driver.name, driver.description)
        self.driver = driver
        self.type = driver.type
        self.read_only = driver.read_only
        self.sparse_writes = driver.sparse_writes
        self.server_side_copy = driver.server_side_copy
        self.access_lists = driver.access_lists

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except StoreError as exc:
            raise _tag(self.name, exc) from exc.__cause__
        except _FromCaller as exc:
            raise exc.original from None
        except NotImplementedError:
            raise  # a capability the driver lacks (list_data), not a failure
        except Exception as exc:  # noqa: BLE001 - a driver bug must not be a bare 500
            LOG.exception("store %s: %s failed unexpectedly", self.name, what)
            raise _tag(self.name, StoreError(f"{what} failed: {exc}")) from exc

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        start, moved = time.monotonic(), 0

        def caller_chunks() -> Iterator[bytes]:
            nonlocal moved
            iterator = iter(chunks)
            while True:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - re-raised unchanged by _call
                    raise _FromCaller(exc) from exc
                moved += len(chunk)
                yield chunk

        try:
            stored = self._call("add", lambda: self.driver.add(image_id, caller_chunks(),
                                                               creds))
        finally:
            if moved >= TRIM_AFTER:
                memory.give_back()
        _timing(self.name, "add", stored.size, start)
        return stored

    def add_file(self, image_id: str, path: str) -> StoredData | None:
        return self._call("add", lambda: self.driver.add_file(image_id, path))

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        chunks = self._call("get", lambda: self.driver.get(url, offset, length, creds))
        return self._reading(chunks)

    def _reading(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        start, count = time.monotonic(), 0
        iterator = iter(chunks)
        try:
            while True:
                chunk = self._call("get", lambda: next(iterator, None))
                if chunk is None:
                    break
                count += len(chunk)
                yield chunk
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            if count >= TRIM_AFTER:
                memory.give_back()
            _timing(self.name, "get", count, start)

    def size(self, url: str, creds: Credentials | None = None) -> int:
        return self._call("size", lambda: self.driver.size(url, creds))

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        start = time.monotonic()
        self._call("delete", lambda: self.driver.delete(url, creds))
        _timing(self.name, "delete", 0, start)

    def set_acls(self, url: str, public: bool = False, read_projects: Iterable[str] = (),
                 write_projects: Iterable[str] = (),
                 creds: Credentials | None = None) -> None:
        self._call("set_acls", lambda: self.driver.set_acls(
            url, public, tuple(read_projects), tuple(write_projects), creds))

    def owns(self, url: str) -> bool:
        return self.driver.owns(url)

    def list_data(self) -> Iterator[DataEntry]:
        return iter(self._call("list", lambda: list(self.driver.list_data())))

    def local_path(self, url: str) -> str | None:
        return self._call("local_path", lambda: self.driver.local_path(url))

    def properties(self) -> dict:
        return self.driver.properties()

    def __getattr__(self, name: str):  # noqa: ANN204 - driver-specific attributes (datadir)
        return getattr(self.driver, name)


def _timing(store: str, what: str, count: int, start: float) -> None:
    seconds = time.monotonic() - start
    rate = count / MIB / seconds if seconds > 0 else 0.0
    LOG.debug("store %s: %s %d bytes in %.3fs (%.1f MiB/s)", store, what, count, seconds, rate)
