"""The inject_image_metadata plugin (seed 000 §6.6.1).

Adds the operator's ``[inject_metadata_properties] inject`` properties to every
imported image, unless the user importing it has one of ``ignore_user_roles``.
Injected values replace the user's own value of the same property, as in
Glance. Names Glance keeps for itself (``os_glance*``) and names of image
attributes are never injected.
"""

from __future__ import annotations

import dataclasses
import logging

from oslo_config import cfg, types

from glimpse.config import list_opt
from glimpse.domain.images import READ_ONLY, RESERVED, RESERVED_PREFIX, SETTABLE_CORE
from glimpse.imports.plugins.base import ImportData, Plugin

LOG = logging.getLogger(__name__)

GROUP = "inject_metadata_properties"
_MAX_NAME = 255

inject_metadata_opts: list[cfg.Opt] = [
    list_opt("ignore_user_roles", types.String(quotes=True), ["admin"],
             "Roles whose holders' imports get no injected properties, e.g. [admin,member]."),
    cfg.DictOpt("inject", default={},
                help="Properties added to every imported image, as k1:v1,k2:v2."),
]


class InjectImageMetadata(Plugin):
    name = "inject_image_metadata"

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        conf.register_opts(inject_metadata_opts, group=GROUP)

    @classmethod
    def list_opts(cls) -> list[tuple[str, list[cfg.Opt]]]:
        return [(GROUP, list(inject_metadata_opts))]

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(conf)
        group = conf[GROUP]
        self.ignore_roles = frozenset(role.strip().lower() for role in group.ignore_user_roles)
        self.properties: dict[str, str] = {}
        for key, value in group.inject.items():
            if len(key) > _MAX_NAME:
                raise ValueError(f"[{GROUP}] inject: property name longer than "
                                 f"{_MAX_NAME} characters: {key[:40]}...")
            if key.startswith(RESERVED_PREFIX) or key in SETTABLE_CORE | READ_ONLY | RESERVED:
                LOG.warning("[%s] inject: %r is not a property name that may be set; "
                            "it is ignored", GROUP, key)
                continue
            self.properties[key] = value

    def run(self, data: ImportData) -> ImportData:
        if not self.properties:
            return data
        if any(role.lower() in self.ignore_roles for role in data.roles):
            return data
        return dataclasses.replace(data, properties={**data.properties, **self.properties})
