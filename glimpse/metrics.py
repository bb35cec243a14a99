"""Prometheus metrics (prometheus-client), off unless ``[metrics] enabled``.

With several workers ``glimpse serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before any worker starts; prometheus-client then keeps each process's
values in files there and a scrape adds them up. Recording is cheap and always safe:
when metrics are off nothing is exported, and nothing else changes.

Exported:
  glimpse_http_requests_total{method,route,status}      requests answered
  glimpse_http_request_duration_seconds{method,route}   latency histogram
  glimpse_http_request_bytes_total / _response_bytes_total   bytes received / sent
  glimpse_uploads_in_flight, glimpse_imports_in_flight  data transfers running now
  glimpse_store_errors_total{store}                     store failures
  glimpse_tasks{status}                                 tasks in the database, by status
  glimpse_db_pool_connections{state}                    this process's pool: in_use, idle
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                   30, 60, 300)

REQUESTS = Counter("glimpse_http_requests_total", "HTTP requests answered",
                   ["method", "route", "status"])
LATENCY = Histogram("glimpse_http_request_duration_seconds", "Time to answer a request",
                    ["method", "route"], buckets=LATENCY_BUCKETS)
BYTES_IN = Counter("glimpse_http_request_bytes_total", "Request body bytes received")
BYTES_OUT = Counter("glimpse_http_response_bytes_total", "Response body bytes sent")
UPLOADS = Gauge("glimpse_uploads_in_flight", "Image data uploads running",
                multiprocess_mode="livesum")
IMPORTS = Gauge("glimpse_imports_in_flight", "Image import tasks running",
                multiprocess_mode="livesum")
STORE_ERRORS = Counter("glimpse_store_errors_total", "Store operations that failed",
                       ["store"])


@contextmanager
def in_flight(gauge: Gauge) -> Iterator[None]:
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


class RuntimeCollector:
    """Read at scrape time: tasks by status (database), this process's pool use."""

    def __init__(self, db: Any):
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from glimpse.db.models import Task

        tasks = GaugeMetricFamily("glimpse_tasks", "Tasks in the database, by status",
                                  labels=["status"])
        with self.db.read() as session:
            rows = session.execute(select(Task.status, func.count()).group_by(Task.status))
            counts = dict(rows.all())
        for status in ("pending", "processing", "success", "failure"):
            tasks.add_metric([status], counts.get(status, 0))
        yield tasks
        pool = self.db.engine.pool
        conns = GaugeMetricFamily("glimpse_db_pool_connections",
                                  "Database connections of the scraping process's pool",
                                  labels=["state"])
        in_use = getattr(pool, "checkedout", lambda: 0)()
        idle = getattr(pool, "checkedin", lambda: 0)()
        conns.add_metric(["in_use"], in_use)
        conns.add_metric(["idle"], idle)
        yield conns


def registry(db: Any) -> CollectorRegistry:
    """What a scrape reads: every process's values (multi-process mode) or this one's,
    and the database's figures through ``db`` (a glimpse.db.engine.Database)."""
    reg = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(reg)
    else:
        for collector in (REQUESTS, LATENCY, BYTES_IN, BYTES_OUT, UPLOADS, IMPORTS,
                          STORE_ERRORS):
            reg.register(collector)
    reg.register(RuntimeCollector(db))
    return reg


def exposition(db: Any) -> tuple[bytes, str]:
    return generate_latest(registry(db)), CONTENT_TYPE_LATEST


class _Batch:
    """This process's request figures since the last flush.

    A request only updates these dictionaries (in the event loop); they reach the
    prometheus-client metrics (with several workers: this process's file, one
    write per value) at most FLUSH_DELAY seconds later, in one go, from the same
    event loop. Recording each request straight into the metrics (four locked mmap
    writes and the label look-ups) cost a GET 7.5% more server CPU, this 3.0%
    (bench/metrics.py, provisional, docs/operations.md). A scrape served by this
    process flushes first; other workers' figures are at most FLUSH_DELAY late.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        # (method, route) -> [sum of seconds, count per bucket (upper bounds, +Inf)]
        self.latency: dict[tuple[str, str], list] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.scheduled = False
        self.bounds = (*LATENCY_BUCKETS, float("inf"))

    def schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)
            except RuntimeError:  # no loop (a scrape flushes then)
                pass

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        entry = self.latency.get((method, route))
        if entry is None:
            entry = self.latency[(method, route)] = [0.0, [0] * len(self.bounds)]
        entry[0] += seconds
        entry[1][bisect.bisect_left(self.bounds, seconds)] += 1
        self.schedule()

    def flush(self) -> None:
        """Add what is pending to the metrics; in the event loop that records, or
        where none runs (a scrape, the process's exit)."""
        self.scheduled = False
        requests, self.requests = self.requests, {}
        latency, self.latency = self.latency, {}
        bytes_in, self.bytes_in = self.bytes_in, 0
        bytes_out, self.bytes_out = self.bytes_out, 0
        for key, n in requests.items():
            REQUESTS.labels(*key).inc(n)
        for key, (total, counts) in latency.items():
            child = LATENCY.labels(*key)
            # Histogram.observe adds to _sum and to the one bucket the value falls
            # in (buckets are stored apart and added up at collection): the same.
            child._sum.inc(total)
            for bucket, n in zip(child._buckets, counts, strict=True):
                if n:
                    bucket.inc(n)
        if bytes_in:
            BYTES_IN.inc(bytes_in)
        if bytes_out:
            BYTES_OUT.inc(bytes_out)


FLUSH_DELAY = 0.5
BATCH = _Batch()
atexit.register(BATCH.flush)


def flush() -> None:
    BATCH.flush()


class MetricsMiddleware:
    """Counts every request by its route template (never its raw path: ids would make
    the label set unbounded)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 0
        batch = BATCH

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if body:
                    batch.bytes_in += len(body)
                    batch.schedule()
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body":
                body = message.get("body", b"")
                if body:
                    batch.bytes_out += len(body)
                    batch.schedule()
            elif kind == "http.response.pathsend":
                batch.bytes_out += os.path.getsize(message["path"])
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            batch.request(scope.get("method", ""), template, status or 0,
                          time.perf_counter() - t0)
