"""uvicorn (uvloop + httptools) against Granian (ASGI, http.response.pathsend), side by side.

Both are started by ``glimpse serve --http-server uvicorn|granian``: the same
application, the same configuration
(2 workers, SQLite, file store, trusted identity headers) and the same data, one
server at a time, the order alternating each round (A/B, B/A, ...) so that load from
other work on this shared machine slows both alike. Each round also measures loopback
TCP sendfile of the same page-cached file (bench/limits.py), the ceiling for a
download. Sections: 1 GiB upload, 1 GiB download, 1 GiB Range download (bytes=1-,
which streams through Python under both servers), GET /v2/images/{id} p50 (one
keep-alive client) and 32 clients with wrk.

    .venv/bin/pip install -e '.[granian]'                 # Granian; wrk is a Debian package
    .venv/bin/python -m bench.http_servers              # 1 GiB, 3 rounds
    .venv/bin/python -m bench.http_servers --mib 64 --rounds 1 --wrk-seconds 2  # quick

Prints a table and writes the raw figures as JSON (--out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import limits, workload
from bench.servers import Server, start_glimpse

MIB = 1 << 20


def _target(server: Server, **extra: str) -> workload.Target:
    return workload.Target(server.name, server.endpoint, {**server.headers, **extra})


def measure(
    server: Server, data: workload.DataFile, wrk_seconds: float, small_only: bool = False
) -> dict[str, Any]:
    """One pass of every section against one server; every figure verified.
    ``small_only``: only GET p50 and 32 clients (on a small image)."""
    sess = workload.Session(_target(server), "")
    out: dict[str, Any] = {}
    try:
        if small_only:
            with sess.client() as client:
                image_id = sess.create(client, {"name": "bench-http-small"})["id"]
            _small_requests(sess, image_id, wrk_seconds, out)
            return out
        with sess.client() as client:
            image_id, seconds = workload.upload_image(sess, client, data, "bench-http")
            image = workload.get_image(client, image_id)
            out["upload_mib_s"] = round(data.size / MIB / seconds, 1)
            out["upload_verified"] = workload.image_matches(image, data)
        path = f"/v2/images/{image_id}/file"
        start = time.perf_counter()
        status, got = workload.raw_download(_target(server), path)
        seconds = time.perf_counter() - start
        out["download_mib_s"] = round(got / MIB / seconds, 1)
        out["download_verified"] = status == 200 and got == data.size
        start = time.perf_counter()
        status, got = workload.raw_download(_target(server, Range="bytes=1-"), path)
        seconds = time.perf_counter() - start
        out["range_mib_s"] = round(got / MIB / seconds, 1)
        out["range_verified"] = status == 206 and got == data.size - 1
        with sess.client() as client:  # the bytes themselves, once, untimed
            md5 = hashlib.md5(usedforsecurity=False)
            with client.stream("GET", path) as resp:
                for chunk in resp.iter_bytes(MIB):
                    md5.update(chunk)
            out["download_verified"] = out["download_verified"] and (
                md5.hexdigest() == data.md5 and resp.headers.get("Content-MD5") == data.md5
            )
        _small_requests(sess, image_id, wrk_seconds, out)
    finally:
        sess.cleanup()
    return out


def _small_requests(
    sess: workload.Session, image_id: str, wrk_seconds: float, out: dict[str, Any]
) -> None:
    lean = sess.lean()
    try:
        times = []
        for _ in range(300):
            start = time.perf_counter()
            resp = lean.get(f"/v2/images/{image_id}")
            times.append(time.perf_counter() - start)
            if resp.status_code != 200:
                raise workload.BenchError(f"GET answered {resp.status_code}")
    finally:
        lean.close()
    out["get_p50_ms"] = workload.ms(workload.pct(times, 50))
    conc = workload.section_concurrency(
        sess, workload.Sizes(conc_clients=32, conc_seconds=wrk_seconds)
    )
    out["clients32_req_s"] = conc.get("req_s")
    out["clients32_p50_ms"] = conc.get("p50_ms")
    out["clients32_verified"] = bool(conc.get("verified"))


FIGURES = (
    "upload_mib_s",
    "download_mib_s",
    "range_mib_s",
    "get_p50_ms",
    "clients32_req_s",
    "clients32_p50_ms",
)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each figure per server, and Granian / uvicorn ratios."""
    summary: dict[str, Any] = {}
    for name in ("uvicorn", "granian"):
        summary[name] = {
            f: statistics.median(r[name][f] for r in rounds)
            for f in FIGURES
            if all(r[name].get(f) is not None for r in rounds)
        }
        summary[name]["verified"] = all(
            v for r in rounds for k, v in r[name].items() if k.endswith("verified")
        )
    summary["loopback_sendfile_mib_s"] = statistics.median(
        r["loopback_sendfile_mib_s"] for r in rounds
    )
    for name in ("uvicorn", "granian"):
        summary[name]["download_of_sendfile"] = round(
            summary[name]["download_mib_s"] / summary["loopback_sendfile_mib_s"], 2
        )
    with_metrics = [r["uvicorn+metrics"] for r in rounds if "uvicorn+metrics" in r]
    if with_metrics:
        summary["uvicorn+metrics"] = {
            f: statistics.median(m[f] for m in with_metrics)
            for f in ("get_p50_ms", "clients32_req_s")
        }
        summary["metrics_overhead_get_p50"] = round(
            summary["uvicorn+metrics"]["get_p50_ms"] / summary["uvicorn"]["get_p50_ms"] - 1, 3
        )
    summary["granian_over_uvicorn"] = {
        f: round(summary["granian"][f] / summary["uvicorn"][f], 2)
        for f in FIGURES
        if f in summary["granian"] and f in summary["uvicorn"]
    }
    return summary


def _table(summary: dict[str, Any]) -> str:
    rows = [("figure", "uvicorn", "granian", "granian/uvicorn")]
    for f in FIGURES:
        rows.append(
            (
                f,
                str(summary["uvicorn"].get(f)),
                str(summary["granian"].get(f)),
                str(summary["granian_over_uvicorn"].get(f)),
            )
        )
    rows.append(
        (
            "download / loopback sendfile",
            str(summary["uvicorn"]["download_of_sendfile"]),
            str(summary["granian"]["download_of_sendfile"]),
            "",
        )
    )
    rows.append(("loopback sendfile MiB/s", str(summary["loopback_sendfile_mib_s"]), "", ""))
    rows.append(
        (
            "all verified",
            str(summary["uvicorn"]["verified"]),
            str(summary["granian"]["verified"]),
            "",
        )
    )
    if "uvicorn+metrics" in summary:
        rows.append(
            (
                "GET p50 ms with /metrics on (uvicorn)",
                str(summary["uvicorn+metrics"]["get_p50_ms"]),
                "",
                f"overhead {summary['metrics_overhead_get_p50']:+.1%}",
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(width[i]) for i, c in enumerate(r)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="image size (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wrk-seconds", type=float, default=5)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="JSON file for the raw figures")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-http-"))
    data = workload.data_file(str(workdir), args.mib)
    data.warm()
    servers = {"uvicorn": start_glimpse(str(workdir / "uvicorn"), workers=args.workers,
                                        http_server="uvicorn")}
    try:
        servers["granian"] = start_glimpse(str(workdir / "granian"), workers=args.workers,
                                           http_server="granian")
        # /metrics overhead (issue 18's goal: under 5% on GET p50), uvicorn with metrics on
        # (on the API port, as the default bind_port = 0 has it).
        servers["uvicorn+metrics"] = start_glimpse(
            str(workdir / "uvicorn-metrics"),
            workers=args.workers,
            extra_config="\n[metrics]\nenabled = true\n",
            http_server="uvicorn",
        )
        rounds = []
        for n in range(args.rounds):
            order = ("uvicorn", "granian") if n % 2 == 0 else ("granian", "uvicorn")
            result: dict[str, Any] = {"order": order, "load_before": os.getloadavg()[0]}
            for name in order:
                data.warm()
                result[name] = measure(servers[name], data, args.wrk_seconds)
                print(f"round {n + 1} {name}: {result[name]}", flush=True)
            result["uvicorn+metrics"] = measure(
                servers["uvicorn+metrics"], data, args.wrk_seconds, small_only=True
            )
            print(f"round {n + 1} uvicorn+metrics: {result['uvicorn+metrics']}", flush=True)
            result["loopback_sendfile_mib_s"] = limits._best(
                2, lambda: limits._loopback_sendfile(data.path)
            )
            result["load_after"] = os.getloadavg()[0]
            rounds.append(result)
    finally:
        for server in servers.values():
            server.stop()
    summary = summarize(rounds)
    report = {
        "mib": args.mib,
        "rounds": rounds,
        "summary": summary,
        "workers": args.workers,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out) if args.out else workdir / "http-servers.json"
    out.write_text(json.dumps(report, indent=1))
    print(_table(summary))
    print(f"raw figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
