"""Schemathesis against a real ``glimpse serve``, driven by GET /v2/openapi.json.

Every operation of the document gets a few generated requests (bounded so the run
stays well under two minutes), as one of two projects' members, an admin or nobody
(``auth_strategy = trusted-headers``, docs/auth.md). Path parameters are often the ids
of images, members, tasks and namespaces made beforehand, so the generated requests
reach the service code and not only the 404 path. Each answer must not be a 5xx, and
its status, content type and body must be those the document describes.

The server may only fetch from 127.0.0.1:9 (nothing listens there): generated
web-download and legacy task URIs never leave the machine.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from glimpse.api.openapi import PATCH_MEDIA_TYPES
from tests.conftest import LiveServer, as_project, start_server

# Bounded for CI (about a minute); GLIMPSE_FUZZ_EXAMPLES=50 for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("GLIMPSE_FUZZ_EXAMPLES", "6"))
CONFIG = """
auth_strategy = trusted-headers
enabled_import_methods = glance-direct,web-download
[import_filtering_opts]
allowed_hosts = 127.0.0.1
allowed_ports = 9
"""
ADMIN = {**as_project("fuzz-admin", roles="admin,member,reader"), "Accept": "application/json"}
IDENTITIES = {
    "alice": {**as_project("fuzz-a"), "Accept": "application/json"},
    "bob": {**as_project("fuzz-b"), "Accept": "application/json"},
    "admin": ADMIN,
    "nobody": {"Accept": "application/json"},
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

for _media in PATCH_MEDIA_TYPES:  # JSON patch bodies are JSON
    schemathesis.serializer.alias(_media, "application/json")


def _seed(url: str) -> dict[str, list[str]]:
    """Images in every state a client meets, a membership, a task and a namespace."""
    known: dict[str, list[str]] = {
        "image_id": [],
        "member_id": ["fuzz-b", "fuzz-a"],
        "task_id": [],
        "namespace": [],
        "tag": ["t1"],
        "object_name": ["o1"],
        "tag_name": ["t1"],
        "property_name": ["p1"],
    }
    with httpx.Client(base_url=url, timeout=30) as http:
        for who in ("alice", "bob"):
            headers = IDENTITIES[who]
            for body in (
                {"name": f"{who}-queued"},
                {"name": f"{who}-protected", "protected": True},
                {
                    "name": f"{who}-active",
                    "disk_format": "raw",
                    "container_format": "bare",
                    "tags": ["t1"],
                },
            ):
                r = http.post("/v2/images", json=body, headers=headers)
                assert r.status_code == 201, r.text
                known["image_id"].append(r.json()["id"])
            active = known["image_id"][-1]
            r = http.put(
                f"/v2/images/{active}/file",
                content=b"x" * 1024,
                headers={**headers, "Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 204, r.text
        alice_active = known["image_id"][2]
        r = http.post(
            f"/v2/images/{alice_active}/members",
            json={"member": "fuzz-b"},
            headers=IDENTITIES["alice"],
        )
        assert r.status_code == 200, r.text
        r = http.post(
            "/v2/tasks",
            headers=ADMIN,
            json={
                "type": "import",
                "input": {
                    "import_from": "http://127.0.0.1:9/x",
                    "import_from_format": "raw",
                    "image_properties": {"disk_format": "raw", "container_format": "bare"},
                },
            },
        )
        assert r.status_code == 201, r.text
        known["task_id"].append(r.json()["id"])
        r = http.post(
            "/v2/metadefs/namespaces",
            headers=ADMIN,
            json={
                "namespace": "FUZZ::Ns",
                "visibility": "public",
                "protected": True,
                "objects": [{"name": "o1"}],
                "tags": [{"name": "t1"}],
                "properties": {"p1": {"title": "P1", "type": "string"}},
            },
        )
        assert r.status_code == 201, r.text
        known["namespace"].append("FUZZ::Ns")
    return known


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("fuzz")
    server = start_server(tmp, f"sqlite:///{tmp / 'glimpse.sqlite'}", CONFIG)
    yield server
    server.stop()
    log = Path(server.log).read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]


@pytest.fixture(scope="module")
def known_ids(fuzz_server: LiveServer) -> dict[str, list[str]]:
    return _seed(fuzz_server.url)


def _fuzz_operation(operation, url: str, known: dict[str, list[str]]) -> None:  # noqa: ANN001
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(),
        who=st.sampled_from(sorted(IDENTITIES)),
        pick=st.integers(0, 7),
    )
    def run(case, who: str, pick: int) -> None:  # noqa: ANN001
        # Most of the time, a path parameter names something that exists.
        for name, values in known.items():
            if name in (case.path_parameters or {}) and pick < 6:
                case.path_parameters[name] = values[pick % len(values)]
        if case.path_parameters and "image_id" in case.path_parameters and pick == 6:
            case.path_parameters["image_id"] = str(uuid.uuid4())
        case.call_and_validate(base_url=url, headers=IDENTITIES[who], checks=CHECKS, timeout=30)

    run()


def test_every_operation_answers_as_documented(fuzz_server, known_ids):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/v2/openapi.json", headers=ADMIN)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _fuzz_operation(operation, fuzz_server.url, known_ids)
        except Exception as exc:  # noqa: BLE001 - every operation's failure is reported
            failures.append(f"{operation.label}: {exc}")
    assert operations > 60
    assert not failures, "\n\n".join(failures)
