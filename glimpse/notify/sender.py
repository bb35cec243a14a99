"""Delivery of notifications off the request path: a bounded queue and one thread.

A request only appends a message to the queue. The sender thread hands the
messages to oslo.messaging in order. When the broker cannot be reached the
message stays at the head of the queue and is retried with a growing pause;
one warning is logged when the outage starts and one line when it ends (with
how many were sent late and how many were dropped). When the queue is full,
new messages are dropped and counted.

oslo.messaging's Notifier logs and forgets a message it could not deliver (and
its messaging drivers do the same), so the sender gives messages to the
transport itself, for the ``messaging``/``messagingv2`` drivers, to learn
whether each one was accepted (the rabbit driver publishes with confirms).
Other drivers (``log``, ``routing``, ``test``) are called as oslo.messaging calls
them.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import logging
import os
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from oslo_config import cfg

LOG = logging.getLogger(__name__)

# oslo.messaging's message format versions of its two messaging drivers.
_MESSAGING_VERSIONS = {"messaging": 1.0, "messagingv2": 2.0}
# Loggers whose errors about a failed delivery the sender reports itself, once.
_DRIVER_LOGGERS = ("oslo.messaging._drivers.impl_rabbit", "oslo_messaging._drivers.impl_rabbit",
                   "oslo_messaging._drivers.amqpdriver", "oslo_messaging.notify.messaging",
                   "oslo.messaging._drivers.pool", "oslo_messaging._drivers.pool")


def _import_oslo_messaging() -> Any:
    with without_green_dns():
        import oslo_messaging

    return oslo_messaging


@contextlib.contextmanager
def without_green_dns() -> Iterator[None]:
    """Around an import of oslo.messaging, which imports eventlet: eventlet warns that it
    is deprecated, and Glimpse never lets it patch anything, so its green resolver
    (dnspython, about a third of the import's CPU at each start) is not loaded either,
    unless EVENTLET_NO_GREENDNS is set already. The variable is not left behind for
    child processes."""
    set_here = "eventlet" not in sys.modules and "EVENTLET_NO_GREENDNS" not in os.environ
    if set_here:
        os.environ["EVENTLET_NO_GREENDNS"] = "yes"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if set_here:
            os.environ.pop("EVENTLET_NO_GREENDNS", None)


def safe_url(url: str | None) -> str:
    """A transport URL without credentials, for logs."""
    if not url:
        return "(the [DEFAULT] transport)"
    parts = urlsplit(url)
    hosts = [h.rpartition("@")[2] for h in parts.netloc.split(",")]
    return f"{parts.scheme}://{','.join(hosts)}{parts.path}"


def _close_at_exit(ref: weakref.ReferenceType[Sender]) -> None:
    sender = ref()
    if sender is not None and not sender._closing:
        sender.close()


class _QuietDuringOutage(logging.Filter):
    """Keeps oslo.messaging's per-attempt errors out of the log while a sender
    knows its broker is down (the sender's own warning says so once)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.outages = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        return not (self.outages > 0 or record.thread in self.threads)


_QUIET = _QuietDuringOutage()
for _name in _DRIVER_LOGGERS:
    logging.getLogger(_name).addFilter(_QUIET)


@dataclass
class Stats:
    queued: int = 0          # accepted into the queue
    sent: int = 0            # accepted by the transport
    dropped: int = 0         # refused because the queue was full
    failures: int = 0        # failed delivery attempts
    outages: int = 0         # times the broker became unreachable
    outage_since: float | None = None
    outage_dropped: int = 0
    outage_failed_sends: int = 0


class Sender:
    """One transport, its drivers, the queue and the thread that empties it."""

    # RabbitMQ URLs are published with glimpse.notify.rabbit (False: through
    # oslo.messaging's transport, as every other URL is).
    direct_rabbit = True
    # Seconds the sender waits for a burst to gather, and the most sent at once.
    linger = 0.02
    batch_max = 200

    def __init__(self, conf: cfg.ConfigOpts, drivers: list[str], topics: list[str],
                 url: str | None, maxsize: int, name: str = "notifications"):
        self.conf = conf
        self.driver_names = list(drivers)
        self.topics = list(topics)
        self.url = url
        self.maxsize = maxsize
        self.name = name
        self.stats = Stats()
        self.retry_min, self.retry_max = 0.2, 5.0
        self._queue: collections.deque[list[Any]] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._targets: list[tuple[str, Any]] | None = None
        self._transport: Any = None
        self._rabbit: Any = None  # glimpse.notify.rabbit.RabbitPublisher
        self._exit_hook = False

    # ------------------------------------------------------------ request side

    def put(self, event_type: str, payload: Any, priority: str, publisher_id: str) -> None:
        """Queue one message; never blocks, never raises."""
        message = {
            "message_id": str(uuid.uuid4()), "publisher_id": publisher_id,
            "event_type": event_type, "priority": priority, "payload": payload,
            # oslo.messaging's form: the time of the event, not of the late delivery.
            "timestamp": str(datetime.now(UTC).replace(tzinfo=None)),
        }
        with self._cond:
            if self._closing:
                return
            if len(self._queue) >= self.maxsize:
                self._drop(event_type)
                return
            self._queue.append([message, priority, None])
            self.stats.queued += 1
            self._ensure_thread()
            self._cond.notify()

    def _drop(self, event_type: str) -> None:
        self.stats.dropped += 1
        self.stats.outage_dropped += 1
        if self.stats.outage_dropped % 1000 == 1:  # the first, then every thousandth
            LOG.warning("The %s queue is full (%d waiting): new notifications are dropped "
                        "(counted: %d so far) until the broker takes messages again; last "
                        "dropped: %s", self.name, self.maxsize, self.stats.dropped, event_type)

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:
            # A forked worker: the parent's thread and connections are not ours.
            self._pid, self._thread, self._targets = os.getpid(), None, None
            self._transport = self._rabbit = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"glimpse-{self.name}",
                                            daemon=True)
            self._thread.start()
            if not self._exit_hook:
                # A worker that stops sends what it still holds (up to 5 s) first.
                self._exit_hook = True
                atexit.register(_close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------ waiting (tests, shutdown)

    def pending(self) -> int:
        """Messages not yet handed over (the one being sent stays at the head)."""
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued was handed over; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closing = True
            left = len(self._queue)
            self._cond.notify_all()
        if left:
            LOG.warning("%d %s were not sent before shutdown", left, self.name)
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(1.0)
        if self._rabbit is not None:
            self._rabbit.close()
        if self._transport is not None:
            try:
                self._transport.cleanup()
            except Exception:  # noqa: BLE001 - shutting down anyway
                LOG.debug("transport cleanup failed", exc_info=True)

    # ------------------------------------------------------------ sender thread

    def _run(self) -> None:
        with _QUIET.lock:
            _QUIET.threads.add(threading.get_ident())
        pause = self.retry_min
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                if self.linger and len(self._queue) < self.batch_max:
                    # Let a burst gather: one confirm wait per batch instead of per
                    # message (notifications are not latency-sensitive).
                    self._cond.wait_for(
                        lambda: self._closing or len(self._queue) >= self.batch_max,
                        timeout=self.linger)
                batch = list(itertools.islice(self._queue, self.batch_max))
                self._busy = True
            error = self._deliver(batch)
            if error is None and self.stats.outage_since is not None:
                self._outage_ended()  # before flush() can see an empty queue
            with self._cond:
                self._busy = False
                # Messages at the head that every target took leave the queue.
                while self._queue and self._queue[0][2] is not None \
                        and len(self._queue[0][2]) == len(self._targets or ()):
                    self._queue.popleft()
                    self.stats.sent += 1
                self._cond.notify_all()
            if error is None:
                pause = self.retry_min
                continue
            self.stats.failures += 1
            self.stats.outage_failed_sends += 1
            if self.stats.outage_since is None:
                self._outage_started(error)
            with self._cond:
                self._cond.wait_for(lambda: self._closing, timeout=pause)
            pause = min(pause * 2, self.retry_max)

    def _outage_started(self, error: BaseException) -> None:
        self.stats.outages += 1
        self.stats.outage_since = time.monotonic()
        self.stats.outage_dropped = 0
        self.stats.outage_failed_sends = 1
        with _QUIET.lock:
            _QUIET.outages += 1
        LOG.warning("Cannot send %s to %s (%s: %s): they are kept (at most %d) and sent when "
                    "the broker is reachable again; requests are not affected",
                    self.name, safe_url(self.url), type(error).__name__, error, self.maxsize)

    def _outage_ended(self) -> None:
        since = self.stats.outage_since or time.monotonic()
        self.stats.outage_since = None
        with _QUIET.lock:
            _QUIET.outages = max(_QUIET.outages - 1, 0)
        with self._cond:
            waiting = len(self._queue)
        LOG.warning("The broker at %s takes %s again after %.1f s: sending the %d queued; "
                    "%d dropped while it was unreachable", safe_url(self.url), self.name,
                    time.monotonic() - since, waiting, self.stats.outage_dropped)
        self.stats.outage_dropped = 0

    def _deliver(self, batch: list[list[Any]]) -> BaseException | None:
        """Hand the messages to every target that does not have them yet; the error,
        if any (what was handed over is remembered per message, never sent twice)."""
        try:
            targets = self._load_targets()
        except Exception as exc:  # noqa: BLE001 - a bad transport URL is an outage too
            return exc
        for item in batch:
            if item[2] is None:
                item[2] = set()
        for index, (kind, target) in enumerate(targets):
            todo = [item for item in batch if index not in item[2]]
            try:
                if kind == "rabbit":
                    self._rabbit.publish_many([(m, p, target) for m, p, _ in todo])
                    for item in todo:
                        item[2].add(index)
                    continue
                for message, priority, done in todo:
                    if kind == "driver":
                        target.notify({}, message, priority, 0)
                    else:
                        self._send_via_transport(target, message, priority)
                    done.add(index)
            except Exception as exc:  # noqa: BLE001 - kept and retried
                return exc
        return None

    def _send_via_transport(self, version: float, message: dict[str, Any],
                            priority: str) -> None:
        om = _import_oslo_messaging()
        for topic in self.topics:
            target = om.Target(topic=f"{topic}.{priority.lower()}")
            self._transport._send_notification(target, {}, message, version=version, retry=0)

    def _load_targets(self) -> list[tuple[str, Any]]:
        if self._targets is not None:
            return self._targets
        om = _import_oslo_messaging()
        from stevedore import named

        from glimpse.notify import rabbit

        targets: list[tuple[str, Any]] = []
        direct = self.direct_rabbit and rabbit.is_rabbit(self.url or self.conf.transport_url)
        if direct and any(d in _MESSAGING_VERSIONS for d in self.driver_names):
            self._rabbit = rabbit.RabbitPublisher(self.conf, self.url, self.topics)
        needs_transport = any((d in _MESSAGING_VERSIONS and not direct) or d == "routing"
                              for d in self.driver_names)
        if needs_transport and self._transport is None:
            self._transport = om.get_notification_transport(self.conf, url=self.url)
        others = [d for d in self.driver_names if d not in _MESSAGING_VERSIONS]
        if others:
            manager = named.NamedExtensionManager(
                "oslo.messaging.notify.drivers", names=others, invoke_on_load=True,
                invoke_args=[self.conf],
                invoke_kwds={"topics": self.topics, "transport": self._transport})
            targets += [("driver", ext.obj) for ext in manager.extensions]
            missing = sorted(set(others) - {ext.name for ext in manager.extensions})
            if missing:  # kept queued (and warned about once), never silently dropped
                raise ValueError(f"Unknown notification driver(s): {', '.join(missing)}")
        targets += [("rabbit" if direct else "transport", _MESSAGING_VERSIONS[d])
                    for d in self.driver_names if d in _MESSAGING_VERSIONS]
        self._targets = targets
        return targets
