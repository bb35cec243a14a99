"""The end of the grace period that Granian lacks, in each of its worker processes
(``glimpse serve --http-server granian``, which loads ``glimpse.asgi_granian:app``).

On SIGTERM (or SIGINT) a Granian worker stops accepting connections and waits for
the requests in flight without a limit of its own; the application's lifespan
shutdown only runs once they have all ended. So each worker starts its own timer when
it gets the signal: once ``graceful_shutdown_timeout`` has passed, the uploads still
reading their body are cut short (glimpse.api.http.abort_body_reads), each rolled back
at once (image queued again, no data left), as under uvicorn; their requests then end
and the worker exits. Downloads are not cut: the parent kills a worker that is still
sending 30 s later (``workers_kill_timeout``); a download holds nothing to roll back.

Granian installs its signal handlers in the worker after loading the application,
with ``granian._signals.set_loop_signals``; ``install`` wraps that function: its
handlers do what Granian's do, and start the timer too (tests/ops/test_cli.py
checks this under Granian).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

GRACE_ENV = "GLIMPSE_GRACEFUL_SHUTDOWN_TIMEOUT"
LOG = logging.getLogger(__name__)

def grace_period() -> float:
    """Seconds requests may run after SIGTERM (0: no limit)."""
    try:
        return max(float(os.environ.get(GRACE_ENV, "60")), 0.0)
    except ValueError:
        return 60.0


class _GracePeriod:
    def __init__(self) -> None:
        self.timer: asyncio.TimerHandle | None = None
        self.signalled = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        seconds = grace_period()
        if self.timer is not None or not seconds:
            return
        LOG.info("Stopping: requests in flight have %g s to finish", seconds)
        self.timer = loop.call_later(seconds, self.over, seconds)

    @staticmethod
    def over(seconds: float) -> None:
        from glimpse.api.http import abort_body_reads

        cut = abort_body_reads()
        if cut:
            LOG.warning("Shutdown: the grace period (%g s) is over, aborting the %d "
                        "upload(s) still in progress", seconds, cut)


GRACE = _GracePeriod()


def die_with_parent() -> None:
    """A worker never outlives the ``glimpse serve`` that started it: killed with it
    (SIGKILL: an operator's kill -9, the OOM killer), it dies too, as the one process
    of uvicorn with one worker does, instead of serving on unsupervised. Linux only
    (prctl PR_SET_PDEATHSIG); elsewhere nothing is done."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        LOG.warning("Could not tie worker %d to its parent's life (errno %d)", os.getpid(),
                    ctypes.get_errno())
    elif os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


_EARLY: list[int] = []  # signals received before Granian's handlers were in place


def _early(signum: int, frame: Any) -> None:  # noqa: ARG001
    _EARLY.append(signum)


def install() -> None:
    try:
        from granian import _signals
    except ImportError:  # not under Granian: nothing to wrap
        return
    original = _signals.set_loop_signals
    if getattr(original, "glimpse", False):
        return
    # A SIGTERM while the worker is still loading the application would otherwise hit
    # the handler inherited from the parent (which does nothing in a worker) and be
    # lost: the worker would then serve on until it is killed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _early)

    def set_loop_signals(loop: Any) -> Any:
        event = original(loop)  # Granian's WorkerSignal, which stops its server

        def stop() -> None:
            if not GRACE.signalled:  # once: set again, it stalled this loop in testing
                GRACE.signalled = True
                event.set()
            GRACE.start(loop)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)  # replaces Granian's: it does both
        if _EARLY:
            stop()
        return event

    set_loop_signals.glimpse = True  # type: ignore[attr-defined]
    _signals.set_loop_signals = set_loop_signals
