"""Graceful restart under load: ``glimpse serve --workers 2`` and 32 clients
(list, show, PATCH of their own image, create + upload + download of a small
one); SIGTERM to one of the two worker processes mid-load.

The worker stops taking connections, finishes what it is doing and exits; the
other worker keeps serving, and the supervisor starts a new one. No client sees
an error other than a connection the server closed before answering (which a
client retries: the request never reached the application). Each such retry is
counted and the retried request must then succeed.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from tests.faults.load import JSON

CLIENTS = 32
SMALL = os.urandom(256 * 1024)
# What a server closing an idle keep-alive connection looks like to a client.
RETRIABLE = (httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError, httpx.WriteError)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _workers(log: Path, parent: int) -> list[int]:
    """Worker processes that are serving (the parent's other children, such as
    multiprocessing's resource tracker, are not workers): each logs that it is ready,
    under uvicorn and Granian alike (glimpse.api.app)."""
    ready = [int(m) for m in re.findall(r"Worker ready \(process (\d+)\)", log.read_text())]
    live = set(_children(parent))
    return [p for p in ready if p in live]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


class Clients:
    def __init__(self, url: str):
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.retried: Counter[str] = Counter()
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(CLIENTS)
        ]

    def call(self, api: httpx.Client, op: str, method: str, path: str, **kw) -> httpx.Response:
        for attempt in (1, 2, 3):
            try:
                r = api.request(method, path, **kw)
                break
            except RETRIABLE as exc:
                if attempt == 3:
                    with self.lock:
                        self.errors.append(f"{op}: {exc!r} after retries")
                    raise
                with self.lock:
                    self.retried[type(exc).__name__] += 1
            except httpx.HTTPError as exc:
                with self.lock:
                    self.errors.append(f"{op}: {exc!r}")
                raise
        with self.lock:
            self.statuses[(op, r.status_code)] += 1
        return r

    def run(self, i: int) -> None:
        patch = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
        raw = {"Content-Type": "application/octet-stream"}
        n = 0
        with httpx.Client(base_url=self.url, headers=JSON, timeout=60) as api:
            try:
                mine = self.call(
                    api,
                    "create",
                    "POST",
                    "/v2/images",
                    json={"name": f"c{i}", "disk_format": "raw", "container_format": "bare"},
                ).json()["id"]
                while not self.stop.is_set():
                    n += 1
                    self.call(api, "list", "GET", "/v2/images?limit=10")
                    self.call(api, "show", "GET", f"/v2/images/{mine}")
                    self.call(
                        api,
                        "patch",
                        "PATCH",
                        f"/v2/images/{mine}",
                        headers=patch,
                        json=[{"op": "add", "path": "/x_n", "value": str(n)}],
                    )
                    if n % 5 == 0:
                        new = self.call(
                            api,
                            "create",
                            "POST",
                            "/v2/images",
                            json={
                                "name": f"u{i}",
                                "disk_format": "raw",
                                "container_format": "bare",
                            },
                        ).json()["id"]
                        self.call(
                            api,
                            "upload",
                            "PUT",
                            f"/v2/images/{new}/file",
                            content=SMALL,
                            headers=raw,
                        )
                        got = self.call(api, "download", "GET", f"/v2/images/{new}/file")
                        if got.content != SMALL:
                            with self.lock:
                                self.errors.append("download returned other bytes")
                        self.call(api, "delete", "DELETE", f"/v2/images/{new}")
            except httpx.HTTPError:
                pass  # recorded


# PostgreSQL: what several workers share in production (SQLite's file works too,
# measured, but the restart path is the same and CI time is better spent elsewhere).
@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sigterm_to_one_of_two_workers_under_load(db_url, tmp_path):
    server = start_server(
        tmp_path,
        db_url,
        workers=2,
        config_text="""
graceful_shutdown_timeout = 30
""",
    )
    clients = Clients(server.url)
    try:
        deadline = time.monotonic() + 60
        # Both workers serving (a signal before a worker has installed its
        # handlers is not a graceful restart).
        while len(workers := _workers(server.log, server.proc.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.1)
        for t in clients.threads:
            t.start()
        time.sleep(3)
        victim = workers[0]
        before = sum(clients.statuses.values())
        os.kill(victim, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while _alive(victim):
            assert time.monotonic() < deadline, "the worker did not exit"
            time.sleep(0.1)
        time.sleep(3)
        during = sum(clients.statuses.values()) - before
        clients.stop.set()
        for t in clients.threads:
            t.join(120)
        replaced = [p for p in _workers(server.log, server.proc.pid) if p != victim]
        print(
            f"\nanswers {sum(clients.statuses.values())} ({during} after the SIGTERM), "
            f"retried connections {dict(clients.retried)}, workers now {len(replaced)}"
        )
        assert clients.errors == []
        bad = {k: v for k, v in clients.statuses.items() if k[1] >= 400}
        assert bad == {}
        assert during > CLIENTS  # the other worker kept serving
        assert server.proc.poll() is None  # the server as a whole lives on
        assert "Unhandled error" not in server.log.read_text()
    finally:
        clients.stop.set()
        server.stop()
