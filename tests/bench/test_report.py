"""bench/README.md's tables are generated from the committed JSON of each quoted run."""

from __future__ import annotations

import json
import re

from bench import report
from bench.verdicts import compare, goals_met


def test_readme_tables_match_their_json() -> None:
    assert report.main(["--check"]) == 0, "run: python -m bench.report --write"


def test_every_quoted_run_has_a_committed_json() -> None:
    sources = report.BLOCK.findall(report.README.read_text())
    assert sources, "bench/README.md has no generated table"
    for _, source, _, _ in sources:
        path = report.BENCH_DIR / source
        doc = json.loads(path.read_text())
        assert {"meta", "summary"} <= set(doc), source


def test_goal_count_line_agrees_with_the_verdicts() -> None:
    for _, source, body, _ in report.BLOCK.findall(report.README.read_text()):
        doc = report.load(report.BENCH_DIR / source)
        other = "glance" if "glance" in doc["summary"] else None
        verdicts = compare(doc["summary"], "glimpse", other, doc.get("limits", {}),
                           doc.get("scale"))
        met, total = goals_met(verdicts)
        assert re.search(rf"^{met} of {total} goals met", body, re.M), (source, body[-200:])
        rows = [line for line in body.splitlines() if line.startswith("| ")]
        assert sum(line.endswith("| yes |") for line in rows) == met
        assert sum(line.endswith("| NO |") for line in rows) == total - met


def test_render_marks_a_failed_section() -> None:
    doc = {"meta": {"date": "d", "git_commit": "c"}, "limits": {},
           "summary": {"glimpse": {"patch": {"error": "ReadTimeout: timed out"}}}}
    text = report.render(doc, "x.json")
    assert "| patch results verified | no |  | yes | NO |" in text
    assert "0 of 1 goals met" in text
