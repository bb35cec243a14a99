"""Builds the configured stores: Glance's single-store ([glance_store] stores,
default_store) and multi-store (enabled_backends) configurations.

Each driver module (table ``DRIVERS``) offers ``OPTS`` (Glance's option names) and
``build(StoreConfig) -> Store``; it is imported only when a store of its type is
configured, so a driver's client library is needed only where it is used. Every
store built is wrapped once in ``WrappedStore`` (error tagging, timing logs).
"""

from __future__ import annotations

import copy
import importlib
import logging
from types import ModuleType

from oslo_config import cfg

from glimpse.errors import BadRequest, NotFound
from glimpse.stores.base import Store
from glimpse.stores.options import COMMON_OPTS, StoreConfig
from glimpse.stores.wrapped import WrappedStore

LOG = logging.getLogger(__name__)

# Store type (as Glance names it) -> the module implementing it.
DRIVERS: dict[str, str] = {
    "file": "glimpse.stores.file",
    "http": "glimpse.stores.http",
    "rbd": "glimpse.stores.rbd",
    "swift": "glimpse.stores.object_stores",
    "s3": "glimpse.stores.object_stores",
    "cinder": "glimpse.stores.glance_store_adapter",
    "vmware": "glimpse.stores.glance_store_adapter",
}


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


def driver_module(kind: str) -> ModuleType:
    try:
        return importlib.import_module(DRIVERS[kind])
    except KeyError:
        raise ValueError(f"Unknown store type '{kind}' (known: "
                         f"{', '.join(sorted(DRIVERS))})") from None


def driver_opts(kind: str) -> list[cfg.Opt]:
    module = driver_module(kind)
    opts = getattr(module, "OPTS", [])
    return list(opts(kind) if callable(opts) else opts)


def from_conf(conf: cfg.ConfigOpts) -> StoreRegistry:
    if conf.enabled_backends:
        return _multi_store(conf)
    return _single_store(conf)


def _single_store(conf: cfg.ConfigOpts) -> StoreRegistry:
    """Glance's legacy form: [glance_store] stores = file, http, rbd; default_store;
    every driver's options in [glance_store] (or, deprecated, in [DEFAULT])."""
    kinds = list(dict.fromkeys(conf.glance_store.stores)) or ["file"]
    default = conf.glance_store.default_store
    if default not in kinds:
        kinds.append(default)
    stores: dict[str, Store] = {}
    for kind in kinds:
        _register(conf, "glance_store", driver_opts(kind), legacy=True)
        driver = driver_module(kind).build(
            StoreConfig(kind, conf.glance_store, conf, legacy=True, kind=kind))
        stores[kind] = WrappedStore(driver)
    if stores[default].read_only:
        raise ValueError(f"[glance_store] default_store '{default}' is a read-only store")
    return StoreRegistry(stores, default)


def _multi_store(conf: cfg.ConfigOpts) -> StoreRegistry:
    stores: dict[str, Store] = {}
    for name, kind in conf.enabled_backends.items():
        if name.startswith(RESERVED_PREFIX):
            # Glance refuses to start too: the prefix belongs to its internal stores.
            raise ValueError(f"Store name '{name}' in enabled_backends: the '{RESERVED_PREFIX}' "
                             "prefix is reserved for internal use only")
        register_store_opts(conf, name, kind)
        driver = driver_module(kind).build(StoreConfig(name, conf[name], conf, kind=kind))
        stores[name] = WrappedStore(driver)
    default = conf.glance_store.default_backend or next(iter(stores))
    if default not in stores:
        raise ValueError(f"[glance_store] default_backend '{default}' is not in enabled_backends")
    if stores[default].read_only:
        raise ValueError(f"[glance_store] default_backend '{default}' is a read-only store")
    return StoreRegistry(stores, default)


def register_store_opts(conf: cfg.ConfigOpts, name: str, kind: str = "file") -> None:
    """The options of one named store's section ([<name>] in glance-api.conf)."""
    if name not in conf:
        conf.register_group(cfg.OptGroup(name))
    _register(conf, name, [*COMMON_OPTS, *driver_opts(kind)])


def _register(conf: cfg.ConfigOpts, group: str, opts: list[cfg.Opt],
              legacy: bool = False) -> None:
    # The same option objects come back for every store and runtime built on this
    # ConfigOpts (and at each staging_dir()): oslo.config would compare each one with
    # the registered copy, field by field, tens of milliseconds per runtime. The
    # option objects are kept here, so an id stays theirs.
    done: dict[tuple[str, bool, int], cfg.Opt] = vars(conf).setdefault(
        "_glimpse_registered_store_opts", {})
    for opt in opts:
        key = (group, legacy, id(opt))
        if key in done:
            continue
        source = opt
        if legacy:
            # The oldest spelling kept these in [DEFAULT]; oslo.config reads them there
            # and logs a deprecation warning naming [glance_store].
            opt = copy.deepcopy(opt)
            opt.deprecated_opts = [*opt.deprecated_opts, cfg.DeprecatedOpt(opt.name, "DEFAULT")]
        try:
            conf.register_opt(opt, group=group)
        except cfg.DuplicateOptError:
            pass  # already there (glimpse.config's [glance_store] options)
        done[key] = source


def documented_opts() -> list[cfg.Opt]:
    """Every driver's options once, for docs/configuration.md."""
    seen: dict[str, cfg.Opt] = {opt.name: opt for opt in COMMON_OPTS}
    for kind in DRIVERS:
        try:
            opts = driver_opts(kind)
        except ImportError:
            continue
        for opt in opts:
            seen.setdefault(opt.name, opt)
    return list(seen.values())


# For docs/configuration.md (scripts/gen_config_doc.py): the options of a store section.
DOC_GROUP = "<store name> (or glance_store)"
DOC_OPTS = documented_opts()
