"""The CI skip rule (tests/ci_skips.py) on small throw-away test files, in a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ci_skips

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest

def test_runs():
    assert True

def test_skips_in_body():
    pytest.skip("service X is not reachable")

@pytest.fixture
def needs_service():
    pytest.skip("fixture could not start service Y")

def test_skips_in_fixture(needs_service):
    assert needs_service

@pytest.mark.skipif(True, reason="marked skip")
def test_marked():
    assert False

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
'''

MODULE_SKIP = '''
import pytest
pytest.skip("client library absent", allow_module_level=True)

def test_never():
    assert False
'''


def _run(tmp_path: Path, ci: str, *files: tuple[str, str]) -> subprocess.CompletedProcess:
    for name, text in files:
        (tmp_path / name).write_text(text)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-q", "-rA", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_skips_fail_in_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "true", ("test_sample.py", SAMPLE))
    out = result.stdout
    assert result.returncode == 1, out
    assert "1 passed" in out and "xfailed" in out, out
    # body skip, fixture skip, skipif mark: each a failure (setup ones show as ERROR)
    assert "FAILED test_sample.py::test_skips_in_body" in out, out
    assert "ERROR test_sample.py::test_skips_in_fixture" in out, out
    assert "fixture could not start service Y" in out, out
    assert "ERROR test_sample.py::test_marked" in out, out
    assert "skipped in CI (CI=true)" in out, out
    assert " skipped" not in out.splitlines()[-1], out


def test_module_level_skip_fails_collection_in_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "true", ("test_mod.py", MODULE_SKIP))
    out = result.stdout
    assert result.returncode == 2, out  # a collection error interrupts the run
    assert "ERROR test_mod.py" in out and "client library absent" in out, out


def test_skips_stay_skips_outside_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "", ("test_sample.py", SAMPLE), ("test_mod.py", MODULE_SKIP))
    last = result.stdout.splitlines()[-1]
    assert result.returncode == 0, result.stdout
    assert "1 passed" in last and "4 skipped" in last and "1 xfailed" in last, last


def test_allowed_skip_stays_a_skip_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    plugin = tmp_path / "allow_plugin.py"
    plugin.write_text("from tests import ci_skips\n"
                      "ci_skips.ALLOWED_IN_CI['test_sample.py::test_skips_in_body'] = "
                      "'reviewed: example'\n")
    env = {**os.environ, "CI": "true", "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "allow_plugin", "-p", "tests.ci_skips",
         "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rA", "--rootdir", str(tmp_path),
         str(tmp_path / "test_sample.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = result.stdout
    assert "SKIPPED [1] test_sample.py" in out and "service X is not reachable" in out, out
    assert "ERROR test_sample.py::test_marked" in out, out


def test_every_allowed_skip_has_a_reason() -> None:
    for pattern, reason in ci_skips.ALLOWED_IN_CI.items():
        assert pattern and len(reason.strip()) >= 20, (pattern, reason)
