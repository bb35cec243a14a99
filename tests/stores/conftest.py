"""Says plainly, at the end of a run, which store back ends were skipped and why."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons: set[str] = set()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            message = str(longrepr[2]).removeprefix("Skipped: ")
            if message.startswith(("back end ", "Ceph python bindings")):
                reasons.add(message.splitlines()[0])
    if reasons:
        terminalreporter.write_sep("=", "store back ends SKIPPED (CI=true fails them)")
        for reason in sorted(reasons):
            terminalreporter.write_line(reason)
