"""bench/'s own judging: a section with errors fails, a missing figure is "not measured"
and counts as not met, transport failures are errors, only 2xx answers count as served."""

from __future__ import annotations

from collections import Counter

from bench import verdicts as v
from bench.workload import _parse_wrk, _Tally, safety_figures

LIMITS = {"write_fdatasync_mib_s": 800.0, "loopback_sendfile_mib_s": 3000.0}


def good_sections() -> dict[str, dict]:
    return {
        "upload": {"mib_s": 700.0, "rss_peak_mib": 100, "rss_growth_mib": 5, "verified": True},
        "download": {"mib_s": 2500.0, "rss_peak_mib": 100, "rss_growth_mib": 5,
                     "verified": True},
        "patch": {"p50_ms": 2.0, "verified": True},
        "safety": {"errors_5xx": 0, "errors_transport": 0, "lost_updates": 0,
                   "verified": True},
    }


def by_label(verdicts: list[v.Verdict]) -> dict[str, v.Verdict]:
    return {x.figure.split(" (")[0]: x for x in verdicts}


def judge(ours: dict, theirs: dict | None = None, lim: dict | None = None,
          scaled: dict | None = None) -> dict[str, v.Verdict]:
    summary = {"glimpse": ours, **({"glance": theirs} if theirs is not None else {})}
    return by_label(v.compare(summary, "glimpse", "glance" if theirs is not None else None,
                              LIMITS if lim is None else lim, scaled))


def test_all_good_meets_every_goal() -> None:
    verdicts = judge(good_sections())
    met, total = v.goals_met(list(verdicts.values()))
    assert (met, total) == (12, 12)  # 2 limits, 4 memory, 2 safety, 4 verified
    assert all(x.met is True for x in verdicts.values() if x.goal)


def test_a_section_with_an_error_fails_its_goals() -> None:
    ours = good_sections()
    ours["upload"] = {"error": "ConnectError: [Errno 111] Connection refused"}
    verdicts = judge(ours)
    assert verdicts["upload results verified"].met is False
    assert verdicts["upload MiB/s / disk write+fdatasync"].met is False
    assert verdicts["upload RSS peak MiB"].met is False
    cells = v.cells(verdicts["upload RSS peak MiB"], with_other=False)
    assert cells[1] == v.NOT_MEASURED and cells[-1] == "NO"
    met, total = v.goals_met(list(verdicts.values()))
    assert total == 12 and met == 12 - 4


def test_a_zero_limit_keeps_the_goal_as_not_met() -> None:
    verdicts = judge(good_sections(), lim={**LIMITS, "write_fdatasync_mib_s": 0.0})
    row = verdicts["upload MiB/s / disk write+fdatasync"]
    assert row.met is False and "not measured" in row.figure
    assert v.goals_met(list(verdicts.values()))[1] == 12  # not dropped from "N of M"


def test_a_missing_comparative_figure_is_not_measured() -> None:
    ours = good_sections()
    ours["patch"] = {"verified": True}  # no PATCH answered: no p50
    verdicts = judge(ours, theirs={"patch": {"p50_ms": 100.0}})
    row = verdicts["PATCH p50 ms"]
    assert row.goal == ">= 10x" and row.met is False
    assert v.cells(row, with_other=True)[1] == v.NOT_MEASURED


def test_transport_failures_fail_the_safety_goal() -> None:
    tally = _Tally(upload=Counter({"201": 5, "ReadTimeout": 1}),
                   patch=Counter({"200": 10, "RemoteProtocolError": 2, "503": 1}))
    tally.uploaded, tally.patched = ["i"], {"p": "v"}
    figures = safety_figures(tally, lost=0, intact=True)
    assert figures["errors_transport"] == 3 and figures["errors_5xx"] == 1
    assert figures["uploads"] == 6 and figures["patches"] == 13
    ours = {**good_sections(), "safety": figures}
    row = judge(ours)["safety errors"]
    assert row.glimpse == 4 and row.met is False


def test_safety_with_nothing_to_check_is_not_verified() -> None:
    figures = safety_figures(_Tally(upload=Counter({"500": 3}), patch=Counter({"409": 4})),
                             lost=None, intact=None)
    assert figures["verified"] is False and figures["lost_updates"] is None
    verdicts = judge({**good_sections(), "safety": figures})
    assert verdicts["safety lost updates"].met is False
    assert v.cells(verdicts["safety lost updates"], False)[1] == v.NOT_MEASURED
    assert verdicts["safety results verified"].met is False


WRK = "BENCH-RESULT {req} 2000000 {c} {r} {w} {t} {s} 900.0 4000.0\n"


def test_concurrency_counts_only_successful_answers() -> None:
    out = _parse_wrk(WRK.format(req=1000, c=0, r=0, w=0, t=0, s=400))
    assert out["req_s"] == 300.0 and out["all_answers_req_s"] == 500.0
    assert out["non2xx"] == 400 and out["verified"] is False
    clean = _parse_wrk(WRK.format(req=1000, c=0, r=0, w=0, t=0, s=0))
    assert clean["req_s"] == 500.0 and clean["verified"] is True
    broken = _parse_wrk(WRK.format(req=1000, c=3, r=1, w=0, t=2, s=0))
    assert broken["errors"] == 6 and broken["verified"] is False
    verdicts = judge({"concurrency": out})
    assert verdicts["concurrency results verified"].met is False


def test_scale_verified_and_errors_are_judged() -> None:
    scaled = {"levels": [2000, 20000], "list_ratio": 1.1, "get_ratio": 1.0,
              "at_20000": {"list_p50_ms": 10.0, "get_p50_ms": 2.0}, "verified": False}
    verdicts = judge(good_sections(), scaled=scaled)
    assert verdicts["scale list page p50 ms at 20,000"].met is True
    assert verdicts["scale results verified"].met is False
    failed = judge(good_sections(), scaled={"error": "OperationalError: locked"})
    assert failed["scale list page p50 ms"].met is False
    assert v.cells(failed["scale GET p50 ms"], False)[1] == v.NOT_MEASURED
    assert failed["scale results verified"].met is False


def test_aggregate_keeps_a_round_that_could_not_measure() -> None:
    rounds = [{"p50_ms": 2.0, "verified": True}, {"p50_ms": None}, {"p50_ms": 4.0,
                                                                    "verified": True}]
    out = v.aggregate(rounds)
    assert out["p50_ms"] is None and out["verified"] is False
    assert v.aggregate([{"x": 1.0}, {"x": 3.0}])["x"] == 2.0
    assert v.aggregate([{"error": "a"}, {"ok": 1}])["error"] == "a"


def test_every_goal_is_judged_yes_or_no() -> None:
    ours = {"upload": {}, "download": {"error": "x"}, "safety": {}, "concurrency": {}}
    verdicts = judge(ours, theirs={}, lim={}, scaled={})
    assert all(x.met in (True, False) for x in verdicts.values() if x.goal)
    assert v.goals_met(list(verdicts.values()))[0] == 0
