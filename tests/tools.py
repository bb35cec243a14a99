"""The one place where tests look up what must be installed on the machine.

``require_program("qemu-img")`` gives the path of a program, or ends the test:
outside CI with a skip that names the missing package, in CI (``CI=true``) with
a failure, because CI installs everything (see .ci/run and scripts/test.sh).
The conftest hook turns any other skip into a failure in CI as well; this
module only makes the message say what to install.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
BIN_DIR = Path(sys.executable).parent

# program -> the Debian/Ubuntu package (or pip extra) that provides it
PROVIDERS = {
    "qemu-img": "Debian package qemu-utils",
    "glance": "python-glanceclient (pip, in the [test] extra)",
    "openstack": "python-openstackclient (pip, in the [test] extra)",
    "glance-manage": "glance (pip)",
}


def missing(what: str) -> None:
    """Skip, or in CI fail, a test that needs something not installed here."""
    if IN_CI:
        pytest.fail(f"{what}; CI must provide it", pytrace=False)
    pytest.skip(what)


def find_program(name: str) -> str | None:
    """A program from this virtualenv first, then from PATH; None when absent."""
    candidate = BIN_DIR / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def require_program(name: str) -> str:
    """Path of ``name``; skips (or in CI fails) the test when it is not installed."""
    path = find_program(name)
    if path is None:
        provider = PROVIDERS.get(name)
        missing(f"{name} is not installed" + (f" ({provider})" if provider else ""))
    assert path is not None
    return path


def qemu_img() -> str:
    return require_program("qemu-img")
