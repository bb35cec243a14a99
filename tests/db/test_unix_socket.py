"""A database URL that names a Unix socket connects through it (no TCP).

PostgreSQL: ``postgresql://user@/dbname?host=/var/run/postgresql`` (libpq's
``host`` naming a directory); MariaDB: ``mysql://user@localhost/dbname?
unix_socket=/run/mysqld/mysqld.sock`` (PyMySQL's argument).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.services import runtime as runtime_mod
from tests.conftest import IN_CI, as_project, make_conf
from tests.db.wire import server_backends

SOCKETS = {
    "postgresql": os.environ.get("GLIMPSE_TEST_PG_SOCKET_DIR", "/var/run/postgresql"),
    "mysql": os.environ.get("GLIMPSE_TEST_MYSQL_SOCKET", "/run/mysqld/mysqld.sock"),
}


def _socket_url(db_url: str) -> str:
    url = make_url(db_url)
    kind = url.get_backend_name()
    where = SOCKETS[kind]
    present = os.path.isdir(where) if kind == "postgresql" else os.path.exists(where)
    if not present:
        message = f"no {kind} Unix socket at {where}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # The plain scheme, as an operator writes it: Glimpse picks the driver.
    scheme = "postgresql" if kind == "postgresql" else "mysql"
    user = url.username or ""
    if kind == "postgresql":
        return f"{scheme}://{user}@/{url.database}?host={where}"
    return f"{scheme}://{user}@localhost/{url.database}?unix_socket={where}&charset=utf8mb4"


@pytest.mark.parametrize("db_url", server_backends(), indirect=True)
def test_socket_url_serves_requests(tmp_path: Path, db_url: str) -> None:
    socket_url = _socket_url(db_url)
    conf = make_conf(tmp_path, socket_url)
    rt = runtime_mod.build(conf, migrate=True)
    try:
        for engine in rt.db.engines:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    # inet_client_addr() is NULL for a Unix-socket client.
                    assert conn.execute(text("SELECT inet_client_addr()")).scalar() is None
                else:
                    host = conn.execute(text(
                        "SELECT host FROM information_schema.processlist "
                        "WHERE id = CONNECTION_ID()")).scalar()
                    assert host == "localhost", host  # a TCP client shows host:port
        client = TestClient(create_app(conf, rt), headers={"Accept": "application/json"})
        owner = as_project("socket-project")
        r = client.post("/v2/images", json={"name": "via-socket", "tags": ["s"]}, headers=owner)
        assert r.status_code == 201, r.text
        got = client.get(f"/v2/images/{r.json()['id']}", headers=owner)
        assert got.status_code == 200 and got.json()["tags"] == ["s"], got.text
    finally:
        rt.close()
