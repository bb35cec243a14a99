"""Everything a service function needs, built once per process from config."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg

from glimpse import policy as policy_mod
from glimpse.config import storage_quota
from glimpse.db import engine as db_engine
from glimpse.domain import property_protections as protections_mod
from glimpse.notify import notifier as notifier_mod
from glimpse.stores import registry as store_registry

LOG = logging.getLogger(__name__)


@dataclass
class Runtime:
    conf: cfg.ConfigOpts
    db: db_engine.Database
    stores: store_registry.StoreRegistry
    policy: policy_mod.Policy
    protections: protections_mod.PropertyProtections = field(
        default_factory=lambda: protections_mod.DISABLED)
    # glimpse.imports.tasks.TaskRunner: this worker's background import threads.
    runner: Any = None
    # Called after a change commits; sends in the background (noop unless configured).
    notifier: notifier_mod.Notifier = field(default_factory=notifier_mod.Notifier)
    # glimpse.services.leases.Leases: this worker's identity and lease renewal.
    leases: Any = None
    # glimpse.services.recovery.Sweeper, started by the API server's lifespan.
    sweeper: Any = None
    # glimpse.cache.ImageCache: this node's image cache (None unless image_cache_dir).
    cache: Any = None

    @property
    def storage_quota(self) -> int:
        return storage_quota(self.conf)

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.runner is not None:
            self.runner.shutdown()
        if self.cache is not None:
            self.cache.close()
        self.notifier.close()
        if self.leases is not None:
            self.leases.close()
        self.db.dispose()

    def start_background(self) -> None:
        """The recovery sweeper of an API worker (not of one-shot commands)."""
        from glimpse.services.recovery import Sweeper

        if self.sweeper is None:
            self.sweeper = Sweeper(self)
            self.sweeper.start()
        if self.cache is not None:
            self.cache.start()  # pruner, cleaner and prefetcher (issue 16)


def build(conf: cfg.ConfigOpts, migrate: bool = False, recover: bool = True) -> Runtime:
    """``recover``: resolve what dead workers left (expired leases, interrupted
    tasks) before returning; ``glimpse doctor`` looks first."""
    policy = policy_mod.Policy(conf)
    # Before anything else: an unusable protections file must stop the start.
    protections = load_protections(conf, policy)
    db = db_engine.from_conf(conf)
    if migrate:
        db_engine.upgrade_if_needed(db)
    rt = Runtime(
        conf=conf,
        db=db,
        stores=store_registry.from_conf(conf),
        policy=policy,
        protections=protections,
        notifier=notifier_mod.build(conf),
    )
    from glimpse.imports import tasks as tasks_mod  # imports use services: import late
    from glimpse.services import leases as leases_mod
    from glimpse.services import recovery

    rt.leases = leases_mod.Leases(conf, db)
    rt.cache = build_cache(rt)
    rt.runner = tasks_mod.TaskRunner(rt)
    if recover:
        try:
            recovery.sweep_leases(rt)
        except Exception:  # noqa: BLE001 - e.g. a database not migrated yet
            LOG.warning("Could not look for expired leases", exc_info=True)
        rt.runner.recover()
    return rt


def build_cache(rt: Runtime) -> Any:
    """This node's image cache, wired to the database and stores (None when off)."""
    from glimpse import cache as cache_mod

    cache = cache_mod.from_conf(rt.conf, rt.db)
    if cache is None:
        return None
    from glimpse.db import repository as repo
    from glimpse.services import data

    cache.source_for = lambda image_id: data.cache_source(rt, image_id)

    def still_readable(image_ids: list[str]) -> set[str]:
        with rt.db.read() as session:
            return set(repo.readable_image_ids(session, image_ids))

    cache.still_active = still_readable
    return cache


def load_protections(conf: cfg.ConfigOpts,
                     policy: policy_mod.Policy) -> protections_mod.PropertyProtections:
    """Read ``property_protection_file`` once; raise InvalidPropertyProtections if unusable.

    A relative name is looked up as Glance does (beside the configuration
    files, then the standard configuration directories), then in the working
    directory.
    """
    name = conf.property_protection_file
    if not name:
        return protections_mod.DISABLED
    path = conf.find_file(name) or (name if os.path.isfile(name) else None)
    if path is None:
        raise protections_mod.InvalidPropertyProtections(
            f"Property protection file {name} (property_protection_file) was not found.")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise protections_mod.InvalidPropertyProtections(
            f"Property protection file {path} cannot be read: {exc}") from exc
    rule_format = conf.property_protection_rule_format
    protections = protections_mod.from_text(
        text, rule_format, source=path,
        policy_check=lambda ctx, rule: policy.check(ctx, rule, {}, registered=False))
    if rule_format == "policies" and protections.enabled:
        policy.add_rules(protections.policy_rules())
        known = policy.enforcer.rules
        for missing in sorted(protections.referenced_policies() - set(known)):
            # oslo.policy (and so Glance) then applies policy_default_rule.
            LOG.warning("Property protection file %s refers to policy rule %r, which is "
                        "not defined: the operations using it fall back to the '%s' rule",
                        path, missing, conf.oslo_policy.policy_default_rule)
    LOG.info("Property protections loaded from %s (%s format, %d sections)",
             path, rule_format, len(protections.sections))
    return protections
