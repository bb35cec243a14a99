"""Deterministic crash points, for the crash-recovery tests only.

``crash_point(name)`` kills this process with SIGKILL when the environment
variable GLIMPSE_TEST_CRASH_AT names that point (a comma-separated list is
allowed). It is never set in production; unset, the check is one dict lookup
done once per operation (never per chunk). The points are listed in
docs/operations.md (crash recovery) and used by tests/test_crash_recovery.py.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "GLIMPSE_TEST_CRASH_AT"


def crash_point(name: str, delay: float = 0.0) -> None:
    """Die here (or ``delay`` seconds later, while the caller goes on: e.g. while
    a subprocess it starts next is running)."""
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(","):
        if delay:
            threading.Timer(delay, _die).start()
        else:
            _die()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
