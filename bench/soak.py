"""Mixed soak: 32 clients against ``glimpse serve --workers 2`` for a fixed time.

    python -m bench.soak                      # 10 minutes on SQLite, then PostgreSQL
    python -m bench.soak --db postgresql --seconds 60 --json out.json

Each client loops over a weighted mix: list, show, PATCH (its own image, a counter
property: the last value answered 200 must be what the image shows at the end,
else an update was lost), members (add, list, remove), upload and download of a
16, 32 or 64 MiB image (checked against its md5 as it streams back), and a
glance-direct import (stage, import, wait for active). Loopback only.

Figures printed (and written with --json): requests per second, p50 / p99 per
operation, 5xx answers, transport errors, lost updates, wrong data, and the
workers' RSS and open file descriptors: the median of the samples of the first
window after warm-up against the median of the last window, as growth in percent
(medians of several one-second samples, so one upload's buffers in flight do not
decide the figure). Memory and descriptors are summed over the workers. The
growth of the windows' lowest RSS is given too (``rss_floor_growth_pct``): in a
short run, uploads in flight can raise a whole window's median, while a leak raises
the floor as well.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.servers import IDENTITY, start_glimpse
from bench.workload import MIB, DataFile, data_file, pct

OTHER_PROJECT = "7d2c4b1a0e9f4d3c8b7a6f5e4d3c2b1a"
SIZES_MIB = (16, 32, 64)
# op -> weight. Data-heavy ops are rare but each moves tens of MiB.
MIX = {"list": 30, "show": 25, "patch": 25, "members": 8, "transfer": 7, "import": 5}
HEAVY = {"transfer", "import"}
PATCH_TYPE = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    pids: tuple[int, ...]


class ResourceSampler(threading.Thread):
    """RSS and fd counts of the workers, once a second."""

    def __init__(self, pids: Any, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.pids = pids
        self.interval = interval
        self.samples: list[Sample] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            pids = tuple(sorted(self.pids()))
            rss = [_rss_mib(p) for p in pids]
            fds = [_fds(p) for p in pids]
            if pids and None not in rss and None not in fds:
                self.samples.append(Sample(time.monotonic(), sum(rss), sum(fds), pids))


def growth(samples: list[Sample], start: float, end: float, window: float) -> dict[str, Any]:
    """Median of the first ``window`` seconds after ``start`` against the median of the
    last ``window`` seconds before ``end``."""
    first = [s for s in samples if start <= s.at < start + window]
    last = [s for s in samples if end - window <= s.at <= end]
    if len(first) < 3 or len(last) < 3:
        return {"rss_growth_pct": None, "rss_floor_growth_pct": None, "fd_growth_pct": None,
                "samples": len(samples)}
    rss0, rss1 = (statistics.median(s.rss_mib for s in w) for w in (first, last))
    floor0, floor1 = (min(s.rss_mib for s in w) for w in (first, last))
    fd0, fd1 = (statistics.median(s.fds for s in w) for w in (first, last))
    return {
        "rss_mib_after_warmup": round(rss0, 1),
        "rss_mib_at_end": round(rss1, 1),
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 1),
        "rss_floor_growth_pct": round(100 * (floor1 - floor0) / floor0, 1),
        "fds_after_warmup": fd0,
        "fds_at_end": fd1,
        "fd_growth_pct": round(100 * (fd1 - fd0) / fd0, 1),
        "workers_replaced": first[0].pids != last[-1].pids,
        "samples": len(samples),
    }


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    transport_errors: Counter = field(default_factory=Counter)
    wrong_data: int = 0
    failures: list[str] = field(default_factory=list)
    bytes_moved: int = 0

    def note(self, op: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies[op].append(seconds)
            self.statuses[status] += 1

    def fail(self, text: str) -> None:
        with self.lock:
            if len(self.failures) < 20:
                self.failures.append(text)


class Client(threading.Thread):
    def __init__(
        self,
        index: int,
        endpoint: str,
        files: list[DataFile],
        tally: Tally,
        stop: threading.Event,
        record_from: list[float],
    ) -> None:
        super().__init__(daemon=True, name=f"soak-{index}")
        self.rng = random.Random(index)
        self.endpoint, self.files, self.tally, self.stop = endpoint, files, tally, stop
        self.record_from = record_from  # [t]: latencies before t are warm-up
        self.http = httpx.Client(
            base_url=endpoint,
            headers={**IDENTITY, "Accept": "application/json"},
            timeout=httpx.Timeout(300.0, connect=10.0),
            trust_env=False,
        )
        self.mine: str | None = None
        self.heavy_until = float("inf")  # no new transfer after this (monotonic)
        self.acked = 0  # last counter value answered 200
        self.sent = 0

    # -------------------------------------------------------------- plumbing

    def call(
        self, op: str, method: str, path: str, ok: tuple[int, ...], **kw: Any
    ) -> httpx.Response | None:
        t0 = time.monotonic()
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            with self.tally.lock:
                self.tally.transport_errors[f"{op}: {type(exc).__name__}"] += 1
            return None
        if t0 >= self.record_from[0]:
            self.tally.note(op, time.monotonic() - t0, r.status_code)
        else:
            with self.tally.lock:
                self.tally.statuses[r.status_code] += 1
        if r.status_code not in ok:
            self.tally.fail(f"{method} {path} -> {r.status_code}: {r.text[:200]}")
            return None
        return r

    def create(self, name: str) -> str | None:
        r = self.call(
            "create",
            "POST",
            "/v2/images",
            (201,),
            json={"name": name, "disk_format": "raw", "container_format": "bare"},
        )
        return r.json()["id"] if r is not None else None

    # -------------------------------------------------------------- ops

    def op_list(self) -> None:
        params = self.rng.choice(
            [
                {"limit": 20},
                {"limit": 5, "sort": "name:asc"},
                {"status": "active"},
                {"visibility": "shared"},
            ]
        )
        self.call("list", "GET", "/v2/images", (200,), params=params)

    def op_show(self) -> None:
        self.call("show", "GET", f"/v2/images/{self.mine}", (200,))

    def op_patch(self) -> None:
        self.sent += 1
        body = [
            {"op": "add", "path": "/x_soak_counter", "value": str(self.sent)},
            {"op": "add", "path": "/x_soak_note", "value": "n" * self.rng.randint(1, 200)},
        ]
        r = self.call(
            "patch", "PATCH", f"/v2/images/{self.mine}", (200,), json=body, headers=PATCH_TYPE
        )
        if r is not None:
            self.acked = self.sent

    def op_members(self) -> None:
        base = f"/v2/images/{self.mine}/members"
        if self.call("member-add", "POST", base, (200,), json={"member": OTHER_PROJECT}):
            self.call("member-list", "GET", base, (200,))
            self.call("member-delete", "DELETE", f"{base}/{OTHER_PROJECT}", (204,))

    def op_transfer(self) -> None:
        data = self.rng.choice(self.files)
        image_id = self.create("soak-data")
        if image_id is None:
            return
        try:
            if self.put_data("upload", image_id, "file", data) is None:
                return
            self.download(image_id, data)
        finally:
            self.call("delete", "DELETE", f"/v2/images/{image_id}", (204,))

    def put_data(
        self, op: str, image_id: str, where: str, data: DataFile
    ) -> httpx.Response | None:
        """PUT the file's bytes to /v2/images/{id}/<where> (file or stage), streamed;
        None when the call failed (as ``call``)."""
        with open(data.path, "rb") as f:
            return self.call(
                op,
                "PUT",
                f"/v2/images/{image_id}/{where}",
                (204,),
                content=iter(lambda: f.read(MIB), b""),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(data.size),
                },
            )

    def download(self, image_id: str, data: DataFile) -> None:
        t0 = time.monotonic()
        md5, size = hashlib.md5(usedforsecurity=False), 0
        try:
            with self.http.stream("GET", f"/v2/images/{image_id}/file") as r:
                status = r.status_code
                for piece in r.iter_bytes(MIB):
                    md5.update(piece)
                    size += len(piece)
        except httpx.HTTPError as exc:
            with self.tally.lock:
                self.tally.transport_errors[f"download: {type(exc).__name__}"] += 1
            return
        if t0 >= self.record_from[0]:
            self.tally.note("download", time.monotonic() - t0, status)
        if status != 200 or size != data.size or md5.hexdigest() != data.md5:
            with self.tally.lock:
                self.tally.wrong_data += status == 200
            self.tally.fail(f"download {image_id}: {status}, {size} bytes")
        with self.tally.lock:
            self.tally.bytes_moved += 2 * data.size

    def op_import(self) -> None:
        data = self.files[0]
        image_id = self.create("soak-import")
        if image_id is None:
            return
        try:
            if self.put_data("stage", image_id, "stage", data) is None:
                return
            t0 = time.monotonic()
            if (
                self.call(
                    "import",
                    "POST",
                    f"/v2/images/{image_id}/import",
                    (202,),
                    json={"method": {"name": "glance-direct"}},
                )
                is None
            ):
                return
            deadline = t0 + 300
            while time.monotonic() < deadline:
                r = self.call("import-poll", "GET", f"/v2/images/{image_id}", (200,))
                status = r.json()["status"] if r is not None else "?"
                if status == "active":
                    if t0 >= self.record_from[0]:
                        self.tally.note("import-to-active", time.monotonic() - t0, 200)
                    return
                if status not in ("importing", "uploading"):
                    self.tally.fail(f"import {image_id} ended {status}")
                    return
                time.sleep(0.2)
            self.tally.fail(f"import {image_id} not active after 300 s")
        finally:
            self.call("delete", "DELETE", f"/v2/images/{image_id}", (204,))

    # -------------------------------------------------------------- loop

    def run(self) -> None:
        ops = list(MIX)
        weights = [MIX[o] for o in ops]
        try:
            self.mine = self.create(f"soak-{self.name}")
            while self.mine is not None and not self.stop.is_set():
                op = self.rng.choices(ops, weights)[0]
                if op in HEAVY and time.monotonic() > self.heavy_until:
                    op = "show"  # near the end: no transfer the run would wait for
                getattr(self, f"op_{op}")()
        except Exception as exc:  # noqa: BLE001 - a client bug is a finding, not a hang
            self.tally.fail(f"client {self.name} crashed: {exc!r}")

    def lost_update(self) -> bool:
        if self.mine is None:
            return False
        r = self.http.get(f"/v2/images/{self.mine}")
        shown = int(r.json().get("x_soak_counter", 0)) if r.status_code == 200 else -1
        # A PATCH whose answer was lost may have committed: later values are fine.
        return not (self.acked <= shown <= self.sent)


def run_soak(
    db: str = "sqlite",
    seconds: float = 600,
    clients: int = 32,
    workers: int = 2,
    workdir: str | None = None,
    warmup: float | None = None,
    window: float | None = None,
) -> dict[str, Any]:
    """One soak run; returns its figures (see the module docstring)."""
    warmup = warmup if warmup is not None else min(60.0, seconds / 4)
    window = window if window is not None else max(5.0, min(60.0, (seconds - warmup) / 4))
    own_dir = workdir is None
    root = Path(workdir or tempfile.mkdtemp(prefix=f"glimpse-soak-{db}-"))
    # Seeded and cached between runs (bench/workload.py's data files).
    cache = os.environ.get("GLIMPSE_BENCH_DATA") or os.path.join(
        tempfile.gettempdir(), "glimpse-bench-data"
    )
    files = [data_file(cache, mib) for mib in SIZES_MIB]
    server = start_glimpse(str(root / "server"), db=db, workers=workers)
    tally = Tally()
    stop = threading.Event()
    try:
        started = time.monotonic()
        record_from = [started + warmup]
        sampler = ResourceSampler(server.pids)
        sampler.start()
        threads = [
            Client(i, server.endpoint, files, tally, stop, record_from) for i in range(clients)
        ]
        for t in threads:
            t.heavy_until = started + seconds - min(15.0, seconds / 6)
            t.start()
        stop.wait(seconds)
        ended = time.monotonic()
        stop.set()
        for t in threads:
            t.join(600)
        sampler.halt.set()
        sampler.join(5)
        lost = sum(t.lost_update() for t in threads)
        for t in threads:
            t.http.close()
        log = Path(server.info["log"]).read_text(errors="replace")
    finally:
        server.stop()
    measured = ended - record_from[0]
    ops = {
        op: {
            "count": len(v),
            "p50_ms": round(1000 * pct(v, 50), 1),
            "p99_ms": round(1000 * pct(v, 99), 1),
        }
        for op, v in sorted(tally.latencies.items())
        if v
    }
    requests = sum(len(v) for v in tally.latencies.values())
    figures = {
        "db": db,
        "seconds": round(ended - started, 1),
        "warmup_s": warmup,
        "window_s": window,
        "clients": clients,
        "workers": workers,
        "requests_per_s": round(requests / measured, 1) if measured > 0 else None,
        "mib_moved_per_s": round(tally.bytes_moved / MIB / (ended - started), 1),
        "status_counts": {str(k): v for k, v in sorted(tally.statuses.items())},
        "5xx": sum(v for k, v in tally.statuses.items() if k >= 500),
        "transport_errors": dict(tally.transport_errors),
        "lost_updates": lost,
        "wrong_data": tally.wrong_data,
        "unhandled_errors_logged": log.count("Unhandled error"),
        "ops": ops,
        "failures": tally.failures,
        **growth(sampler.samples, record_from[0], ended, window),
    }
    if own_dir:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return figures


def report(fig: dict[str, Any]) -> str:
    lines = [
        f"soak on {fig['db']}: {fig['seconds']} s, {fig['clients']} clients, "
        f"{fig['workers']} workers (warm-up {fig['warmup_s']} s)",
        f"  {fig['requests_per_s']} req/s, {fig['mib_moved_per_s']} MiB/s of image data",
        f"  5xx {fig['5xx']}, transport errors {sum(fig['transport_errors'].values())}, "
        f"lost updates {fig['lost_updates']}, wrong data {fig['wrong_data']}, "
        f"'Unhandled error' in the log {fig['unhandled_errors_logged']}",
        f"  workers' RSS {fig.get('rss_mib_after_warmup')} -> {fig.get('rss_mib_at_end')}"
        f" MiB ({fig['rss_growth_pct']}%; lowest sample {fig.get('rss_floor_growth_pct')}%),"
        f" open fds {fig.get('fds_after_warmup')} -> "
        f"{fig.get('fds_at_end')} ({fig['fd_growth_pct']}%)",
        f"  {'operation':<18}{'count':>7}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for op, v in fig["ops"].items():
        lines.append(f"  {op:<18}{v['count']:>7}{v['p50_ms']:>10}{v['p99_ms']:>10}")
    for failure in fig["failures"][:5]:
        lines.append(f"  ! {failure}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--db",
        action="append",
        choices=["sqlite", "postgresql", "mysql"],
        help="database (repeatable; default: sqlite and postgresql)",
    )
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    results = []
    for db in args.db or ["sqlite", "postgresql"]:
        fig = run_soak(db, args.seconds, args.clients, args.workers)
        print(report(fig), flush=True)
        results.append(fig)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    bad = any(
        f["5xx"] or f["lost_updates"] or f["wrong_data"] or f["transport_errors"] for f in results
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
