"""Shared fixtures: real databases, an in-process app, and live servers.

Database back ends: SQLite always; PostgreSQL and MariaDB at their standard
local ports (GLIMPSE_TEST_PG_URL / GLIMPSE_TEST_MYSQL_URL override). Each test
session creates its own throw-away databases and drops them afterwards.
Outside CI a back end that is not reachable is skipped with a plain reason;
with CI=true it fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.services import runtime as runtime_mod

# With CI=true every skip fails the run (tests/ci_skips.py has the few allowed ones).
pytest_plugins = ["tests.ci_skips"]

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN = os.environ.get("GLIMPSE_TEST_PG_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# ssl_disabled: the local MariaDB offers no TLS, and PyMySQL (1.2+: TLS "preferred")
# would otherwise load the system CA bundle into a new SSL context for every
# connection, about 30 ms of CPU each, before finding that out.
MYSQL_ADMIN = os.environ.get("GLIMPSE_TEST_MYSQL_URL",
                             "mysql+pymysql://root@127.0.0.1:3306/?ssl_disabled=true")
BACKENDS = [b for b in os.environ.get("GLIMPSE_TEST_DBS", "sqlite,postgresql,mysql").split(",")
            if b]


def _unavailable(name: str, exc: Exception) -> None:
    message = f"{name} is not reachable ({exc.__class__.__name__}: {exc})"
    if IN_CI:
        pytest.fail(message + " - CI requires every database back end", pytrace=False)
    pytest.skip(message)


class ServerDB:
    """Creates fresh databases on one server and drops them at the end."""

    def __init__(self, kind: str):
        self.kind = kind
        self.created: list[str] = []
        admin = PG_ADMIN if kind == "postgresql" else MYSQL_ADMIN
        self.engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def new(self) -> str:
        name = "glimpse_t_" + uuid.uuid4().hex[:12]
        with self.engine.connect() as conn:
            if self.kind == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        self.created.append(name)
        url = self.engine.url.set(database=name)
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.created:
                if self.kind == "postgresql":
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        self.engine.dispose()


@pytest.fixture(scope="session")
def server_dbs() -> Iterator[dict[str, ServerDB | Exception]]:
    servers: dict[str, ServerDB | Exception] = {}
    for kind in ("postgresql", "mysql"):
        if kind not in BACKENDS:
            continue
        try:
            servers[kind] = ServerDB(kind)
        except Exception as exc:  # noqa: BLE001 - reported per test below
            servers[kind] = exc
    yield servers
    for server in servers.values():
        if isinstance(server, ServerDB):
            server.drop_all()


@pytest.fixture(scope="session")
def _migrated_server_urls(server_dbs) -> Iterator[dict[str, str | Exception]]:
    """One database per server back end for the whole session, migrated once."""
    from glimpse.db.engine import Database, upgrade

    urls: dict[str, str | Exception] = {}
    for kind, server in server_dbs.items():
        if isinstance(server, Exception):
            urls[kind] = server
            continue
        url = server.new()
        db = Database(url)
        upgrade(db)
        db.dispose()
        urls[kind] = url
    yield urls
    for engine in _TRUNCATORS.values():  # before the databases are dropped
        engine.dispose()
    _TRUNCATORS.clear()


_TRUNCATORS: dict[str, Engine] = {}


def _truncate(url: str) -> None:
    """Delete every row (the session database is reused by the next test)."""
    from glimpse.db.models import Base

    engine = _TRUNCATORS.get(url)
    if engine is None:
        # Pinged before each use: some tests make the server drop every connection
        # to the test database (tests/db), this one's included.
        engine = _TRUNCATORS[url] = create_engine(url, pool_size=1, max_overflow=0,
                                                  pool_pre_ping=True)
    tables = list(reversed(Base.metadata.sorted_tables))  # children before parents
    quote = engine.dialect.identifier_preparer.quote
    # One round trip finds the tables holding rows (most tests fill two or three);
    # a DELETE per table costs a round trip each, and tens of milliseconds on MariaDB.
    nonempty = " UNION ALL ".join(
        f"SELECT {i} FROM (SELECT 1 AS x FROM {quote(t.name)} LIMIT 1) AS t{i}"
        for i, t in enumerate(tables))
    with engine.begin() as conn:
        found = {row[0] for row in conn.execute(text(nonempty))}
        for i, table in enumerate(tables):
            if i in found:
                conn.execute(table.delete())


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head once per session (per xdist worker)."""
    from glimpse.db.engine import Database, upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "glimpse.sqlite"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    # Everything in the one file, so that it can be copied. It stays in WAL mode
    # (recorded in the file): switching a copy back to WAL costs a write and a
    # sync per test.
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, _migrated_server_urls, tmp_path: Path) -> str:
    """An empty, migrated database for each test, on each back end.

    SQLite gets a copy of a template migrated once per session; PostgreSQL and
    MariaDB reuse one session database whose rows are deleted before each test
    (creating a database per test costs seconds)."""
    kind = request.param
    if kind == "sqlite":
        path = tmp_path / "glimpse.sqlite"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url = _migrated_server_urls.get(kind)
    if isinstance(url, Exception):
        _unavailable(kind, url)
    assert isinstance(url, str)
    _truncate(url)
    return url


@pytest.fixture
def fresh_db_url(request: pytest.FixtureRequest, server_dbs, tmp_path: Path) -> str:
    """A brand-new, unmigrated database (for migration tests)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    server = server_dbs.get(kind)
    if isinstance(server, Exception):
        _unavailable(kind, server)
    assert isinstance(server, ServerDB)
    return server.new()


def make_conf(tmp_path: Path, db_url: str, **overrides: object):  # noqa: ANN201
    values: dict[str, object] = {"data_dir": str(tmp_path / "data"),
                                 "database.connection": db_url}
    values.update(overrides)
    return load_config([], values)


@pytest.fixture
def app_factory(tmp_path: Path, db_url: str):  # noqa: ANN201
    """make(**config_overrides) -> TestClient on a fresh runtime (same database)."""
    runtimes = []

    def make(**overrides: object) -> TestClient:
        conf = make_conf(tmp_path, db_url, **overrides)
        rt = runtime_mod.build(conf, migrate=True)
        runtimes.append(rt)
        # Like openstacksdk and tempest, ask for JSON (errors are text otherwise).
        return TestClient(create_app(conf, rt), headers={"Accept": "application/json"})

    yield make
    for rt in runtimes:
        rt.close()


@pytest.fixture
def client(app_factory) -> TestClient:  # noqa: ANN001
    return app_factory()


def as_project(project: str, roles: str = "member,reader", user: str | None = None,
               ) -> dict[str, str]:
    """Headers that make a noauth request act as a user of ``project``."""
    return {
        "X-Identity-Status": "Confirmed",
        "X-Project-Id": project,
        "X-User-Id": user or f"user-of-{project}",
        "X-Roles": roles,
    }


# ---------------------------------------------------------------- live servers


def http_server() -> str:
    """The HTTP server the live tests' ``glimpse serve`` runs: GLIMPSE_TEST_HTTP_SERVER,
    else glimpse serve's default."""
    from glimpse.cli import DEFAULT_HTTP_SERVER

    return os.environ.get("GLIMPSE_TEST_HTTP_SERVER") or DEFAULT_HTTP_SERVER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, proc: subprocess.Popen, url: str, data_dir: Path, log: Path):
        self.proc, self.url, self.data_dir, self.log = proc, url, data_dir, log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(tmp_path: Path, db_url: str | None = None, config_text: str = "",
                 workers: int = 1, port: int | None = None) -> LiveServer:
    """Run ``glimpse serve`` on ``port`` (a free one by default).

    ``config_text`` goes into [DEFAULT] and may open further sections. Starting
    again on the same port reuses the data directory (a restarted worker)."""
    port = port or free_port()
    data_dir = tmp_path / f"server-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    conf_file = data_dir / "glance-api.conf"
    lines = ["[DEFAULT]", config_text.strip()]
    if db_url:
        lines += ["[database]", f"connection = {db_url}"]
    conf_file.write_text("\n".join(lines) + "\n")
    log = data_dir / "server.log"
    cmd = [sys.executable, "-m", "glimpse.cli", "serve", "--config-file", str(conf_file),
           "--data-dir", str(data_dir), "--port", str(port), "--workers", str(workers)]
    if os.environ.get("GLIMPSE_TEST_HTTP_SERVER"):  # the live tests under another server
        cmd += ["--http-server", os.environ["GLIMPSE_TEST_HTTP_SERVER"]]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    # One client for the whole wait: each new one loads the CA bundle (tens of
    # milliseconds of CPU that the starting server would rather have).
    with httpx.Client(timeout=1, trust_env=False) as poller:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()}")
            try:
                if poller.get(url + "/versions").status_code == 200:
                    return LiveServer(proc, url, data_dir, log)
            except httpx.HTTPError:
                time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


@pytest.fixture
def live_server(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    server = start_server(tmp_path, db_url)
    yield server
    server.stop()
