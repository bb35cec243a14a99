"""Round trips and statements of the hot API calls, pinned per database.

Each call runs through the in-process app against a real database. On
PostgreSQL and MariaDB the connection goes through ``WireCounter``, which
counts every request/response turn on the wire (queries, the driver's
implicit BEGIN, COMMIT, pool pings and resets). SQLAlchemy's events count
the statements (with BEGIN/COMMIT/ROLLBACK listed separately); on SQLite
they are the only measure. A change that adds a round trip to one of these
calls fails here with the statements it sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.services import runtime as runtime_mod
from tests.conftest import as_project, make_conf
from tests.db.wire import StatementLog, WireCounter

OWNER = as_project("owner-project")

# call -> (round trips on PostgreSQL, on MariaDB, statements on SQLite incl.
# BEGIN/COMMIT): the most each call may take.
PINS: dict[str, dict[str, int]] = {
    "get": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "list": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "list_marker": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "list_name": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "list_tag": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "patch": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "create": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "member_add": {"postgresql": 99, "mysql": 99, "sqlite": 99},
    "tag_add": {"postgresql": 99, "mysql": 99, "sqlite": 99},
}


class Harness:
    def __init__(self, tmp_path: Path, db_url: str):
        url = make_url(db_url)
        self.kind = url.get_backend_name().replace("mariadb", "mysql")
        self.wire: WireCounter | None = None
        if self.kind != "sqlite":
            self.wire = WireCounter(url.host or "127.0.0.1", url.port or _default_port(self.kind))
            db_url = url.set(port=self.wire.port).render_as_string(hide_password=False)
        conf = make_conf(tmp_path, db_url)
        self.rt = runtime_mod.build(conf, migrate=True)
        self.log = StatementLog()
        for engine in self.rt.db.engines:
            self.log.attach(engine)
        self.client = TestClient(create_app(conf, self.rt), headers={"Accept": "application/json"})
        self.client.__enter__()

    def measure(self, fn: Any) -> tuple[Any, int, list[str]]:
        """Run ``fn()`` once; its result, round trips (statements on SQLite), statements."""
        self.log.clear()
        before = self.wire.round_trips if self.wire else 0
        result = fn()
        entries = list(self.log.entries)
        count = (self.wire.round_trips - before) if self.wire else len(entries)
        return result, count, entries

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.rt.close()
        if self.wire:
            self.wire.close()


def _default_port(kind: str) -> int:
    return 5432 if kind == "postgresql" else 3306


@pytest.fixture
def harness(tmp_path: Path, db_url: str):  # noqa: ANN201
    h = Harness(tmp_path, db_url)
    yield h
    h.close()


def _create(c: TestClient, n: int, **extra: Any) -> dict:
    body = {"name": f"image-{n:03d}", "disk_format": "raw", "container_format": "bare",
            "tags": [f"tag-{n % 5}", "common"], "os_distro": "debian", "build": str(n),
            **extra}
    r = c.post("/v2/images", json=body, headers=OWNER)
    assert r.status_code == 201, r.text
    return r.json()


def _calls(c: TestClient, images: list[dict]) -> dict[str, Any]:
    """Each hot call as a function returning its checked result."""
    first, shared = images[0], images[1]
    counter = iter(range(1000, 10_000))

    def get():  # noqa: ANN202
        r = c.get(f"/v2/images/{first['id']}", headers=OWNER)
        assert r.status_code == 200 and r.json()["os_distro"] == "debian", r.text
        assert set(first["tags"]) <= set(r.json()["tags"]), r.text
        return r

    def list_page():  # noqa: ANN202
        r = c.get("/v2/images?limit=20", headers=OWNER)
        assert r.status_code == 200 and len(r.json()["images"]) == 20, r.text
        assert all(i["os_distro"] == "debian" for i in r.json()["images"])
        return r

    def list_marker():  # noqa: ANN202
        r = c.get(f"/v2/images?limit=5&marker={images[-10]['id']}", headers=OWNER)
        assert r.status_code == 200 and len(r.json()["images"]) == 5, r.text
        return r

    def list_name():  # noqa: ANN202
        r = c.get(f"/v2/images?name={quote(images[7]['name'])}", headers=OWNER)
        assert [i["id"] for i in r.json()["images"]] == [images[7]["id"]], r.text
        return r

    def list_tag():  # noqa: ANN202
        r = c.get("/v2/images?tag=tag-3&limit=100", headers=OWNER)
        found = r.json()["images"]
        assert all("tag-3" in i["tags"] for i in found), r.text
        assert {i["id"] for i in found} >= {i["id"] for i in images if "tag-3" in i["tags"]}
        return r

    def patch():  # noqa: ANN202
        n = next(counter)
        ops = [{"op": "replace", "path": "/name", "value": f"renamed-{n}"},
               {"op": "add", "path": "/build", "value": str(n)}]
        r = c.patch(f"/v2/images/{first['id']}", json=ops, headers={
            **OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"})
        assert r.status_code == 200 and r.json()["build"] == str(n), r.text
        assert r.json()["name"] == f"renamed-{n}"
        return r

    def create():  # noqa: ANN202
        return _create(c, next(counter))

    def member_add():  # noqa: ANN202
        r = c.post(f"/v2/images/{shared['id']}/members", json={"member": f"p-{next(counter)}"},
                   headers=OWNER)
        assert r.status_code == 200, r.text
        return r

    def tag_add():  # noqa: ANN202
        tag = f"t-{next(counter)}"
        r = c.put(f"/v2/images/{first['id']}/tags/{tag}", headers=OWNER)
        assert r.status_code == 204, r.text
        return r

    return {"get": get, "list": list_page, "list_marker": list_marker, "list_name": list_name,
            "list_tag": list_tag, "patch": patch, "create": create, "member_add": member_add,
            "tag_add": tag_add}


@pytest.fixture
def calls(harness: Harness) -> dict[str, Any]:
    images = [_create(harness.client, n) for n in range(30)]
    fns = _calls(harness.client, images)
    for fn in fns.values():  # warm up: pool connections, statement caches
        fn()
        fn()
    return fns


@pytest.mark.parametrize("call", sorted(PINS))
def test_round_trips_pinned(harness: Harness, calls: dict[str, Any], call: str) -> None:
    _, count, entries = harness.measure(calls[call])
    limit = PINS[call][harness.kind]
    print(f"ROUNDTRIPS {harness.kind} {call} {count} statements={len(entries)}: {entries}")
    assert count <= limit, (
        f"{call} on {harness.kind}: {count} round trips (pinned at {limit}); sent: {entries}")
