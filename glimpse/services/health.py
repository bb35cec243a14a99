"""Health use cases: the load balancer's probe and the admin's detailed report.

The probe (``/healthcheck``) answers as oslo.middleware's healthcheck does: "OK", or
503 while the file named by ``[healthcheck] disable_by_file_path`` exists, so an
operator can drain a node by touching a file. The detailed report checks every part
a request needs (the database, each store, the message broker when one is
configured) and says how long each check took.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg
from sqlalchemy import text

from glimpse.context import RequestContext
from glimpse.errors import Forbidden
from glimpse.notify import options as notify_options
from glimpse.services.runtime import Runtime
from glimpse.stores.base import Store

BROKER_TIMEOUT = 3.0
DISABLED_REASON = "DISABLED BY FILE"


@dataclass(frozen=True)
class Check:
    name: str
    available: bool
    reason: str
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "available": self.available, "reason": self.reason,
                "latency_ms": round(self.latency_ms, 3)}


def disabled_by_file(conf: cfg.ConfigOpts) -> bool:
    path = conf.healthcheck.disable_by_file_path
    return bool(path) and os.path.exists(path)


def probe(rt: Runtime) -> tuple[bool, str]:
    """The plain probe: (healthy, reason). Cheap: one stat() at most."""
    if disabled_by_file(rt.conf):
        return False, DISABLED_REASON
    return True, "OK"


def _timed(name: str, fn: Callable[[], str]) -> Check:
    t0 = time.perf_counter()
    try:
        reason = fn()
        ok = True
    except Exception as exc:  # any failure of the part is the report, not an error
        reason, ok = f"{exc.__class__.__name__}: {exc}", False
    return Check(name, ok, reason, (time.perf_counter() - t0) * 1000)


def _database(rt: Runtime) -> str:
    with rt.db.reading() as conn:
        conn.execute(text("SELECT 1")).scalar_one()
    return f"{rt.db.engine.dialect.name} answered"


def _store(store: Store) -> str:
    if store.type == "file":
        if not os.path.isdir(store.datadir):
            raise FileNotFoundError(f"{store.datadir} does not exist")
        if not os.access(store.datadir, os.W_OK | os.X_OK):
            raise PermissionError(f"{store.datadir} is not writable")
        return f"{store.datadir} is writable"
    if store.read_only:
        return "read-only store: nothing to check"
    try:
        next(iter(store.list_data()), None)
    except NotImplementedError:
        return f"{store.type} store: no check available"
    return f"{store.type} store answered a listing"


def broker_url(rt: Runtime) -> str | None:
    """The message broker Glimpse talks to: the notifications' transport, when
    notifications are on (oslo.messaging's default "rabbit://" names no broker)."""
    if not rt.notifier.enabled:
        return None
    url = notify_options.transport_url(rt.conf)
    return url if url and urllib.parse.urlsplit(url.split(",")[0]).netloc else None


def _broker(url: str) -> Callable[[], str]:
    def check() -> str:
        parts = urllib.parse.urlsplit(url.split(",")[0])
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 5672
        with socket.create_connection((host, port), timeout=BROKER_TIMEOUT):
            pass
        return f"{host}:{port} accepts connections"
    return check


def checks(rt: Runtime) -> list[Check]:
    """Run every check; blocking (call from a thread)."""
    results = [_timed("database", lambda: _database(rt))]
    for name, store in rt.stores.stores.items():
        results.append(_timed(f"store:{name}", lambda s=store: _store(s)))
    url = broker_url(rt)
    if url:
        results.append(_timed("broker", _broker(url)))
    return results


def detailed_report(rt: Runtime, ctx: RequestContext | None) -> tuple[bool, dict[str, Any]]:
    """(healthy, report) for /healthcheck/detailed: admins only, unless the operator
    made the report public with ``[healthcheck] detailed``."""
    if ctx is not None and not rt.policy.check_is_admin(ctx):
        raise Forbidden("The detailed health report is for administrators only.")
    disabled = disabled_by_file(rt.conf)
    results = checks(rt)
    healthy = not disabled and all(c.available for c in results)
    reasons = [c.as_dict() for c in results]
    if disabled:
        reasons.insert(0, {"name": "disable_by_file", "available": False,
                           "reason": DISABLED_REASON, "latency_ms": 0.0})
    return healthy, {"detailed": True, "healthy": healthy, "reasons": reasons}
