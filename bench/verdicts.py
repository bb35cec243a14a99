"""Goals and verdicts: what a run's figures mean, judged the same way everywhere.

Used by run.py (the summary it prints), report.py (bench/README.md's tables) and
tests/bench/. The rules that keep a figure honest:

- a goal whose figure is missing (the section failed, measured nothing, or a
  machine limit came out 0) is "not measured" and counts as NOT met; it is never
  dropped from "N of M";
- a section that reported an error, or did not verify what it measured, fails
  its "results verified" goal;
- transport failures (reset, refused, timeout) count as errors like a 5xx.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

HIGHER, LOWER = "higher", "lower"
NOT_MEASURED = "not measured"


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
    Figure("concurrency", "req_s", "32 clients GET successful req/s", HIGHER, 8),
    Figure("concurrency", "all_answers_req_s", "32 clients GET all answers req/s", HIGHER),
    Figure("concurrency", "p50_ms", "32 clients GET p50 ms", LOWER),
    Figure("concurrency", "p99_ms", "32 clients GET p99 ms", LOWER, 5),
    Figure("concurrency", "errors", "32 clients transport errors", LOWER),
    Figure("concurrency", "non2xx", "32 clients non-2xx", LOWER),
    Figure("safety", "uploads", "safety uploads", HIGHER),
    Figure("safety", "patches", "safety PATCHes", HIGHER),
)

# Absolute goals for Glimpse alone: (section, key, label, bound).
MEMORY_GOALS = tuple(
    (section, key, f"{section} {what} MiB", bound)
    for section in ("upload", "download")
    for key, what, bound in (("rss_peak_mib", "RSS peak", 150),
                             ("rss_growth_mib", "RSS growth", 32))
)
# Fractions of the machine's limits that upload and download must reach.
LIMIT_GOALS = (
    ("upload", "write_fdatasync_mib_s", 0.85, "disk write+fdatasync"),
    ("download", "loopback_sendfile_mib_s", 0.80, "loopback sendfile"),
)
LIMIT_KEYS = tuple(key for _, key, _, _ in LIMIT_GOALS)
SCALE_BOUND = 2.0


@dataclass
class Verdict:
    figure: str
    glimpse: Any = None
    glance: Any = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None   # None only for a row without a goal
    section: str = ""
    key: str = ""

    @property
    def measured(self) -> bool:
        return number(self.glimpse) or isinstance(self.glimpse, bool)


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def speedup(fig: Figure, ours: Any, theirs: Any) -> float | None:
    """How many times better ours is than theirs (above 1 = better)."""
    if not number(ours) or not number(theirs):
        return None
    if fig.better == HIGHER:
        return round(ours / theirs, 2) if theirs else None
    return round(theirs / ours, 2) if ours else None


def compare(summary: dict[str, dict[str, dict]], primary: str, other: str | None,
            lim: dict, scaled: dict | None) -> list[Verdict]:
    """Every verdict of a run, from its aggregated figures."""
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
            v.met = v.ratio is not None and v.ratio >= fig.factor
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
        if section not in ours:
            continue
        limit = lim.get(key)
        rate = ours[section].get("mib_s")
        if not number(limit) or limit <= 0:
            # A limit that measured 0 (or nothing) cannot judge the section: not met.
            out.append(Verdict(f"{section} MiB/s / {what} (limit {NOT_MEASURED})", rate,
                               None, None, f">= {fraction:g} x limit", False, section, key))
            continue
        ratio = round(rate / limit, 2) if number(rate) else None
        out.append(Verdict(f"{section} MiB/s / {what} ({limit:.0f})", rate, None, ratio,
                           f">= {fraction:g} x limit",
                           ratio is not None and ratio >= fraction, section, key))
    return out


def _memory_verdicts(ours: dict, theirs: dict) -> list[Verdict]:
    out = []
    for section, key, label, bound in MEMORY_GOALS:
        if section not in ours:
            continue
        value = ours[section].get(key)
        out.append(Verdict(label, value, theirs.get(section, {}).get(key), None,
                           f"< {bound} MiB", number(value) and value < bound, section, key))
    return out


def safety_errors(res: dict) -> int | None:
    """5xx answers plus transport failures of a safety section; None if not counted."""
    parts = [res.get("errors_5xx"), res.get("errors_transport")]
    return sum(parts) if all(number(p) for p in parts) else None


def _safety_verdicts(ours: dict, theirs: dict) -> list[Verdict]:
    if "safety" not in ours:
        return []
    a, b = ours["safety"], theirs.get("safety", {})
    errors, lost = safety_errors(a), a.get("lost_updates")
    return [
        Verdict("safety 5xx answers", a.get("errors_5xx"), b.get("errors_5xx"),
                section="safety", key="errors_5xx"),
        Verdict("safety transport errors", a.get("errors_transport"),
                b.get("errors_transport"), section="safety", key="errors_transport"),
        Verdict("safety errors (5xx or transport)", errors,
                safety_errors(b) if b else None, None, "= 0", errors == 0, "safety", "errors"),
        Verdict("safety lost updates", lost, b.get("lost_updates"), None, "= 0",
                number(lost) and lost == 0, "safety", "lost_updates"),
    ]


def _scale_verdicts(scaled: dict | None) -> list[Verdict]:
    if scaled is None:  # not asked for in this run
        return []
    levels = scaled.get("levels") or []
    failed = "error" in scaled or len(levels) < 2
    low, high = (levels[0], levels[-1]) if len(levels) >= 2 else (None, None)
    out = []
    for key, figure, what in (("list_ratio", "list_p50_ms", "list page"),
                              ("get_ratio", "get_p50_ms", "GET")):
        ratio = None if failed else scaled.get(key)
        value = None if failed else scaled.get(f"at_{high}", {}).get(figure)
        label = (f"scale {what} p50 ms at {high:,} (x of {low:,})" if not failed
                 else f"scale {what} p50 ms")
        out.append(Verdict(label, value, None, ratio, f"<= {SCALE_BOUND:g}x",
                           number(ratio) and ratio <= SCALE_BOUND, "scale", key))
    ok = not failed and scaled.get("verified") is True
    shown = False if failed else scaled.get("verified")
    out.append(Verdict("scale results verified", shown, None, None, "yes", ok, "scale",
                       "verified"))
    return out


def section_verified(figures: dict) -> bool:
    return figures.get("verified") is True and "error" not in figures


def _shown_verified(figures: dict | None) -> bool | None:
    """yes / no, or None (not measured) when the section recorded no verdict."""
    if not figures:
        return None
    return False if "error" in figures else figures.get("verified")


def _verified_verdicts(ours: dict, theirs: dict) -> list[Verdict]:
    out = []
    for section, figures in ours.items():
        out.append(Verdict(f"{section} results verified", _shown_verified(figures),
                           _shown_verified(theirs.get(section)), None, "yes",
                           section_verified(figures), section, "verified"))
    return out


def goals_met(verdicts: list[Verdict]) -> tuple[int, int]:
    """(met, total) over every verdict that has a goal; not measured counts as not met."""
    with_goal = [v for v in verdicts if v.goal]
    return sum(v.met is True for v in with_goal), len(with_goal)


def aggregate(rounds: list[dict]) -> dict:
    """One figure per key over the rounds: the median of numbers, 'all' of
    booleans, the last value of anything else; errors are kept. A figure that
    some round could not measure (None) stays None: a median of the rounds
    that did would hide the failure."""
    out: dict[str, Any] = {}
    keys = [k for r in rounds for k in r]
    for key in dict.fromkeys(keys):
        values = [r.get(key) for r in rounds]
        if key == "error":
            out[key] = "; ".join(str(v) for v in values if v is not None)
        elif all(isinstance(v, bool) or v is None for v in values) and any(
                isinstance(v, bool) for v in values):
            out[key] = all(v is True for v in values)  # a round without it: not verified
        elif all(number(v) for v in values):
            out[key] = round(statistics.median(values), 2)
        elif all(number(v) or v is None for v in values):
            out[key] = None
        else:
            out[key] = values[-1]
    return out


# ---------------------------------------------------------------- formatting


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def cells(v: Verdict, with_other: bool) -> list[str]:
    """figure, Glimpse, Glance, ratio, goal, met: the cells of one row."""
    if v.goal and not v.measured:
        ours = NOT_MEASURED
    else:
        ours = fmt(v.glimpse)
    met = "" if not v.goal else ("yes" if v.met else "NO")
    if v.ratio is None:
        ratio = ""
    elif v.key in LIMIT_KEYS:
        ratio = f"{v.ratio:g}"
    else:
        ratio = f"{v.ratio:g}x"
    return [v.figure, ours, fmt(v.glance) if with_other else "", ratio, v.goal, met]
