"""Fixtures for the metadata definitions API tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.policy import list_rules
from glimpse.services import runtime as runtime_mod


def _open_policy() -> str:
    """Seed 001 §1.9: metadef_default is empty and every metadef rule points at it."""
    names = [r.name for r in list_rules()
             if "metadef" in r.name and r.name not in ("metadef_default", "metadef_admin")]
    lines = ['"metadef_default": ""'] + [f'"{n}": "rule:metadef_default"' for n in names]
    return "\n".join(lines) + "\n"


@pytest.fixture
def policy_client(tmp_path: Path, db_url: str):  # noqa: ANN201
    """make(policy_yaml_text) -> a client on an API using that policy file."""
    runtimes = []

    def make(policy_text: str) -> TestClient:
        etc = tmp_path / f"etc{len(runtimes)}"
        etc.mkdir()
        (etc / "policy.yaml").write_text(policy_text)
        (etc / "glance-api.conf").write_text(
            f"[oslo_policy]\npolicy_file = {etc / 'policy.yaml'}\n")
        conf = load_config([str(etc / "glance-api.conf")],
                           {"data_dir": str(tmp_path / "data"), "database.connection": db_url})
        rt = runtime_mod.build(conf, migrate=True)
        runtimes.append(rt)
        return TestClient(create_app(conf, rt), headers={"Accept": "application/json"})

    yield make
    for rt in runtimes:
        rt.close()


@pytest.fixture
def open_client(policy_client) -> TestClient:  # noqa: ANN001
    """A client on an API whose policy file opens every metadef operation to all."""
    return policy_client(_open_policy())


@pytest.fixture
def limited_client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """A client on an API with small [metadef_limits]."""
    conf_file = tmp_path / "limits.conf"
    conf_file.write_text("[metadef_limits]\nnamespaces_per_project = 2\n"
                         "objects_per_namespace = 1\nproperties_per_namespace = 1\n"
                         "tags_per_namespace = 2\n")
    conf = load_config([str(conf_file)],
                       {"data_dir": str(tmp_path / "data"), "database.connection": db_url})
    rt = runtime_mod.build(conf, migrate=True)
    yield TestClient(create_app(conf, rt), headers={"Accept": "application/json"})
    rt.close()
