"""What a driver's ``build`` gets from the registry: one store's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

# Options every store section has, whatever its type.
COMMON_OPTS = [
    cfg.StrOpt("store_description", default="",
               help="Description of the store shown by /v2/info/stores."),
    cfg.IntOpt("weight", default=0,
               help="Preference of the store when a location is chosen to read from."),
]


@dataclass
class StoreConfig:
    #: the store's name: its enabled_backends key, or its type in the single-store form
    name: str
    #: the group holding the store's options: [<name>], or [glance_store] (single store)
    section: Any
    conf: cfg.ConfigOpts
    #: the legacy single-store form ([glance_store] stores / default_store)
    legacy: bool = False
    #: the store's type (file, rbd, swift, s3, ...): one module may build several
    kind: str = ""

    @property
    def description(self) -> str:
        return getattr(self.section, "store_description", "") or ""
