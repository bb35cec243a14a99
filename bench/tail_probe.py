"""Where the 32-client GET tail comes from (docs/decisions/0016-postgresql-tail.md).

Starts ``glimpse serve`` (2 workers) on a fresh PostgreSQL or MariaDB database,
creates 50 images, then for --runs runs: 32 keep-alive connections GET those
images round robin for --seconds, every request's start and latency recorded,
while a separate connection sends ``SELECT 1`` to the same database server
every 5 ms. Prints, per run: p50/p99/max, how the 32 connections were spread
over the workers (``ss -tnp``), the independent ``SELECT 1`` latencies, and the
requests over 300 ms. A Python client: its figures are not wrk's (the bench's).

    .venv/bin/python -m bench.tail_probe --db postgresql --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import httpx

from bench.servers import IDENTITY, MYSQL_ADMIN_URL, PG_ADMIN_URL, start_glimpse

CLIENTS = 32
IMAGES = 50


def _owners(port: int) -> dict[int, int]:
    """Client port -> pid of the worker holding the accepted socket."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=False).stdout
    owners = {}
    for line in out.splitlines():
        pid = re.search(r"pid=(\d+)", line)
        ports = re.findall(r"127\.0\.0\.1:(\d+)", line)
        if pid and len(ports) >= 2:
            owners[int(ports[1])] = int(pid.group(1))
    return owners


async def _clients(port: int, ids: list[str], seconds: float) -> dict[str, Any]:
    head = "".join(f"{k}: {v}\r\n" for k, v in IDENTITY.items())
    records: list[tuple[float, float, int]] = []
    local_ports: dict[int, int] = {}
    owners: dict[int, int] = {}
    start = time.monotonic()

    async def client(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        local_ports[n] = writer.get_extra_info("sockname")[1]
        if len(local_ports) == CLIENTS:
            owners.update(_owners(port))
        i = n
        while time.monotonic() < start + seconds:
            sent = time.monotonic()
            writer.write(f"GET /v2/images/{ids[i % len(ids)]} HTTP/1.1\r\nHost: x\r\n"
                         f"{head}\r\n".encode())
            i += 1
            answer = await reader.readuntil(b"\r\n\r\n")
            if not answer.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {answer[:80]!r}")
            length = re.search(rb"(?i)content-length:\s*(\d+)", answer)
            await reader.readexactly(int(length.group(1)) if length else 0)
            records.append((sent - start, time.monotonic() - sent, n))
        writer.close()

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    worker_of = {n: owners.get(p) for n, p in local_ports.items()}
    return {"records": records, "worker_of": worker_of}


def _pinger(db: str, url: str, stop: threading.Event, out: list[float]) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if db == "postgresql":
        import psycopg

        conn = psycopg.connect(host=parsed.host, port=parsed.port or 5432,
                               user=parsed.username, password=parsed.password,
                               dbname="postgres", autocommit=True)
        query = lambda: conn.execute("SELECT 1").fetchall()  # noqa: E731
    else:
        import pymysql

        conn = pymysql.connect(host=parsed.host, port=parsed.port or 3306,
                               user=parsed.username, password=parsed.password or "",
                               autocommit=True)
        cursor = conn.cursor()
        query = lambda: (cursor.execute("SELECT 1"), cursor.fetchall())  # noqa: E731
    try:
        while not stop.is_set():
            sent = time.perf_counter()
            query()
            out.append(time.perf_counter() - sent)
            time.sleep(0.005)
    finally:
        conn.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("postgresql", "mariadb"), default="postgresql")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", help="also write the raw records here (JSON)")
    args = ap.parse_args(argv)
    admin_url = PG_ADMIN_URL if args.db == "postgresql" else MYSQL_ADMIN_URL
    results = []
    with tempfile.TemporaryDirectory(prefix="glimpse-tail-") as workdir, \
            start_glimpse(workdir, db=args.db) as server:
        port = int(server.endpoint.rsplit(":", 1)[1])
        with httpx.Client(base_url=server.endpoint, headers=IDENTITY, timeout=60) as client:
            ids = []
            for i in range(IMAGES):
                resp = client.post("/v2/images", json={
                    "name": f"tail-{i}", "disk_format": "raw", "container_format": "bare"})
                resp.raise_for_status()
                ids.append(resp.json()["id"])
        for run in range(args.runs):
            pings: list[float] = []
            stop = threading.Event()
            pinger = threading.Thread(target=_pinger, args=(args.db, admin_url, stop, pings))
            pinger.start()
            try:
                got = asyncio.run(_clients(port, ids, args.seconds))
            finally:
                stop.set()
                pinger.join()
            lat = [r[1] for r in got["records"]]
            spread = sorted(Counter(got["worker_of"].values()).values(), reverse=True)
            slow = sorted((round(s, 2), round(d, 3), got["worker_of"].get(n))
                          for s, d, n in got["records"] if d > 0.3)
            summary = {"run": run + 1, "requests": len(lat),
                       "req_s": round(len(lat) / args.seconds, 1),
                       "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
                       "max_ms": _pct(lat, 1.0), "connections_per_worker": spread,
                       "select1_p99_ms": _pct(pings, 0.99) if pings else None,
                       "select1_max_ms": _pct(pings, 1.0) if pings else None,
                       "over_300ms": len(slow)}
            print(json.dumps(summary), flush=True)
            print("  slow (start s, seconds, worker):", slow[:30], file=sys.stderr)
            results.append({**summary, "records": got["records"], "slow": slow})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
