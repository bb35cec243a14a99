"""What ``[metrics] enabled`` costs a GET, in server CPU time rather than wall clock.

Issue 18's goal is a /metrics overhead under 5% on GET p50. On a shared 2-core
machine the wall-clock p50 of one GET moves by more than 5% between two runs of
the same server, so this bench measures what the server itself spends: the CPU
time (user + system, from /proc/PID/stat, all threads, dead ones included) that
the worker processes use to answer N sequential keep-alive GETs of one image,
with metrics off and with metrics on (on the API port, multi-process mode with
several workers), in alternated rounds (off/on, then on/off, ...). Other
processes on the machine slow both servers' wall clock but hardly change the
CPU time a request needs. The wall-clock p50 is printed alongside for reference.

    .venv/bin/python -m bench.metrics [--rounds 20] [--gets 1500] [--workers 2] --out x.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import workload
from bench.servers import GlimpseServer, start_glimpse

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (each a whole process)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICKS


def run_stat_ns(pids: list[int]) -> int:
    """Nanoseconds on the CPU of the threads alive now (/proc/PID/task/*/schedstat):
    a finer clock than the ticks of cpu_seconds, blind to threads that ended."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def one_round(server: GlimpseServer, image_id: str, gets: int) -> dict[str, Any]:
    pids = server.pids()
    if len(pids) != server.workers:
        raise workload.BenchError(f"{len(pids)} workers, expected {server.workers}")
    client = workload.LeanClient(server.endpoint, server.headers)
    try:
        client.get(f"/v2/images/{image_id}")  # the connection, outside the count
        times = []
        cpu0, ns0 = cpu_seconds(pids), run_stat_ns(pids)
        for _ in range(gets):
            start = time.perf_counter()
            resp = client.get(f"/v2/images/{image_id}")
            times.append(time.perf_counter() - start)
            if resp.status_code != 200:
                raise workload.BenchError(f"GET answered {resp.status_code}")
        cpu1, ns1 = cpu_seconds(pids), run_stat_ns(pids)
    finally:
        client.close()
    return {
        "cpu_us_per_get": round((cpu1 - cpu0) / gets * 1e6, 1),
        "run_us_per_get": round((ns1 - ns0) / gets / 1e3, 1),
        "wall_p50_ms": workload.ms(workload.pct(times, 50)),
        "wall_mean_ms": round(statistics.fmean(times) * 1e3, 3),
    }


FIGURES = ("cpu_us_per_get", "run_us_per_get", "wall_p50_ms", "wall_mean_ms")


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in ("off", "on"):
        summary[name] = {f: round(statistics.median(r[name][f] for r in rounds), 3)
                         for f in FIGURES}
    for f in FIGURES:
        # each round's own on/off ratio: the pair ran back to back, under the same load
        ratios = sorted(r["on"][f] / r["off"][f] - 1 for r in rounds if r["off"][f])
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        summary[f"overhead_{f}"] = {
            "median": round(statistics.median(ratios), 4),
            "q1": round(quartiles[0], 4),
            "q3": round(quartiles[2], 4),
            "min": round(ratios[0], 4),
            "max": round(ratios[-1], 4),
        }
    return summary


def table(summary: dict[str, Any]) -> str:
    rows = [("figure", "metrics off", "metrics on",
             "overhead: median of the rounds' on/off (middle half; all)")]
    labels = {"cpu_us_per_get": "server CPU µs per GET (utime+stime)",
              "run_us_per_get": "server on-CPU µs per GET (schedstat)",
              "wall_p50_ms": "GET p50 ms (wall clock)",
              "wall_mean_ms": "GET mean ms (wall clock)"}
    for f in FIGURES:
        o = summary[f"overhead_{f}"]
        rows.append((labels[f], str(summary["off"][f]), str(summary["on"][f]),
                     f"{o['median']:+.1%} ({o['q1']:+.1%} .. {o['q3']:+.1%}; "
                     f"{o['min']:+.1%} .. {o['max']:+.1%})"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="off/on pairs (alternated)")
    parser.add_argument("--gets", type=int, default=1500, help="GETs per server per round")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="JSON file for the raw figures")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-metrics-"))
    servers: dict[str, GlimpseServer] = {}
    sessions: list[workload.Session] = []
    try:
        servers["off"] = start_glimpse(str(workdir / "off"), workers=args.workers)
        servers["on"] = start_glimpse(str(workdir / "on"), workers=args.workers,
                                      extra_config="\n[metrics]\nenabled = true\n")
        images = {}
        for name, server in servers.items():
            sess = workload.Session(workload.Target(name, server.endpoint, server.headers), "")
            sessions.append(sess)
            with sess.client() as client:
                images[name] = sess.create(client, {"name": f"bench-metrics-{name}"})["id"]
            one_round(server, images[name], 300)  # warm: imports, caches, the pool
        rounds = []
        for n in range(args.rounds):
            order = ("off", "on") if n % 2 == 0 else ("on", "off")
            result: dict[str, Any] = {"order": order, "load_before": os.getloadavg()[0]}
            for name in order:
                result[name] = one_round(servers[name], images[name], args.gets)
                print(f"round {n + 1} metrics {name}: {result[name]}", flush=True)
            result["load_after"] = os.getloadavg()[0]
            rounds.append(result)
        # metrics on must really count: the GETs show up in /metrics (as an admin)
        counted = _counted_gets(servers["on"])
        off_metrics = _status(servers["off"], "/metrics")
    finally:
        for sess in sessions:
            sess.cleanup()
        for server in servers.values():
            server.stop()
    summary = summarize(rounds)
    expected = 300 + 1 + args.rounds * (args.gets + 1)
    summary["verified"] = counted is not None and counted >= expected and off_metrics == 404
    report = {
        "rounds": rounds,
        "summary": summary,
        "gets_per_round": args.gets,
        "workers": args.workers,
        "counted_gets_with_metrics_on": counted,
        "expected_at_least": expected,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out) if args.out else workdir / "metrics.json"
    out.write_text(json.dumps(report, indent=1))
    print(table(summary))
    print(f"verified: {summary['verified']} (/metrics counted {counted} GETs of the image, "
          f"at least {expected} sent; /metrics with metrics off answers {off_metrics})")
    print(f"raw figures: {out}")
    return 0


def _status(server: GlimpseServer, path: str) -> int:
    import httpx

    return httpx.get(server.endpoint + path, headers=_admin(server), trust_env=False).status_code


def _admin(server: GlimpseServer) -> dict[str, str]:
    return {**server.headers, "X-Roles": "admin,member,reader"}


def _counted_gets(server: GlimpseServer) -> float | None:
    """GETs of one image with status 200, added up over the workers, from /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    resp = httpx.get(server.endpoint + "/metrics", headers=_admin(server), trust_env=False)
    if resp.status_code != 200:
        return None
    total = 0.0
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            labels = s.labels
            if (s.name.endswith("_total") and labels.get("method") == "GET"
                    and labels.get("status") == "200"
                    and labels.get("route") == "/v2/images/{image_id}"):
                total += s.value
    return total


if __name__ == "__main__":
    sys.exit(main())
