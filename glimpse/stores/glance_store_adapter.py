"""Store types Glimpse has no native driver for (cinder, vmware), reached through
glance_store's own drivers behind Glimpse's Store interface.

The section's options are glance_store's (the driver class's OPTIONS, registered in
the store's section), so an operator's glance-api.conf works unchanged. Needs the
optional dependency ``pip install 'glimpse[glance-store]'`` (cinder also needs
os-brick). Untested against a live Cinder or vCenter: see docs/stores.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from glimpse.stores.base import (
    Credentials,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreForbidden,
    StoreFull,
    StoreUnavailable,
)
from glimpse.stores.options import StoreConfig

# Store type -> (glance_store driver class, the URL schemes it owns)
DRIVER_CLASSES = {
    "cinder": ("glance_store._drivers.cinder:Store", ("cinder",)),
    "vmware": ("glance_store._drivers.vmware_datastore:Store", ("vsphere",)),
}
# glance_store's exception class names -> ours (by name: glance_store is optional)
ERRORS: dict[str, type[StoreError]] = {
    "NotFound": DataNotFound,
    "StorageFull": StoreFull,
    "StorageQuotaFull": StoreFull,
    "StorageWriteDenied": StoreForbidden,
    "Forbidden": StoreForbidden,
    "RemoteServiceUnavailable": StoreUnavailable,
}
OPTS: list = []  # glance_store registers its own, per driver class (see build)


def _driver_class(kind: str) -> type:
    path, _schemes = DRIVER_CLASSES[kind]
    module_name, _, cls = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), cls)
    except ImportError as exc:
        raise ValueError(f"Store type '{kind}' is reached through glance_store, which "
                         f"cannot be imported ({exc}): pip install 'glimpse[glance-store]'"
                         ) from exc


def build(config: StoreConfig) -> GlanceStoreAdapter:
    kind = config.conf.enabled_backends[config.name] if not config.legacy else config.name
    cls = _driver_class(kind)
    group = "glance_store" if config.legacy else config.name
    for opt in getattr(cls, "OPTIONS", None) or ():
        try:
            config.conf.register_opt(opt, group=group)
        except Exception:  # noqa: BLE001,S110 - already registered under that name
            pass
    driver = cls(config.conf, backend=None if config.legacy else config.name)
    driver.configure(re_raise_bsc=True)

    def location(uri: str) -> Any:
        from glance_store import location as gs_location  # noqa: PLC0415

        return gs_location.get_location_from_uri_and_backend(uri, config.name,
                                                             conf=config.conf)

    return GlanceStoreAdapter(config.name, kind, driver, location, config.description)


class _Reader:
    """The file-like object glance_store's add() reads from, over our chunks."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += bytes(chunk)
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class GlanceStoreAdapter(Store):
    def __init__(self, name: str, kind: str, driver: Any, location: Callable[[str], Any],
                 description: str = ""):
        super().__init__(name, description)
        self.type = kind
        self.driver = driver
        self._location = location
        self._schemes = DRIVER_CLASSES[kind][1]

    def owns(self, url: str) -> bool:
        return url.split("://", 1)[0] in self._schemes if "://" in url else False

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:
            if type(exc).__module__.split(".")[0] != "glance_store" and \
                    type(exc).__name__ not in ERRORS:
                raise  # not the driver's: the caller's chunks, say
            kind = ERRORS.get(type(exc).__name__, StoreError)
            raise kind(f"{self.type} store: {exc}") from exc

    def _loc(self, url: str) -> Any:
        if not self.owns(url):
            raise DataNotFound(f"Not a location of store {self.name}: {url}")
        return self._call(lambda: self._location(url))

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        result = self._call(lambda: self.driver.add(image_id, _Reader(chunks), 0, "sha256"))
        # glance_store returns (location, size, [checksum,] multihash, metadata)
        url, size, metadata = result[0], result[1], result[-1]
        return StoredData(url=url, size=size, metadata=dict(metadata or {}))

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        location = self._loc(url)
        chunks, _size = self._call(lambda: self.driver.get(location, offset=offset))
        return self._limited(chunks, length)

    def _limited(self, chunks: Iterable[bytes], length: int | None) -> Iterator[bytes]:
        remaining = length
        iterator = iter(chunks)
        while remaining is None or remaining > 0:
            chunk = self._call(lambda: next(iterator, None))
            if chunk is None:
                return
            if remaining is not None:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            yield chunk

    def size(self, url: str, creds: Credentials | None = None) -> int:
        location = self._loc(url)
        return self._call(lambda: self.driver.get_size(location))

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        location = self._loc(url)
        self._call(lambda: self.driver.delete(location))
