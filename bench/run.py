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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import limits, scale, servers
from bench.workload import SECTIONS, Sizes, Target, data_file, run_section

ALL_SECTIONS = (*SECTIONS, "scale")
HIGHER, LOWER = "higher", "lower"


# ---------------------------------------------------------------- goals


@dataclass(frozen=True)
class Figure:
    """One row of the comparison: a figure of a section, which direction is
    better, and the factor by which Glimpse must beat Glance (if any)."""

    section: str
    key: str
    label: str
    better: str
    factor: float | None = None


FIGURES = (
    Figure("upload", "mib_s", "upload MiB/s", HIGHER, 3),
    Figure("download", "mib_s", "download MiB/s", HIGHER, 1.5),
    Figure("import", "seconds", "import create->active s", LOWER, 3),
    Figure("import", "stage_mib_s", "import stage MiB/s", HIGHER),
    Figure("import", "import_seconds", "import import->active s", LOWER),
    Figure("metadata", "creates_per_s", "creates/s", HIGHER, 10),
    Figure("metadata", "create_p50_ms", "create p50 ms", LOWER),
    Figure("metadata", "get_p50_ms", "GET p50 ms", LOWER, 8),
    Figure("metadata", "get_p95_ms", "GET p95 ms", LOWER),
    Figure("metadata", "list_p50_ms", "list page p50 ms", LOWER, 8),
    Figure("metadata", "list_p95_ms", "list page p95 ms", LOWER),
    Figure("metadata", "filter_name_p50_ms", "list ?name= p50 ms", LOWER, 5),
    Figure("metadata", "filter_tag_p50_ms", "list ?tag= p50 ms", LOWER, 5),
    Figure("metadata", "filter_property_p50_ms", "list ?property p50 ms", LOWER, 5),
    Figure("metadata", "sort_created_p50_ms", "list sort created_at p50 ms", LOWER, 5),
    Figure("metadata", "sort_name_p50_ms", "list sort name p50 ms", LOWER, 5),
    Figure("patch", "p50_ms", "PATCH p50 ms", LOWER, 10),
    Figure("patch", "p95_ms", "PATCH p95 ms", LOWER),
    Figure("concurrency", "req_s", "32 clients GET req/s", HIGHER, 8),
    Figure("concurrency", "p50_ms", "32 clients GET p50 ms", LOWER),
    Figure("concurrency", "p99_ms", "32 clients GET p99 ms", LOWER, 5),
    Figure("concurrency", "errors", "32 clients errors", LOWER),
    Figure("concurrency", "non2xx", "32 clients non-2xx", LOWER),
    Figure("safety", "uploads", "safety uploads", HIGHER),
    Figure("safety", "patches", "safety PATCHes", HIGHER),
)

# Absolute goals for Glimpse alone: (section, key, label, limit, comparison).
MEMORY_GOALS = tuple(
    (section, key, f"{section} {what} MiB", bound)
    for section in ("upload", "download")
    for key, what, bound in (("rss_peak_mib", "RSS peak", 150), ("rss_growth_mib",
                                                                  "RSS growth", 32))
)
# Fractions of the machine's limits that upload and download must reach.
LIMIT_GOALS = (
    ("upload", "write_fdatasync_mib_s", 0.85, "disk write+fdatasync"),
    ("download", "loopback_sendfile_mib_s", 0.80, "loopback sendfile"),
)
SCALE_BOUND = 2.0


@dataclass
class Verdict:
    figure: str
    glimpse: Any = None
    glance: Any = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None   # None: no goal, or it cannot be judged in this run
    section: str = ""
    key: str = ""


def speedup(fig: Figure, ours: Any, theirs: Any) -> float | None:
    """How many times better ours is than theirs (above 1 = better)."""
    if not _number(ours) or not _number(theirs):
        return None
    if fig.better == HIGHER:
        return round(ours / theirs, 2) if theirs else None
    return round(theirs / ours, 2) if ours else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare(summary: dict[str, dict[str, dict]], primary: str, other: str | None,
            lim: dict, scaled: dict | None) -> list[Verdict]:
    ours = summary.get(primary, {})
    theirs = summary.get(other, {}) if other else {}
    out: list[Verdict] = []
    for fig in FIGURES:
        if fig.section not in ours and fig.section not in theirs:
            continue
        a = ours.get(fig.section, {}).get(fig.key)
        b = theirs.get(fig.section, {}).get(fig.key) if other else None
        v = Verdict(fig.label, a, b, speedup(fig, a, b), section=fig.section, key=fig.key)
        if fig.factor is not None and other:
            v.goal = f">= {fig.factor:g}x"
            v.met = v.ratio >= fig.factor if v.ratio is not None else False
        out.append(v)
    out += _limit_verdicts(ours, lim)
    out += _memory_verdicts(ours, theirs)
    out += _safety_verdicts(ours, theirs)
    out += _scale_verdicts(scaled)
    out += _verified_verdicts(ours, theirs)
    return out


def _limit_verdicts(ours: dict, lim: dict) -> list[Verdict]:
    out = []
    for section, key, fraction, what in LIMIT_GOALS:
        if section not in ours or not lim.get(key):
            continue
        rate = ours[section].get("mib_s")
        ratio = round(rate / lim[key], 2) if _number(rate) else None
        out.append(Verdict(f"{section} MiB/s / {what} ({lim[key]:.0f})", rate, None, ratio,
                           f">= {fraction:g} x limit",
                           ratio >= fraction if ratio is not None else False, section, key))
    return out


def _memory_verdicts(ours: dict, theirs: dict) -> list[Verdict]:
    out = []
    for section, key, label, bound in MEMORY_GOALS:
        if section not in ours:
            continue
        value = ours[section].get(key)
        out.append(Verdict(label, value, theirs.get(section, {}).get(key), None,
                           f"< {bound} MiB", value < bound if _number(value) else None,
                           section, key))
    return out


def _safety_verdicts(ours: dict, theirs: dict) -> list[Verdict]:
    if "safety" not in ours:
        return []

    def five_xx(res: dict) -> int | None:
        parts = [res.get("upload_errors_5xx"), res.get("patch_errors_5xx")]
        return sum(parts) if all(_number(p) for p in parts) else None

    a, b = ours["safety"], theirs.get("safety", {})
    fives, lost = five_xx(a), a.get("lost_updates")
    return [
        Verdict("safety 5xx answers", fives, five_xx(b) if b else None, None, "= 0",
                fives == 0 if fives is not None else False, "safety", "5xx"),
        Verdict("safety lost updates", lost, b.get("lost_updates"), None, "= 0",
                lost == 0 if _number(lost) else False, "safety", "lost_updates"),
    ]


def _scale_verdicts(scaled: dict | None) -> list[Verdict]:
    if not scaled or "error" in scaled or "levels" not in scaled:
        return []
    low, high = scaled["levels"][0], scaled["levels"][-1]
    out = []
    for key, figure, what in (("list_ratio", "list_p50_ms", "list page"),
                              ("get_ratio", "get_p50_ms", "GET")):
        ratio = scaled.get(key)
        value = scaled.get(f"at_{high}", {}).get(figure)
        out.append(Verdict(f"scale {what} p50 ms at {high:,} (x of {low:,})", value, None,
                           ratio, f"<= {SCALE_BOUND:g}x",
                           ratio <= SCALE_BOUND if ratio is not None else False, "scale", key))
    return out


def _verified_verdicts(ours: dict, theirs: dict) -> list[Verdict]:
    out = []
    for section, figures in ours.items():
        if "verified" in figures or "error" in figures:
            ok = figures.get("verified") is True and "error" not in figures
            other = theirs.get(section, {})
            out.append(Verdict(f"{section} results verified", ok,
                               (other.get("verified") is True and "error" not in other)
                               if other else None, None, "yes", ok, section, "verified"))
    return out


# ---------------------------------------------------------------- rounds


def aggregate(rounds: list[dict]) -> dict:
    """One figure per key over the rounds: the median of numbers, 'all' of
    booleans, the last value of anything else; errors are kept."""
    out: dict[str, Any] = {}
    keys = [k for r in rounds for k in r]
    for key in dict.fromkeys(keys):
        values = [r[key] for r in rounds if key in r]
        if key == "error":
            out[key] = "; ".join(str(v) for v in values)
        elif all(isinstance(v, bool) for v in values):
            out[key] = all(values)
        elif all(_number(v) or v is None for v in values) and any(_number(v) for v in values):
            out[key] = round(statistics.median(v for v in values if _number(v)), 2)
        else:
            out[key] = values[-1]
    return out


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


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(verdicts: list[Verdict], primary: str, other: str | None) -> str:
    header = ["figure", primary.capitalize(), (other or "glance").capitalize(), "ratio",
              "goal", "met?"]
    rows = [header]
    for v in verdicts:
        met = "" if v.met is None and not v.goal else ("n/a" if v.met is None
                                                       else ("yes" if v.met else "NO"))
        ratio = "" if v.ratio is None else f"{v.ratio:g}x" if v.key not in (
            "write_fdatasync_mib_s", "loopback_sendfile_mib_s") else f"{v.ratio:g}"
        rows.append([v.figure, _fmt(v.glimpse), _fmt(v.glance) if other else "",
                     ratio, v.goal, met])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:4], widths[1:4],
                                                                       strict=True)]
        cells += [row[4].ljust(widths[4]), row[5]]
        lines.append(" | ".join(cells).rstrip())
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
    met = [v.met for v in verdicts if v.goal]
    unjudged = sum(m is None for m in met)
    lines.append(f"goals met: {sum(m is True for m in met)} of {len(met) - unjudged}"
                 + (f" ({unjudged} could not be judged in this run)" if unjudged else ""))
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
    ap.add_argument("--out", help="also write the JSON here")
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
            if "scale" in args.sections and glimpse is not None:
                scaled = _run_scale(glimpse, args.quick)
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
    _say("")
    _say(summary_text(result, verdicts, primary, other))
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    failed = any("error" in s for s in summary.get(primary, {}).values())
    return 1 if failed or (scaled is not None and "error" in scaled) else 0
