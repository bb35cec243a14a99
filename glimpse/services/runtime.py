"""Everything a service function needs, built once per process from config."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from oslo_config import cfg

from glimpse import policy as policy_mod
from glimpse.config import storage_quota
from glimpse.db import engine as db_engine
from glimpse.stores import registry as store_registry

LOG = logging.getLogger(__name__)


@dataclass
class Runtime:
    conf: cfg.ConfigOpts
    db: db_engine.Database
    stores: store_registry.StoreRegistry
    policy: policy_mod.Policy

    @property
    def storage_quota(self) -> int:
        return storage_quota(self.conf)

    def close(self) -> None:
        self.db.dispose()


def build(conf: cfg.ConfigOpts, migrate: bool = False) -> Runtime:
    db = db_engine.from_conf(conf)
    if migrate:
        db_engine.upgrade(db)
    return Runtime(
        conf=conf,
        db=db,
        stores=store_registry.from_conf(conf),
        policy=policy_mod.Policy(conf),
    )
