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
import time

ENV = "GLIMPSE_TEST_CRASH_AT"


def crash_point(name: str, in_child: bool = False) -> None:
    """Die here, or with ``in_child`` as soon as the subprocess the caller starts
    next is running (Linux: watched in /proc)."""
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(","):
        if in_child:
            before = _children()
            threading.Thread(target=_die_when_child_runs, args=(before,), daemon=True).start()
        else:
            _die()


def _children() -> set[str]:
    found: set[str] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                found |= set(f.read().split())
        except OSError:
            continue
    return found


def _die_when_child_runs(before: set[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (_children() - before):
        time.sleep(0.001)
    time.sleep(0.02)  # let it start its work
    _die()


#: set by ``glimpse serve`` for a Granian worker that is the node's only worker: its
#: parent's pid (the node is both processes; uvicorn's one worker is the process itself)
PARENT_ENV = "GLIMPSE_CRASH_PARENT"


def _die() -> None:
    parent = os.environ.get(PARENT_ENV)
    if parent and parent == str(os.getppid()):
        os.kill(int(parent), signal.SIGKILL)  # the whole node goes down, as in a crash
    os.kill(os.getpid(), signal.SIGKILL)
