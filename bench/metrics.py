"""What ``[metrics] enabled`` costs a GET, in server CPU time rather than wall clock.

Issue 18's goal is a /metrics overhead under 5% on GET p50. On a shared 2-core
machine the wall-clock p50 of one GET moves by more than 5% between two runs of
the same server, so this bench measures what the server itself spends: the CPU
time (user + system, from /proc/PID/stat, all threads, dead ones included) that
the worker processes use to answer sequential keep-alive GETs of one image,
with metrics off and with metrics on (on the API port, multi-process mode with
several workers). The two servers take turns in short blocks (--block-gets GETs,
then the other server, the order swapped each pair), so whatever else the
machine does at a moment falls on both alike; the overhead is the ratio of the
two servers' summed CPU time, with a 95% bootstrap interval over the pairs. The
CPU clocks are the threads' on-CPU nanoseconds (/proc/PID/task/*/schedstat) and,
as a check, the processes' utime+stime ticks. (Hardware instruction counters
would be steadier still, but this machine's VM has none.) The wall-clock p50 is
printed alongside for reference.

    .venv/bin/python -m bench.metrics [--pairs 300] [--block-gets 100] [--workers 2] --out x.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
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


class Timed:
    """One server's GETs, in blocks, with the CPU its workers used in each."""

    def __init__(self, server: GlimpseServer, image_id: str):
        self.server = server
        self.path = f"/v2/images/{image_id}"
        self.pids = server.pids()
        if len(self.pids) != server.workers:
            raise workload.BenchError(f"{len(self.pids)} workers, expected {server.workers}")
        self.client = workload.LeanClient(server.endpoint, server.headers)
        self.client.get(self.path)  # the connection, outside the count
        self.sent = 1
        self.run_ns: list[int] = []  # per block
        self.cpu_s: list[float] = []
        self.times: list[float] = []

    def block(self, gets: int) -> None:
        cpu0, ns0 = cpu_seconds(self.pids), run_stat_ns(self.pids)
        for _ in range(gets):
            start = time.perf_counter()
            resp = self.client.get(self.path)
            self.times.append(time.perf_counter() - start)
            if resp.status_code != 200:
                raise workload.BenchError(f"GET answered {resp.status_code}")
        self.run_ns.append(run_stat_ns(self.pids) - ns0)
        self.cpu_s.append(cpu_seconds(self.pids) - cpu0)
        self.sent += gets

    def close(self) -> None:
        self.client.close()

    @classmethod
    def merged(cls, parts: list[Timed]) -> Timed:
        whole = cls.__new__(cls)
        whole.run_ns = [x for p in parts for x in p.run_ns]
        whole.cpu_s = [x for p in parts for x in p.cpu_s]
        whole.times = [x for p in parts for x in p.times]
        whole.sent = sum(p.sent for p in parts)
        return whole


def _bootstrap(off: list[float], on: list[float], seed: int = 0,
               samples: int = 2000) -> tuple[float, float]:
    """95% interval of sum(on)/sum(off) - 1, resampling the pairs."""
    rng = random.Random(seed)
    n = len(off)
    ratios = []
    for _ in range(samples):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(sum(on[i] for i in picks) / sum(off[i] for i in picks) - 1)
    ratios.sort()
    return ratios[int(0.025 * samples)], ratios[int(0.975 * samples) - 1]


def summarize(timed: dict[str, Timed], block_gets: int) -> dict[str, Any]:
    off, on = timed["off"], timed["on"]
    summary: dict[str, Any] = {}
    for name, t in timed.items():
        gets = block_gets * len(t.run_ns)
        summary[name] = {
            "run_us_per_get": round(sum(t.run_ns) / gets / 1e3, 1),
            "cpu_us_per_get": round(sum(t.cpu_s) / gets * 1e6, 1),
            "wall_p50_ms": workload.ms(workload.pct(t.times, 50)),
            "wall_mean_ms": round(statistics.fmean(t.times) * 1e3, 3),
        }
    for f, a, b in (("run_us_per_get", off.run_ns, on.run_ns),
                    ("cpu_us_per_get", off.cpu_s, on.cpu_s)):
        low, high = _bootstrap(a, b)
        summary[f"overhead_{f}"] = {"ratio": round(sum(b) / sum(a) - 1, 4),
                                    "ci95": [round(low, 4), round(high, 4)]}
    for f in ("wall_p50_ms", "wall_mean_ms"):
        summary[f"overhead_{f}"] = {"ratio": round(summary["on"][f] / summary["off"][f] - 1, 4)}
    return summary


LABELS = {"run_us_per_get": "server on-CPU µs per GET (schedstat)",
          "cpu_us_per_get": "server CPU µs per GET (utime+stime)",
          "wall_p50_ms": "GET p50 ms (wall clock)",
          "wall_mean_ms": "GET mean ms (wall clock)"}


def table(summary: dict[str, Any]) -> str:
    rows = [("figure", "metrics off", "metrics on", "overhead (95% interval)")]
    for f, label in LABELS.items():
        o = summary[f"overhead_{f}"]
        ci = (f" ({o['ci95'][0]:+.1%} .. {o['ci95'][1]:+.1%})" if "ci95" in o
              else " (wall clock: not resolved here)")
        rows.append((label, str(summary["off"][f]), str(summary["on"][f]),
                     f"{o['ratio']:+.1%}{ci}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=150, help="off/on block pairs a phase")
    parser.add_argument("--phases", type=int, default=4,
                        help="each with two freshly started servers")
    parser.add_argument("--block-gets", type=int, default=100, help="GETs per block")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="JSON file for the raw figures")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-metrics-"))
    load_before = os.getloadavg()[0]
    phases = []
    for phase in range(args.phases):
        # fresh processes each phase, started in swapped order: no one process's
        # luck (memory layout, which worker took the connection) decides
        names = ("off", "on") if phase % 2 == 0 else ("on", "off")
        phases.append(_phase(workdir / f"phase{phase}", names, args))
        print(f"phase {phase + 1}: " + ", ".join(
            f"{n} {sum(phases[-1][0][n].run_ns) / 1e3 / (args.block_gets * args.pairs):.1f} µs"
            for n in ("off", "on")), flush=True)
    timed = {name: Timed.merged([p[0][name] for p in phases]) for name in ("off", "on")}
    counted = sum(p[1] for p in phases if p[1] is not None)
    expected = sum(p[2] for p in phases)
    off_metrics = sorted({p[3] for p in phases})
    if any(p[1] is None for p in phases):
        counted = None
    summary = summarize(timed, args.block_gets)
    summary["verified"] = (counted is not None and counted >= expected
                           and off_metrics == [404])
    # one ratio per phase (per pair of processes): the spread between processes
    summary["overhead_run_us_per_get"]["phases"] = [
        round(sum(p[0]["on"].run_ns) / sum(p[0]["off"].run_ns) - 1, 4) for p in phases]
    report = {
        "summary": summary,
        "pairs": args.pairs,
        "phases": args.phases,
        "block_gets": args.block_gets,
        "workers": args.workers,
        "blocks": {name: {"run_ns": t.run_ns, "cpu_s": t.cpu_s} for name, t in timed.items()},
        "counted_gets_with_metrics_on": counted,
        "expected_at_least": expected,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out) if args.out else workdir / "metrics.json"
    out.write_text(json.dumps(report, indent=1))
    print(table(summary))
    print("on-CPU overhead of each phase (fresh processes): " + ", ".join(
        f"{r:+.1%}" for r in summary["overhead_run_us_per_get"]["phases"]))
    print(f"verified: {summary['verified']} (/metrics counted {counted} GETs of the image, "
          f"at least {expected} sent; /metrics with metrics off answers {off_metrics})")
    print(f"load average {load_before:.1f} before, {report['load_after']:.1f} after "
          f"({os.cpu_count()} CPUs); raw figures: {out}")
    return 0


def _phase(root: Path, names: tuple[str, str], args: argparse.Namespace,
           ) -> tuple[dict[str, Timed], float | None, int, int]:
    servers: dict[str, GlimpseServer] = {}
    sessions: list[workload.Session] = []
    timed: dict[str, Timed] = {}
    try:
        for name in names:
            extra = "\n[metrics]\nenabled = true\n" if name == "on" else ""
            servers[name] = start_glimpse(str(root / name), workers=args.workers,
                                          extra_config=extra)
        for name, server in servers.items():
            sess = workload.Session(workload.Target(name, server.endpoint, server.headers), "")
            sessions.append(sess)
            with sess.client() as client:
                image_id = sess.create(client, {"name": f"bench-metrics-{name}"})["id"]
            timed[name] = Timed(server, image_id)
            timed[name].block(300)  # warm: imports, caches, the pool
            timed[name].run_ns.clear()
            timed[name].cpu_s.clear()
            timed[name].times.clear()
        for n in range(args.pairs):
            for name in (("off", "on") if n % 2 == 0 else ("on", "off")):
                timed[name].block(args.block_gets)
        # metrics on must really count: the GETs show up in /metrics (as an admin)
        time.sleep(1)  # each worker's batch: FLUSH_DELAY
        counted = _counted_gets(servers["on"])
        off_metrics = _status(servers["off"], "/metrics")
        return timed, counted, timed["on"].sent, off_metrics
    finally:
        for t in timed.values():
            t.close()
        for sess in sessions:
            sess.cleanup()
        for server in servers.values():
            server.stop()


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
