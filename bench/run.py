"""Orchestration: measure the machine's limits, start the servers, run each
section on each server in turn, then compare and judge against the goals.

The servers take turns section by section (Glimpse first in odd rounds,
Glance first in even ones), so a noisy neighbour slows both alike instead of
whichever happened to run during the noise. A human summary goes to stderr;
the JSON with every raw figure goes to stdout (and to --out).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench import limits, scale, servers
from bench.verdicts import Verdict, aggregate, cells, compare, goals_met
from bench.workload import SECTIONS, Sizes, Target, data_file, run_section

ALL_SECTIONS = (*SECTIONS, "scale")


# ---------------------------------------------------------------- rounds


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_rounds(targets: list[Target], sections: list[str], sizes: Sizes, data_dir: str,
               rounds: int) -> dict[str, dict[str, list[dict]]]:
    raw: dict[str, dict[str, list[dict]]] = {t.name: {} for t in targets}
    for n in range(1, rounds + 1):
        order = targets if n % 2 == 1 else list(reversed(targets))
        for section in sections:
            for target in order:
                t0 = time.monotonic()
                result = _run_one(section, target, sizes, data_dir)
                took = time.monotonic() - t0
                raw[target.name].setdefault(section, []).append(result)
                state = f"error: {result['error']}" if "error" in result else "ok"
                _say(f"[round {n}] {section:<12} {target.name:<8} {took:6.1f} s  {state}")
    return raw


def _run_one(section: str, target: Target, sizes: Sizes, data_dir: str) -> dict:
    try:
        return run_section(section, target, sizes, data_dir)
    except Exception as exc:  # noqa: BLE001 - one section failing must not stop the run
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- output


def table(verdicts: list[Verdict], primary: str, other: str | None) -> str:
    header = ["figure", primary.capitalize(), (other or "glance").capitalize(), "ratio",
              "goal", "met?"]
    rows = [header] + [cells(v, other is not None) for v in verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        line = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:4], widths[1:4],
                                                                       strict=True)]
        line += [row[4].ljust(widths[4]), row[5]]
        lines.append(" | ".join(line).rstrip())
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_text(result: dict, verdicts: list[Verdict], primary: str,
                 other: str | None) -> str:
    meta, lim = result["meta"], result["limits"]
    lines = [
        f"benchmark {meta['date']}  commit {meta['git_commit'][:12]}"
        f"{' (dirty)' if meta['git_dirty'] else ''}  db {meta['db']}  "
        f"{'quick' if meta['quick'] else 'full'} sizes, {meta['rounds']} round(s)",
        f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}",
        "limits (MiB/s): " + ", ".join(
            f"{k.removesuffix('_mib_s')} {v:,.0f}" for k, v in lim.items()
            if k.endswith("_mib_s")),
        "",
        table(verdicts, primary, other),
        "",
        "ratio = how many times better Glimpse is than Glance (above 1 = better);"
        " for limit rows, the fraction of the machine limit; for scale rows, p50 at the"
        " largest size / p50 at the smallest.",
    ]
    for note in result["notes"]:
        lines.append(f"note: {note}")
    met, total = goals_met(verdicts)
    missing = sum(1 for v in verdicts if v.goal and not v.measured)
    lines.append(f"goals met: {met} of {total}"
                 + (f" ({missing} not measured, counted as not met)" if missing else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- setup


def git_state() -> tuple[str, bool]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(servers.REPO_ROOT), *args],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return git("rev-parse", "HEAD") or "unknown", bool(git("status", "--porcelain"))


def default_out(date: str) -> str:
    """Where a run's JSON goes without --out: .tmp/bench-results/ in the repository."""
    stamp = date.replace(":", "").replace("-", "").replace("+0000", "Z")
    return str(servers.REPO_ROOT / ".tmp" / "bench-results" / f"bench-{stamp}.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (about 1-2 min a server)")
    ap.add_argument("--glance", action="store_true",
                    help="also start real Glance (start_glance.sh; GLANCE_VENV, GLANCE_START)")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "mariadb"), default="sqlite",
                    help="the database: a fresh one on the PostgreSQL ($BENCH_PG_URL) or "
                    "MariaDB ($BENCH_MYSQL_URL) server, for Glimpse and (with --glance) "
                    "another for Glance on the same server")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of every section (default 1)")
    ap.add_argument("--sections", default=",".join(ALL_SECTIONS),
                    help=f"comma-separated subset of {','.join(ALL_SECTIONS)}")
    ap.add_argument("--endpoint", help="measure this running server instead of starting Glimpse")
    ap.add_argument("--out", help="write the JSON here (default: "
                    ".tmp/bench-results/bench-DATE.json in the repository)")
    ap.add_argument("--workdir", help="work directory (default: a fresh temporary one); "
                    "its data/ keeps the generated test data between runs")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory and the PostgreSQL database")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in ALL_SECTIONS]
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {','.join(ALL_SECTIONS)}")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args


def _prepare_workdir(args: argparse.Namespace) -> tuple[str, Callable[[], None]]:
    """The work directory, and what to remove at the end."""
    if not args.workdir:
        workdir = tempfile.mkdtemp(prefix="glimpse-bench-")
        return workdir, (lambda: None) if args.keep else (
            lambda: shutil.rmtree(workdir, ignore_errors=True))
    workdir = os.path.abspath(args.workdir)
    # Server state from an earlier run would skew this one; the data cache stays.
    state = [os.path.join(workdir, name) for name in ("glimpse", "glance")]
    for path in state:
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(workdir, exist_ok=True)

    def clean() -> None:
        if not args.keep:
            for path in state:
                shutil.rmtree(path, ignore_errors=True)
    return workdir, clean


def _start_servers(args: argparse.Namespace, stack: contextlib.ExitStack, workdir: str,
                   notes: list[str], info: dict) -> tuple[list[Target], Any]:
    targets: list[Target] = []
    glimpse = None
    if args.endpoint:
        targets.append(Target("endpoint", args.endpoint.rstrip("/"), dict(servers.IDENTITY)))
        info["endpoint"] = {"endpoint": args.endpoint}
        notes.append("--endpoint: no worker PIDs, so no memory figures; scale skipped")
    else:
        _say(f"starting Glimpse ({args.db}) ...")
        glimpse = servers.start_glimpse(os.path.join(workdir, "glimpse"), args.db,
                                        keep_db=args.keep)
        stack.enter_context(glimpse)
        info["glimpse"] = glimpse.info
        targets.append(Target("glimpse", glimpse.endpoint, glimpse.headers, glimpse.pids))
    if args.glance:
        glance = _start_glance(workdir, notes, args.db)
        if glance is not None:
            stack.enter_context(glance)
            info["glance"] = glance.info
            targets.append(Target("glance", glance.endpoint, glance.headers, glance.pids))
    return targets, glimpse


def _start_glance(workdir: str, notes: list[str], db: str) -> servers.GlanceServer | None:
    venv = os.environ.get("GLANCE_VENV") or os.path.join(workdir, "glance-venv")
    _say(f"starting Glance (venv {venv}; created first if missing, which takes a while) ...")
    try:
        return servers.start_glance(os.path.join(workdir, "glance"), venv=venv, db=db)
    except servers.GlanceUnavailable as exc:
        notes.append(f"Glance skipped: {exc}")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"Glance skipped, it did not start: {exc}")
    _say(notes[-1])
    return None


def _run_scale(glimpse: servers.GlimpseServer, quick: bool) -> dict:
    levels = scale.QUICK_LEVELS if quick else scale.LEVELS
    _say(f"scale: seeding Glimpse's database up to {levels[-1]:,} images ...")
    t0 = time.monotonic()
    try:
        out = scale.run(glimpse.endpoint, glimpse.headers, glimpse.db_url,
                        glimpse.info["images_dir"], servers.BENCH_PROJECT, levels,
                        reps=20 if quick else 50)
    except Exception as exc:  # noqa: BLE001 - reported like a failed section
        out = {"error": f"{type(exc).__name__}: {exc}"}
    _say(f"scale done in {time.monotonic() - t0:.1f} s")
    return out


def _prepare_data(data_dir: str, sizes: Sizes) -> None:
    """Generate the test data before anything is timed."""
    for mib in sorted({sizes.upload_mib, sizes.import_mib}):
        data_file(data_dir, mib)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    commit, dirty = git_state()
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit, "git_dirty": dirty,
        "db": "external" if args.endpoint else args.db,
        "quick": args.quick, "rounds": args.rounds, "sections": args.sections,
        "sizes": dataclasses.asdict(sizes), "cpus": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
    }
    workdir, cleanup = _prepare_workdir(args)
    data_dir = os.path.join(workdir, "data")
    notes: list[str] = []
    info: dict[str, Any] = {}
    meta["workdir"] = workdir
    try:
        _say(f"work directory {workdir}; preparing data and measuring the machine's limits ...")
        _prepare_data(data_dir, sizes)
        lim = limits.measure(data_dir, sizes.upload_mib)
        with contextlib.ExitStack() as stack:
            targets, glimpse = _start_servers(args, stack, workdir, notes, info)
            sections = [s for s in args.sections if s in SECTIONS]
            raw = run_rounds(targets, sections, sizes, data_dir, args.rounds)
            scaled = None
            if "scale" in args.sections:
                scaled = (_run_scale(glimpse, args.quick) if glimpse is not None else
                          {"error": "not run: scale seeds Glimpse's own database"})
            if any(t.pids for t in targets):  # servers we started
                _say("stopping servers ...")
    finally:
        cleanup()
    meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = {name: {sec: aggregate(rs) for sec, rs in per.items()} for name, per in raw.items()}
    primary = targets[0].name
    other = "glance" if "glance" in summary else None
    if other is None:
        notes.append("no Glance in this run: only Glimpse's figures and the absolute goals")
    verdicts = compare(summary, primary, other, lim, scaled)
    result = {"meta": meta, "servers": info, "limits": lim, "results": raw,
              "summary": summary, "scale": scaled,
              "ratios": {f"{v.section}.{v.key}": v.ratio for v in verdicts
                         if v.ratio is not None},
              "verdicts": [dataclasses.asdict(v) for v in verdicts], "notes": notes}
    met, total = goals_met(verdicts)
    result["goals"] = {"met": met, "total": total}
    _say("")
    _say(summary_text(result, verdicts, primary, other))
    text = json.dumps(result, indent=2, default=str)
    print(text)
    out = args.out or default_out(meta["date"])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text + "\n")
    _say(f"raw JSON written to {out} (bench/report.py renders it as tables)")
    failed = any("error" in s for s in summary.get(primary, {}).values())
    return 1 if failed or (scaled is not None and "error" in scaled) else 0
