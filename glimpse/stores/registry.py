"""Builds the configured stores: Glance's single-store ([glance_store] stores,
default_store) and multi-store (enabled_backends) configurations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import httpx
from oslo_config import cfg

from glimpse.config import data_path
from glimpse.errors import BadRequest, NotFound
from glimpse.stores import object_stores
from glimpse.stores.base import DataNotFound, Store, StoredData, StoreError
from glimpse.stores.file import FileStore


class HttpStore(Store):
    """Glance's read-only http store: data stays at an http(s) URL, nothing is written.

    A minimal stand-in until a full driver exists: enough to be configured,
    listed as read-only and read from."""

    type = "http"
    read_only = True

    def add(self, image_id: str, chunks: Iterable[bytes]) -> StoredData:
        raise StoreError(f"Store {self.name} is read-only")

    def owns(self, url: str) -> bool:
        return url.startswith(("http://", "https://"))

    def get(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        return self._stream(url, headers)

    def _stream(self, url: str, headers: dict[str, str]) -> Iterator[bytes]:
        with httpx.stream("GET", url, headers=headers, timeout=60, follow_redirects=True) as r:
            if r.status_code == 404:
                raise DataNotFound(f"Image data not found at {url}")
            if r.status_code >= 400:
                raise StoreError(f"HTTP store answered {r.status_code} for {url}")
            yield from r.iter_bytes()

    def size(self, url: str) -> int:
        try:
            r = httpx.head(url, timeout=60, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise StoreError(f"HTTP store request failed: {exc}") from exc
        if r.status_code == 404:
            raise DataNotFound(f"Image data not found at {url}")
        return int(r.headers.get("content-length") or 0)

    def delete(self, url: str) -> None:
        raise StoreError(f"Store {self.name} is read-only")


class StoreRegistry:
    def __init__(self, stores: dict[str, Store], default: str):
        self.stores = stores
        self.default_name = default

    @property
    def default(self) -> Store:
        return self.stores[self.default_name]

    def get(self, name: str | None) -> Store:
        if name is None:
            return self.default
        try:
            return self.stores[name]
        except KeyError:
            raise BadRequest(f"Unknown store '{name}'") from None

    def for_url(self, url: str) -> Store:
        for store in self.stores.values():
            if store.owns(url):
                return store
        raise NotFound(f"No configured store holds {url}")

    def names(self) -> list[str]:
        return list(self.stores)

    def writable_names(self) -> list[str]:
        """Stores new data may go to (Glance's all_stores leaves out read-only http)."""
        return [name for name, store in self.stores.items() if not store.read_only]


# Glance's internal stores: always file stores, never listed, never chosen by clients.
RESERVED_STORES = ("os_glance_staging_store", "os_glance_tasks_store")
RESERVED_PREFIX = "os_glance_"

_STORE_OPTS = [
    cfg.StrOpt("filesystem_store_datadir"),
    cfg.StrOpt("store_description", default=""),
    cfg.IntOpt("weight", default=0),
]


def from_conf(conf: cfg.ConfigOpts) -> StoreRegistry:
    if conf.enabled_backends:
        return _multi_store(conf)
    datadir = conf.glance_store.filesystem_store_datadir or data_path(conf, "images")
    stores: dict[str, Store] = {"file": FileStore("file", datadir)}
    kind = conf.glance_store.default_store
    if kind in object_stores.KINDS:  # single store: its options are in [glance_store]
        stores[kind] = object_stores.build(conf, kind, kind, group="glance_store")
        return StoreRegistry(stores, kind)
    return StoreRegistry(stores, "file")


def _multi_store(conf: cfg.ConfigOpts) -> StoreRegistry:
    stores: dict[str, Store] = {}
    for name, kind in conf.enabled_backends.items():
        if name.startswith(RESERVED_PREFIX):
            # Glance refuses to start too: the prefix belongs to its internal stores.
            raise ValueError(f"Store name '{name}' in enabled_backends: the '{RESERVED_PREFIX}' "
                             "prefix is reserved for internal use only")
        register_store_opts(conf, name)
        section = conf[name]
        if kind == "file":
            datadir = section.filesystem_store_datadir or data_path(conf, "stores", name)
            stores[name] = FileStore(name, datadir, section.store_description)
        elif kind == "http":
            stores[name] = HttpStore(name, section.store_description)
        elif kind in object_stores.KINDS:
            stores[name] = object_stores.build(conf, name, kind)
        else:
            raise ValueError(f"Store type '{kind}' of backend '{name}' is not supported yet")
    default = conf.glance_store.default_backend or next(iter(stores))
    if default not in stores:
        raise ValueError(f"[glance_store] default_backend '{default}' is not in enabled_backends")
    if stores[default].read_only:
        raise ValueError(f"[glance_store] default_backend '{default}' is a read-only store")
    return StoreRegistry(stores, default)


def register_store_opts(conf: cfg.ConfigOpts, name: str) -> None:
    """The options of one named store's section ([<name>] in glance-api.conf)."""
    if name not in conf:
        conf.register_opts(_STORE_OPTS, group=cfg.OptGroup(name))
