"""Reads one tempest run and checks it against the expected passes.

    python results.py OUT_DIR EXPECTED_FILE WALL_SECONDS [REGEX]

OUT_DIR holds ``results.subunit`` (``stestr last --subunit``) and ``listed.txt`` (the
tests tempest selected). Writes ``OUT_DIR/tests.tsv`` (status, test, reason), prints the
failures and a summary, and exits 1 when a test listed in EXPECTED_FILE did not pass,
when the expected list is empty, or when the run produced no results at all. With
REGEX (a run filtered by TEMPEST_REGEX) only the expected tests it matches count.

Runs with the tempest virtualenv's interpreter (python-subunit and testtools).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import subunit  # type: ignore[import-not-found]
import testtools  # type: ignore[import-not-found]


def read_results(path: Path) -> dict[str, tuple[str, str]]:
    results: dict[str, tuple[str, str]] = {}

    def on_test(test: dict) -> None:
        test_id = re.sub(r"\[.*", "", test["id"])
        reason = ""
        for name, detail in (test.get("details") or {}).items():
            if name == "reason":
                reason = detail.as_text().strip()
            elif name == "traceback" and not reason:
                lines = [line for line in detail.as_text().splitlines() if line.strip()]
                reason = lines[-1] if lines else ""
        results[test_id] = (test["status"], reason.replace("\n", " ")[:300])

    with path.open("rb") as stream:
        case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        case.run(result)
        result.stopTestRun()
    return results


def expand_class_fixtures(results: dict[str, tuple[str, str]],
                          listed: list[str]) -> dict[str, tuple[str, str]]:
    """A class skipped or failed in setUpClass counts once for each of its tests."""
    fixtures: dict[str, tuple[str, str]] = {}
    tests: dict[str, tuple[str, str]] = {}
    for test_id, (status, reason) in results.items():
        m = re.match(r"(setUpClass|tearDownClass) \((.*)\)$", test_id)
        if not m:
            tests[test_id] = (status, reason)
        elif m.group(1) == "setUpClass" or status == "fail":
            fixtures[m.group(2)] = (status, f"[{m.group(1)}] {reason}")
    for test_id in listed:
        if test_id not in tests:
            cls = test_id.rsplit(".", 1)[0]
            tests[test_id] = fixtures.get(cls, ("skip", "no result reported"))
    for cls, (status, reason) in fixtures.items():
        if status == "fail" and not any(t.startswith(cls + ".") for t in listed):
            tests[f"setUpClass ({cls})"] = (status, reason)
    return tests


def main(out: Path, expected_file: Path, wall: int, regex: str = "") -> int:
    listed_file = out / "listed.txt"
    listed = [line.strip() for line in listed_file.read_text().splitlines() if line.strip()] \
        if listed_file.exists() else []
    subunit_file = out / "results.subunit"
    raw = read_results(subunit_file) if subunit_file.exists() else {}
    tests = expand_class_fixtures(raw, listed)
    with (out / "tests.tsv").open("w") as f:
        for test_id, (status, reason) in tests.items():
            f.write(f"{status}\t{test_id}\t{reason}\n")
    expected = [line.strip() for line in expected_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")] if expected_file.exists() else []
    if regex:
        expected = [t for t in expected if re.search(regex, t)]
    counts = Counter(status for status, _ in tests.values())
    for test_id, (status, reason) in tests.items():
        if status in ("fail", "uxsuccess"):
            print(f"FAIL  {test_id} :: {reason[:160]}")
    missing = [t for t in expected if tests.get(t, ("not run",))[0] != "success"]
    for test_id in missing:
        print(f"EXPECTED TO PASS but {tests.get(test_id, ('not run',))[0]}: {test_id}")
    print(f"tempest: {counts['success']} passed, {counts['fail']} failed, "
          f"{counts['skip']} skipped of {len(tests)} (wall {wall}s); "
          f"{len(expected) - len(missing)}/{len(expected)} expected passes")
    if not tests:
        print(f"tempest: no results at all (see {out}/tempest-run.log)")
        return 1
    return 1 if missing or not expected else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]),
                  sys.argv[4] if len(sys.argv) > 4 else ""))
