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
from tests.db.wire import StatementLog, WireCounter, server_backends

OWNER = as_project("owner-project")

# The most each call may take: round trips on PostgreSQL and MariaDB,
# statements (BEGIN and COMMIT included) on SQLite. Before this file existed
# (commit b711a33) they were, in the same order: GET 5/5/4, list page 5/5/4,
# page after a marker 6/6/5, ?name= 5/5/4, ?tag= 5/5/4, PATCH 10/10/9,
# create 7/7/6, member add 7/7/6, tag add 8/8/7.
# PostgreSQL's writes pay a BEGIN of their own (MariaDB starts a transaction
# with the first statement), but a PATCH writes all its changes in one
# statement there; "patch_tags" also changes properties and tags.
PINS: dict[str, dict[str, int]] = {
    "get": {"postgresql": 1, "mysql": 1, "sqlite": 4},
    "list": {"postgresql": 1, "mysql": 1, "sqlite": 4},
    "list_marker": {"postgresql": 2, "mysql": 2, "sqlite": 5},
    "list_name": {"postgresql": 1, "mysql": 1, "sqlite": 4},
    "list_tag": {"postgresql": 1, "mysql": 1, "sqlite": 4},
    "patch": {"postgresql": 4, "mysql": 4, "sqlite": 6},
    "patch_tags": {"postgresql": 4, "mysql": 6, "sqlite": 8},
    "create": {"postgresql": 5, "mysql": 4, "sqlite": 5},
    "member_add": {"postgresql": 5, "mysql": 4, "sqlite": 6},
    "tag_add": {"postgresql": 5, "mysql": 4, "sqlite": 6},
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


def _patch(c: TestClient, image_id: str, n: int, ops: list[dict]) -> Any:
    r = c.patch(f"/v2/images/{image_id}", json=ops, headers={
        **OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert r.status_code == 200 and r.json()["build"] == str(n), r.text
    assert r.json()["name"] == f"renamed-{n}"
    return r


def _calls(c: TestClient, images: list[dict]) -> dict[str, Any]:
    """Each hot call as a function returning its checked result."""
    first, shared = images[0], images[1]
    counter = iter(range(1000, 10_000))

    def get():  # noqa: ANN202
        r = c.get(f"/v2/images/{first['id']}", headers=OWNER)
        assert r.status_code == 200 and r.json()["os_distro"] == "debian", r.text
        assert "common" in r.json()["tags"], r.text
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
        return _patch(c, first["id"], n, [
            {"op": "replace", "path": "/name", "value": f"renamed-{n}"},
            {"op": "add", "path": "/build", "value": str(n)}])

    def patch_tags():  # noqa: ANN202
        # What bench/ sends: a property replaced, one added, the tag list replaced.
        n = next(counter)
        r = _patch(c, first["id"], n, [
            {"op": "replace", "path": "/name", "value": f"renamed-{n}"},
            {"op": "add", "path": "/build", "value": str(n)},
            {"op": "add", "path": f"/extra_{n % 3}", "value": str(n)},
            {"op": "replace", "path": "/tags", "value": ["common", f"p{n}"]}])
        assert r.json()[f"extra_{n % 3}"] == str(n)
        assert sorted(r.json()["tags"]) == ["common", f"p{n}"], r.text
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
            "list_tag": list_tag, "patch": patch, "patch_tags": patch_tags, "create": create,
            "member_add": member_add, "tag_add": tag_add}


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
    assert count <= limit, (
        f"{call} on {harness.kind}: {count} round trips (pinned at {limit}); sent: {entries}")


SERVERS = pytest.mark.parametrize("db_url", server_backends(), indirect=True)


@SERVERS
def test_wire_counter_counts_every_turn(harness: Harness) -> None:
    """The measure itself: one statement in autocommit is one round trip; a
    transaction adds its COMMIT (and on PostgreSQL the BEGIN psycopg sends)."""
    from sqlalchemy import text

    def one_read() -> None:
        with harness.rt.db.reading() as conn:
            assert conn.execute(text("SELECT 7")).scalar() == 7

    def one_write() -> None:
        with harness.rt.db.write() as session, session.begin():
            session.execute(text("UPDATE images SET min_ram = 0 WHERE id = 'none'"))

    for fn in (one_read, one_write):
        fn()
    assert harness.measure(one_read)[1] == 1
    assert harness.measure(one_write)[1] == (3 if harness.kind == "postgresql" else 2)


@SERVERS
def test_idle_connection_is_pinged_and_replaced(harness: Harness, calls: dict[str, Any],
                                                db_url: str, monkeypatch) -> None:  # noqa: ANN001
    """Connections in use are never pinged; one idle past the limit is, and
    when the server has dropped it the request gets a new connection."""
    from glimpse.db import engine as engine_mod

    assert harness.measure(calls["get"])[1] == 1
    monkeypatch.setattr(engine_mod, "IDLE_PING_SECONDS", 0.0)
    assert harness.measure(calls["get"])[1] == 2  # the ping, then the read
    assert _drop_connections(harness, db_url) >= 1
    for name in ("get", "list", "patch", "tag_add"):
        calls[name]()  # each asserts its own success


@SERVERS
def test_read_survives_a_dropped_connection(harness: Harness, calls: dict[str, Any],
                                            db_url: str) -> None:
    """Without a ping (the connection was in use a moment ago), a read whose
    connection the server dropped runs again on a new one: no error reaches
    the client."""
    assert harness.measure(calls["get"])[1] == 1  # no ping
    assert _drop_connections(harness, db_url) >= 1
    calls["get"]()
    assert _drop_connections(harness, db_url) >= 1
    calls["list"]()


def _drop_connections(harness: Harness, db_url: str) -> int:
    """The server closes every connection to the test database but ours."""
    from sqlalchemy import create_engine, text

    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if harness.kind == "postgresql":
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
        else:
            ids = conn.execute(text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()")).scalars().all()
            for pid in ids:
                conn.execute(text(f"KILL {int(pid)}"))
            killed = len(ids)
    admin.dispose()
    return killed
