"""Builds the configured stores: Glance's single-store ([glance_store] stores,
default_store) and multi-store (enabled_backends) configurations."""

from __future__ import annotations

from oslo_config import cfg

from glimpse.config import data_path
from glimpse.errors import BadRequest, NotFound
from glimpse.stores.base import Store
from glimpse.stores.file import FileStore


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


def from_conf(conf: cfg.ConfigOpts) -> StoreRegistry:
    if conf.enabled_backends:
        return _multi_store(conf)
    datadir = conf.glance_store.filesystem_store_datadir or data_path(conf, "images")
    return StoreRegistry({"file": FileStore("file", datadir)}, "file")


def _multi_store(conf: cfg.ConfigOpts) -> StoreRegistry:
    stores: dict[str, Store] = {}
    for name, kind in conf.enabled_backends.items():
        group = cfg.OptGroup(name)
        opts = [
            cfg.StrOpt("filesystem_store_datadir"),
            cfg.StrOpt("store_description", default=""),
        ]
        if group.name not in conf:
            conf.register_opts(opts, group=group)
        section = conf[name]
        if kind == "file":
            datadir = section.filesystem_store_datadir or data_path(conf, "stores", name)
            stores[name] = FileStore(name, datadir, section.store_description)
        else:
            raise ValueError(f"Store type '{kind}' of backend '{name}' is not supported yet")
    default = conf.glance_store.default_backend or next(iter(stores))
    if default not in stores:
        raise ValueError(f"[glance_store] default_backend '{default}' is not in enabled_backends")
    return StoreRegistry(stores, default)
