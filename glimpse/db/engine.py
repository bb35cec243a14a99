"""Engine and session set-up for SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oslo_config import cfg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from glimpse.config import database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, conf: cfg.ConfigOpts | None = None) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            # Let pysqlite not issue BEGIN itself; we emit BEGIN IMMEDIATE for
            # writes below so concurrent writers queue instead of deadlocking.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            write = conn.get_execution_options().get("sqlite_write")
            # Straight to the driver: a statement through SQLAlchemy costs more
            # than SQLite takes to begin a transaction.
            conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    pool_size = conf.database.max_pool_size if conf is not None else 10
    overflow = conf.database.max_overflow if conf is not None else 20
    timeout = conf.database.pool_timeout if conf is not None else 30
    recycle = conf.database.connection_recycle_time if conf is not None else 3600
    # TLS to the server: the drivers' own URL parameters pass through unchanged
    # (PostgreSQL ?sslmode=verify-full&sslrootcert=..., PyMySQL ?ssl_ca=...&ssl_verify_cert=true)
    return create_engine(url, pool_size=pool_size, max_overflow=overflow, pool_pre_ping=True,
                         pool_timeout=timeout, pool_recycle=recycle)


class Database:
    """Owns the engine; hands out sessions for reads and for writes."""

    def __init__(self, url: str, conf: cfg.ConfigOpts | None = None):
        self.url = url
        self.engine = make_engine(url, conf)
        self.is_sqlite = url.startswith("sqlite")
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        writer_engine = (
            self.engine.execution_options(sqlite_write=True) if self.is_sqlite else self.engine
        )
        self._writers = sessionmaker(writer_engine, expire_on_commit=False)

    def read(self) -> Session:
        return self._readers()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A Core connection in a read transaction: for the hot read paths, which
        need none of a Session's bookkeeping."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def write(self) -> Session:
        """A session whose transaction takes SQLite's write lock up front, so
        concurrent writers wait for each other instead of failing."""
        return self._writers()

    def dispose(self) -> None:
        self.engine.dispose()


def from_conf(conf: cfg.ConfigOpts) -> Database:
    return Database(database_url(conf), conf)


# Alembic is imported where it is used: API workers never migrate, and
# importing it costs a third of a second at every start.


def alembic_config(url: str) -> Any:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    from alembic import command

    with db.engine.begin() as conn:
        config = alembic_config(db.url)
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
