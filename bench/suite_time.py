"""The test suite's time, old code against new code on the same tests (issue 12).

    .venv/bin/python -m bench.suite_time [--old-commit aa0df22] [--rounds 2] [--start-with A|B]
        [--server-starts 5] [--out FILE]

Issue 12 asked for the suite to take under half its time on two cores once the
migrated database is built once per session. The suite has more than doubled
since, so its total time proves nothing. This bench runs the same tests twice:

A. the suite of the commit where the issue was filed (aa0df22, 1400 tests), in a
   ``git archive`` of that commit with its own virtualenv;
B. the node ids of that suite that still exist, on the current code (this
   checkout and the interpreter running the bench).

A and B alternate (A B, then B A, ...) with ``pytest -n 2`` under the same
environment: the same PostgreSQL and MariaDB, the same Keystone
(``GLIMPSE_KEYSTONE_DIR``; the old suite reads it through a generated
``GLIMPSE_TEMPEST_WORKDIR/state.env``), ``CI=true`` on both sides (a skip fails).
Each run reports its wall time and the CPU time (user + sys) of its whole process
tree: the bench is a child subreaper, so servers whose parent died are still
reaped and counted. CPU time moves less than wall time with other load on the
machine; both are reported, with ``uptime``'s load before and after each run.
``--durations`` phases give the per-test setup, call and teardown cost of the
mapped tests on each side.

``--server-starts N`` also times N starts of ``glimpse serve`` (SQLite, one
worker, until ``/versions`` answers) in each tree: the old tests start live
servers and run the ``glimpse`` command, so a costlier start shows there.

Unmapped old node ids are classified: file gone, test function gone (renamed or
removed), or only its parameters changed. Of the mapped ones, the bench says how
many test functions have the same source text on both sides.
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import datetime
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OLD = "aa0df22"  # where issue 12 was filed: the landing after 088fee2 (1400 tests)
PR_SET_CHILD_SUBREAPER = 36
DURATION = re.compile(r"^\s*([0-9.]+)s (setup|call|teardown)\s+(\S.*?)\s*$")
SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+) in ([0-9.]+)s")


def log(message: str) -> None:
    print(message, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans() -> int:
    """Wait for every child that has already exited (orphans re-parented here)."""
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def live_children() -> list[int]:
    """Processes still running whose parent is this one (leaked by a run)."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me and fields[0] != "Z":
            found.append(int(entry.name))
    return found


# ---------------------------------------------------------------- the two trees


def prepare_old(commit: str, workdir: Path) -> tuple[Path, Path]:
    """``git archive`` of the old commit with its own virtualenv; (tree, python)."""
    full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], check=True,
                          capture_output=True, text=True).stdout.strip()
    tree = workdir / f"old-{full[:12]}"
    if not (tree / "pyproject.toml").is_file():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", full],
                                   stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {full} failed")
    python = tree / ".venv" / "bin" / "python"
    stamp = tree / ".venv" / ".suite-time-installed"
    if not stamp.is_file():
        log(f"creating the virtualenv of {full[:12]} (pip install -e .[test])")
        subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
        with (workdir / f"pip-{full[:12]}.log").open("wb") as out:
            subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                            "-e", ".[test]"], cwd=tree, stdout=out, stderr=subprocess.STDOUT,
                           check=True)
        stamp.write_text(full + "\n")
    return tree, python


def keystone_env(keystone_dir: Path, workdir: Path) -> dict[str, str]:
    """Both suites' view of one Keystone: GLIMPSE_KEYSTONE_DIR (new) and the old
    tempest anchor's GLIMPSE_TEMPEST_WORKDIR/state.env (same port and passwords)."""
    state: dict[str, str] = {}
    for line in (keystone_dir / "keystone.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            state[key.strip()] = value.strip()
    anchor = workdir / "tempest-state"
    anchor.mkdir(parents=True, exist_ok=True)
    keys = ("KEYSTONE_PORT", "ADMIN_PASSWORD", "SERVICE_USER", "SERVICE_PASSWORD")
    (anchor / "state.env").write_text("".join(f"{k}={state[k]}\n" for k in keys if k in state))
    return {"GLIMPSE_KEYSTONE_DIR": str(keystone_dir), "GLIMPSE_TEMPEST_WORKDIR": str(anchor)}


def side_env(base: dict[str, str], python: Path) -> dict[str, str]:
    env = dict(base)
    # The client tests run glance / openstack from the side's own virtualenv.
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


def collect(python: Path, cwd: Path, env: dict[str, str], workdir: Path, name: str,
            ) -> list[str]:
    out = workdir / f"collect-{name}.txt"
    with out.open("wb") as sink:
        rc = subprocess.run([str(python), "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider"], cwd=cwd, env=env, stdout=sink,
                            stderr=subprocess.STDOUT).returncode
    ids = [line.strip() for line in out.read_text().splitlines() if "::" in line]
    if rc != 0 or not ids:
        raise SystemExit(f"collecting {name} failed (exit {rc}), see {out}")
    return ids


# ---------------------------------------------------------------- mapping


def split_id(node: str) -> tuple[str, str, str]:
    """(file, function path without parameters, parameters)."""
    path, _, rest = node.partition("::")
    func, _, params = rest.partition("[")
    return path, func, params


def function_sources(tree: Path, relpath: str) -> dict[str, str]:
    """'Class::test' or 'test' -> the function's source text."""
    try:
        source = (tree / relpath).read_text()
    except OSError:
        return {}
    found: dict[str, str] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, prefix + node.name + "::")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[prefix + node.name] = ast.get_source_segment(source, node) or ""

    visit(ast.parse(source).body, "")
    return found


def map_ids(old: list[str], new: list[str], old_tree: Path) -> dict:
    new_set = set(new)
    new_funcs = {(f, fn) for f, fn, _ in map(split_id, new)}
    new_files = {f for f, _, _ in map(split_id, new)}
    mapped = [n for n in old if n in new_set]
    unmapped = []
    for node in old:
        if node in new_set:
            continue
        path, func, _ = split_id(node)
        if not (ROOT / path).is_file():
            why = "file gone"
        elif (path, func) in new_funcs:
            why = "parameters changed"
        elif path in new_files:
            why = "function renamed or removed (file kept)"
        else:
            why = "file kept, no test of it collected"
        unmapped.append({"node": node, "why": why})
    same = changed = 0
    cache_old: dict[str, dict[str, str]] = {}
    cache_new: dict[str, dict[str, str]] = {}
    seen: set[tuple[str, str]] = set()
    for node in mapped:
        path, func, _ = split_id(node)
        if (path, func) in seen:
            continue
        seen.add((path, func))
        a = cache_old.setdefault(path, function_sources(old_tree, path)).get(func)
        b = cache_new.setdefault(path, function_sources(ROOT, path)).get(func)
        if a is not None and a == b:
            same += 1
        else:
            changed += 1
    return {
        "old_tests": len(old), "new_tests": len(new), "mapped": len(mapped),
        "unmapped": unmapped,
        "unmapped_by_reason": dict(_count(u["why"] for u in unmapped)),
        "mapped_functions": len(seen), "mapped_functions_same_source": same,
        "mapped_functions_changed_source": changed,
        "mapped_ids": mapped,
    }


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item] += 1
    return counts


# ---------------------------------------------------------------- one run


def run_suite(name: str, python: Path, cwd: Path, env: dict[str, str], ids_file: Path | None,
              workers: int, workdir: Path, round_no: int, tag: str) -> dict:
    basetemp = workdir / f"tmp-{name}-{round_no}"
    shutil.rmtree(basetemp, ignore_errors=True)
    logfile = workdir / f"run-{tag}-{name}-{round_no}.log"
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
           str(basetemp), "--durations=0", "--durations-min=0"]
    if workers:
        cmd += ["-n", str(workers)]
    if ids_file is not None:
        cmd.append(f"@{ids_file}")
    load_before = load_average()
    reap_orphans()
    cpu0 = children_cpu()
    t0 = time.monotonic()
    with logfile.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        rc = proc.wait()
    wall = time.monotonic() - t0
    time.sleep(0.5)  # let orphans that are exiting finish
    reaped = reap_orphans()
    cpu = children_cpu() - cpu0
    leaked = live_children()
    text = logfile.read_text(errors="replace")
    summary = ""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = SUMMARY.match(line.strip())
        if m:
            summary = line.strip("= ")
            counts = {w: int(n) for n, w in (p.split(" ", 1) for p in m.group(1).split(", "))}
    phases: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        m = DURATION.match(line)
        if m:
            phases[m.group(3)][m.group(2)] = float(m.group(1))
    shutil.rmtree(basetemp, ignore_errors=True)
    result = {"side": name, "round": round_no, "exit": rc, "wall_s": round(wall, 2),
              "cpu_s": round(cpu, 2), "load_before": load_before,
              "load_after": load_average(), "summary": summary, "counts": counts,
              "orphans_reaped": reaped, "leaked_processes": len(leaked),
              "log": str(logfile), "phases": phases}
    log(f"  {name} round {round_no}: wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
        f"exit {rc}  {summary}  load {load_before} -> {result['load_after']}")
    return result


START_PROBE = r"""
import os, socket, subprocess, sys, tempfile, time
from pathlib import Path
import httpx
TICK = os.sysconf("SC_CLK_TCK")
def tree_cpu(pid):
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15]) / TICK
        for e in Path("/proc").iterdir():
            if e.name.isdigit():
                try:
                    if Path(e, "stat").read_text().rsplit(")", 1)[1].split()[1] == str(p):
                        todo.append(int(e.name))
                except OSError:
                    pass
    return total
root = Path(tempfile.mkdtemp())
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
conf = root / "glance-api.conf"
conf.write_text(f"[DEFAULT]\n[database]\nconnection = sqlite:///{root}/g.sqlite\n")
t0 = time.monotonic()
proc = subprocess.Popen([sys.executable, "-m", "glimpse.cli", "serve", "--config-file",
                         str(conf), "--data-dir", str(root), "--port", str(port),
                         "--workers", "1"], stdout=(root / "log").open("wb"),
                        stderr=subprocess.STDOUT)
with httpx.Client(timeout=1, trust_env=False) as c:
    while True:
        if proc.poll() is not None or time.monotonic() - t0 > 60:
            sys.exit("server did not start: " + (root / "log").read_text())
        try:
            if c.get(f"http://127.0.0.1:{port}/versions").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
wall = time.monotonic() - t0
cpu = tree_cpu(proc.pid)
proc.terminate()
proc.wait()
print(f"{wall:.3f} {cpu:.3f}")
"""


def server_start_cpu(python: Path, cwd: Path, env: dict[str, str], n: int) -> dict:
    """CPU (user + sys) and wall of one ``glimpse serve`` until /versions answers."""
    walls, cpus = [], []
    for _ in range(n):
        out = subprocess.run([str(python), "-c", START_PROBE], cwd=cwd, env=env,
                             capture_output=True, text=True, check=True).stdout.split()
        walls.append(float(out[0]))
        cpus.append(float(out[1]))
    return {"starts": n, "wall_s": walls, "cpu_s": cpus,
            "wall_median_s": statistics.median(walls), "cpu_median_s": statistics.median(cpus)}


# ---------------------------------------------------------------- figures


def db_of(node: str) -> str:
    _, _, params = split_id(node)
    for kind in ("sqlite", "postgresql", "mysql"):
        if re.search(rf"(^|-){kind}(-|\]|$)", params):
            return kind
    return "none"


def phase_stats(runs: list[dict], ids: list[str]) -> dict:
    """Per phase: total over the ids, mean and median per test (median over runs)."""
    out: dict[str, dict] = {}
    groups: dict[str, list[str]] = defaultdict(list)
    for node in ids:
        groups[db_of(node)].append(node)
    groups["all"] = list(ids)
    for group, nodes in sorted(groups.items()):
        entry: dict[str, dict] = {"tests": len(nodes)}
        for phase in ("setup", "call", "teardown"):
            totals = [sum(run["phases"].get(n, {}).get(phase, 0.0) for n in nodes)
                      for run in runs]
            medians = [statistics.median([run["phases"].get(n, {}).get(phase, 0.0)
                                          for n in nodes]) for run in runs]
            entry[phase] = {
                "total_s": round(statistics.median(totals), 2),
                "mean_ms": round(1000 * statistics.median(totals) / max(1, len(nodes)), 1),
                "median_ms": round(1000 * statistics.median(medians), 1),
            }
        out[group] = entry
    return out


def per_file(runs: list[dict], ids: list[str]) -> dict[str, float]:
    totals: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        acc: dict[str, float] = defaultdict(float)
        for node in ids:
            acc[split_id(node)[0]] += sum(run["phases"].get(node, {}).values())
        for path, value in acc.items():
            totals[path].append(value)
    return {p: round(statistics.median(v), 2) for p, v in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-commit", default=DEFAULT_OLD)
    parser.add_argument("--rounds", type=int, default=2,
                        help="A/B pairs; the order alternates (AB, BA, ...)")
    parser.add_argument("--start-with", choices=("A", "B"), default="A",
                        help="the side of the first round (a second invocation with B "
                        "balances a one-round run)")
    parser.add_argument("--workers", type=int, default=2, help="pytest -n (0: no xdist)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".tmp" / "suite-time")
    parser.add_argument("--keystone-dir", type=Path,
                        default=os.environ.get("GLIMPSE_KEYSTONE_DIR"),
                        help="a running scripts/keystone.sh directory ($GLIMPSE_KEYSTONE_DIR)")
    parser.add_argument("--new-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--server-starts", type=int, default=5,
                        help="also time N starts of `glimpse serve` (SQLite) in each tree")
    parser.add_argument("--map-only", action="store_true", help="collect and map, run nothing")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not args.keystone_dir:
        parser.error("--keystone-dir or GLIMPSE_KEYSTONE_DIR is required (both suites "
                     "run their Keystone tests against it)")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    subreaper = become_subreaper()

    old_tree, old_python = prepare_old(args.old_commit, workdir)
    base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    base["CI"] = "true"
    base.update(keystone_env(Path(args.keystone_dir).resolve(), workdir))
    metadefs = ROOT / ".tmp" / "glance-metadefs"
    if "GLIMPSE_GLANCE_METADEFS" not in base and metadefs.is_dir():
        base["GLIMPSE_GLANCE_METADEFS"] = str(metadefs)
    env_a = side_env(base, old_python)
    env_b = side_env(base, args.new_python)

    log(f"collecting (old: {old_tree}, new: {ROOT})")
    old_ids = collect(old_python, old_tree, env_a, workdir, "old")
    new_ids = collect(args.new_python, ROOT, env_b, workdir, "new")
    mapping = map_ids(old_ids, new_ids, old_tree)
    log(f"old suite {len(old_ids)} tests, current suite {len(new_ids)}; "
        f"{mapping['mapped']} old node ids still exist, {len(mapping['unmapped'])} do not "
        f"({mapping['unmapped_by_reason']}); of {mapping['mapped_functions']} mapped test "
        f"functions {mapping['mapped_functions_same_source']} have the same source text")
    for item in mapping["unmapped"]:
        log(f"  unmapped: {item['node']}  ({item['why']})")
    ids_file = workdir / "mapped-ids.txt"
    ids_file.write_text("\n".join(mapping["mapped_ids"]) + "\n")

    tag = f"{started:%Y%m%d-%H%M%S}"
    starts = {}
    if args.server_starts:
        for name, python, cwd, env in (("A-old", old_python, old_tree, env_a),
                                       ("B-new", args.new_python, ROOT, env_b)):
            starts[name] = server_start_cpu(python, cwd, env, args.server_starts)
            log(f"  glimpse serve start, {name}: cpu median {starts[name]['cpu_median_s']} s, "
                f"wall median {starts[name]['wall_median_s']} s ({args.server_starts} starts)")
    runs: list[dict] = []
    if not args.map_only:
        for r in range(args.rounds):
            order = ("A", "B") if (r % 2 == 0) == (args.start_with == "A") else ("B", "A")
            for side in order:
                if side == "A":
                    runs.append(run_suite("A-old", old_python, old_tree, env_a, None,
                                          args.workers, workdir, r + 1, tag))
                else:
                    runs.append(run_suite("B-new", args.new_python, ROOT, env_b, ids_file,
                                          args.workers, workdir, r + 1, tag))

    a_runs = [x for x in runs if x["side"] == "A-old"]
    b_runs = [x for x in runs if x["side"] == "B-new"]
    rounds = []
    for a in a_runs:
        b = next(x for x in b_runs if x["round"] == a["round"])
        rounds.append({"round": a["round"], "A_wall_s": a["wall_s"], "B_wall_s": b["wall_s"],
                       "A_cpu_s": a["cpu_s"], "B_cpu_s": b["cpu_s"],
                       "wall_ratio": round(b["wall_s"] / a["wall_s"], 3),
                       "cpu_ratio": round(b["cpu_s"] / a["cpu_s"], 3)})
    mapped = mapping["mapped_ids"]
    figures: dict = {}
    if rounds:
        figures = {
            "wall_ratio_median": round(statistics.median(r["wall_ratio"] for r in rounds), 3),
            "cpu_ratio_median": round(statistics.median(r["cpu_ratio"] for r in rounds), 3),
            "A_wall_median_s": statistics.median(r["A_wall_s"] for r in rounds),
            "B_wall_median_s": statistics.median(r["B_wall_s"] for r in rounds),
            "A_cpu_median_s": statistics.median(r["A_cpu_s"] for r in rounds),
            "B_cpu_median_s": statistics.median(r["B_cpu_s"] for r in rounds),
            "all_passed": all(x["exit"] == 0 and set(x["counts"]) == {"passed"} for x in runs),
            "goal": "B/A under 0.5",
        }
        figures["phases_A"] = phase_stats(a_runs, mapped)
        figures["phases_B"] = phase_stats(b_runs, mapped)
        unmapped_nodes = [u["node"] for u in mapping["unmapped"]]
        figures["A_unmapped_tests_s"] = round(statistics.median(
            sum(sum(run["phases"].get(n, {}).values()) for n in unmapped_nodes)
            for run in a_runs), 2)
        files_a, files_b = per_file(a_runs, mapped), per_file(b_runs, mapped)
        figures["per_file_s"] = {p: {"A": files_a.get(p, 0.0), "B": files_b.get(p, 0.0)}
                                 for p in sorted(files_a, key=lambda p: -files_b.get(p, 0.0))}

    result = {
        "bench": "suite_time", "started": started.isoformat(timespec="seconds"),
        "old_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.old_commit],
                                     capture_output=True, text=True).stdout.strip(),
        "new_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        "new_tree_dirty": bool(subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True).stdout.strip()),
        "workers": args.workers, "cpus": os.cpu_count(), "subreaper": subreaper,
        "mapped_ids_sha256": hashlib.sha256(ids_file.read_bytes()).hexdigest(),
        "mapping": {k: v for k, v in mapping.items() if k != "mapped_ids"},
        "server_start": starts, "rounds": rounds, "figures": figures,
        "runs": [{k: v for k, v in x.items() if k != "phases"} for x in runs],
    }
    out = args.out or workdir / f"suite-time-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if rounds:
        log("")
        log(f"{'round':>5} {'A wall':>8} {'B wall':>8} {'ratio':>6} {'A cpu':>8} "
            f"{'B cpu':>8} {'ratio':>6}")
        for r in rounds:
            log(f"{r['round']:>5} {r['A_wall_s']:>8.1f} {r['B_wall_s']:>8.1f} "
                f"{r['wall_ratio']:>6.3f} {r['A_cpu_s']:>8.1f} {r['B_cpu_s']:>8.1f} "
                f"{r['cpu_ratio']:>6.3f}")
        log(f"median B/A: wall {figures['wall_ratio_median']}, cpu {figures['cpu_ratio_median']}"
            f" (goal under 0.5); every run passed: {figures['all_passed']}")
        for side in ("A", "B"):
            allp = figures[f"phases_{side}"]["all"]
            log(f"{side} per mapped test (ms, mean/median): setup {allp['setup']['mean_ms']}/"
                f"{allp['setup']['median_ms']}, call {allp['call']['mean_ms']}/"
                f"{allp['call']['median_ms']}, teardown {allp['teardown']['mean_ms']}/"
                f"{allp['teardown']['median_ms']}")
        for kind in ("sqlite", "postgresql", "mysql", "none"):
            a = figures["phases_A"].get(kind)
            b = figures["phases_B"].get(kind)
            if a and b:
                log(f"  setup on {kind:<10} ({a['tests']} tests): mean {a['setup']['mean_ms']}"
                    f" -> {b['setup']['mean_ms']} ms, median {a['setup']['median_ms']} -> "
                    f"{b['setup']['median_ms']} ms")
    log(f"wrote {out}")
    return 0 if not runs or figures.get("all_passed") else 1


if __name__ == "__main__":
    sys.exit(main())
