"""No skip passes silently in CI: with CI=true every skipped test is reported as failed.

Outside CI a test may skip when its service or tool is absent (with the reason);
in CI everything is installed and started, so a skip there means a test that did
not run while the run looks green. The few tests that must skip even in CI are
listed in ``ALLOWED_IN_CI`` with the reason; each entry is reviewed like code.

Loaded from tests/conftest.py (``pytest_plugins``); tests/test_ci_skips.py runs it
against small throw-away test files.
"""

from __future__ import annotations

import fnmatch
import os

import pytest

# node id pattern (fnmatch) -> why it may skip in CI. Keep this short.
ALLOWED_IN_CI: dict[str, str] = {}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def allowed_reason(nodeid: str) -> str | None:
    for pattern, reason in ALLOWED_IN_CI.items():
        if fnmatch.fnmatchcase(nodeid, pattern):
            return reason
    return None


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI (CI=true), which counts as a failure: {reason}\n"
                       "Install or start what the test needs in .ci/run or scripts/test.sh, "
                       "or add it to ALLOWED_IN_CI in tests/ci_skips.py with a reason.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (in_ci() and report.skipped and not hasattr(report, "wasxfail")
            and allowed_reason(item.nodeid) is None):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # noqa: ANN201
    """A module that skips itself (``allow_module_level=True``) fails in CI too."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if in_ci() and report.skipped and allowed_reason(collector.nodeid) is None:
        _fail(report)
