"""bench/suite_time.py's own parsing: node ids, database parameters, pytest's
--durations and summary lines, and the A/B mapping's classification."""

from __future__ import annotations

from pathlib import Path

from bench import suite_time as st


def test_split_id_and_database_of_a_node() -> None:
    node = "tests/api/test_x.py::TestA::test_b[sqlite-3]"
    assert st.split_id(node) == ("tests/api/test_x.py", "TestA::test_b", "sqlite-3]")
    assert st.db_of(node) == "sqlite"
    assert st.db_of("tests/a.py::t[0-postgresql]") == "postgresql"
    assert st.db_of("tests/a.py::t[mysql]") == "mysql"
    assert st.db_of("tests/a.py::t[sqlite_like]") == "none"
    assert st.db_of("tests/a.py::t") == "none"


def test_durations_and_summary_lines_parse() -> None:
    m = st.DURATION.match("0.41s setup    tests/api/test_x.py::test_y[mysql]")
    assert m is not None
    assert m.groups() == ("0.41", "setup", "tests/api/test_x.py::test_y[mysql]")
    s = st.SUMMARY.match("1397 passed, 2 failed in 271.28s (0:04:31)")
    assert s is not None and s.group(1) == "1397 passed, 2 failed"


def test_unmapped_ids_are_classified(tmp_path: Path) -> None:
    old_tree = tmp_path
    (old_tree / "tests").mkdir()
    (old_tree / "tests" / "test_conformance_gone.py").write_text("def test_a():\n    pass\n")
    kept = "tests/bench/test_suite_time.py"
    old = [f"{kept}::test_split_id_and_database_of_a_node",
           f"{kept}::test_split_id_and_database_of_a_node[x]",
           f"{kept}::test_no_longer_here",
           "tests/test_conformance_gone.py::test_a"]
    new = [f"{kept}::test_split_id_and_database_of_a_node",
           f"{kept}::test_durations_and_summary_lines_parse"]
    result = st.map_ids(old, new, old_tree)
    assert result["mapped"] == 1
    assert {u["node"]: u["why"] for u in result["unmapped"]} == {
        f"{kept}::test_split_id_and_database_of_a_node[x]": "parameters changed",
        f"{kept}::test_no_longer_here": "function renamed or removed (file kept)",
        "tests/test_conformance_gone.py::test_a": "file gone",
    }
    # The old tree has no copy of this file: its function counts as changed.
    assert result["mapped_functions_changed_source"] == 1
