"""Engine and session set-up for SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import ast
import functools
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oslo_config import cfg
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DisconnectionError
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
    return _server_engine(url, conf)


# A connection that sat idle this long is pinged before use; one in steady use
# never is. Dead connections found in use are thrown away with their whole pool
# (SQLAlchemy invalidates the pool on a disconnect error), so a database
# restart costs the requests in flight, not a ping on every checkout.
IDLE_PING_SECONDS = 30.0


def _server_engine(url: str, conf: cfg.ConfigOpts | None, autocommit: bool = False) -> Engine:
    """A pooled engine for PostgreSQL or MariaDB, sized by [database].

    ``autocommit`` engines run each statement as its own transaction: no BEGIN
    and no COMMIT round trip, and nothing to roll back when a connection goes
    back to the pool. They serve single-statement reads only."""
    db = conf.database if conf is not None else None
    options: dict[str, Any] = {
        "pool_size": db.max_pool_size if db else 10,
        "max_overflow": db.max_overflow if db else 20,
        "pool_timeout": db.pool_timeout if db else 30,
        "pool_recycle": db.connection_recycle_time if db else 3600,
        # The connection most recently returned is the one handed out next, so
        # a worker's spare connections go idle (and are recycled) instead of
        # all being kept barely alive.
        "pool_use_lifo": True,
    }
    # The pool's reset (a ROLLBACK when a connection comes back) costs a round
    # trip on MariaDB even after a COMMIT; _reset_when_needed does it only
    # for a connection whose transaction was not ended.
    options["pool_reset_on_return"] = None
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
        options["skip_autocommit_rollback"] = True
    engine = create_engine(url, **options)
    if engine.dialect.driver == "pymysql":
        _one_tls_context(engine)
    _ping_when_idle(engine)
    if not autocommit:
        _reset_when_needed(engine)
    if engine.dialect.name in ("mysql", "mariadb"):
        _long_aggregates(engine)
    return engine


def _reset_when_needed(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _began(conn):  # noqa: ANN001
        conn.connection.info["in_transaction"] = True

    def _ended(conn) -> None:  # noqa: ANN001
        # A connection the server dropped is invalidated (the pool discards it):
        # touching conn.connection then would raise instead of rolling back.
        if not conn.invalidated:
            conn.connection.info["in_transaction"] = False

    event.listen(engine, "commit", _ended)
    event.listen(engine, "rollback", _ended)

    @event.listens_for(engine, "reset")
    def _reset(dbapi_conn, record, state):  # noqa: ANN001
        if state.terminate_only or record is None:
            return
        if record.info.get("in_transaction", True) and not state.transaction_was_reset:
            dbapi_conn.rollback()
            record.info["in_transaction"] = False


def _one_tls_context(engine: Engine) -> None:
    """PyMySQL 1.2 (1.2.4 here) offers TLS to every server when no ssl option
    is given (used if the server takes it, unverified) and builds a new
    default SSL context for each connection to do so: loading the system's CA
    certificates took 40-130 ms a connection on the loaded machine (0.4-5 ms
    without), holding the interpreter lock, so the first burst of requests on a
    cold pool waited up to a second and more (issue 13's 32-client p99). The
    same offer is made with one context per process; a connection with explicit
    ssl options gets its own, as PyMySQL makes it."""
    connection_class = _shared_context_connection()

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):  # noqa: ANN001
        return connection_class(*cargs, **cparams)


@functools.cache
def _shared_context_connection() -> type:
    from pymysql.connections import Connection as PyMySQLConnection

    class SharedContextConnection(PyMySQLConnection):
        preferred_context: Any = None

        def _create_ssl_ctx(self, sslp: Any) -> Any:
            if sslp != {}:  # explicit ssl options: PyMySQL's own, per connection
                return super()._create_ssl_ctx(sslp)
            cls = SharedContextConnection
            if cls.preferred_context is None:
                cls.preferred_context = super()._create_ssl_ctx(sslp)
            return cls.preferred_context

    return SharedContextConnection


def _long_aggregates(engine: Engine) -> None:
    """MariaDB cuts JSON_ARRAYAGG results at group_concat_max_len (1 MiB by
    default); an image's properties may be longer (values up to 16 MiB)."""
    @event.listens_for(engine, "connect")
    def _session_settings(dbapi_conn, _record):  # noqa: ANN001
        cur = dbapi_conn.cursor()
        cur.execute("SET SESSION group_concat_max_len = 1073741824")
        cur.close()


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):  # noqa: ANN001
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):  # noqa: ANN001
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc
        # On a transactional psycopg connection the ping began a transaction:
        # the request's statements run in it, and if none comes the reset on
        # return ends it.
        record.info["in_transaction"] = True


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
        # Server databases read through a second pool of autocommit connections:
        # a read that is one statement needs no transaction around it.
        self.read_engine = (self.engine if self.is_sqlite
                            else _server_engine(url, conf, autocommit=True))
        self.engines = [self.engine] if self.is_sqlite else [self.engine, self.read_engine]

    def read(self) -> Session:
        return self._readers()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A Core connection for the hot read paths, which need none of a
        Session's bookkeeping: in a read transaction on SQLite, in autocommit
        on PostgreSQL and MariaDB (each statement sees one committed state;
        the repository reads an image, or a page, in one statement there)."""
        if self.is_sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        else:
            with self.read_engine.connect() as conn:
                yield conn

    def write(self) -> Session:
        """A session whose transaction takes SQLite's write lock up front, so
        concurrent writers wait for each other instead of failing."""
        return self._writers()

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()


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


def upgrade_if_needed(db: Database) -> bool:
    """Upgrade to head unless the database is already there; True if it migrated.

    Checking costs two small queries, where alembic's own no-op upgrade loads
    every migration script and takes a transaction: worth it for a server or a
    test runtime that starts against an up-to-date database."""
    stamped = stamped_revisions(db)
    if stamped == head_revisions():
        return False
    if stamped - known_revisions():
        # Stamped by a newer release during a rolling upgrade: its migrations only
        # expand the schema this code uses (docs/operations.md), so serve as it is.
        logging.getLogger(__name__).warning(
            "The database schema (%s) is newer than this release's (%s): serving "
            "without migrating; upgrade this node", ", ".join(sorted(stamped)),
            ", ".join(sorted(head_revisions())))
        return False
    upgrade(db)
    return True


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this release's migration scripts define."""
    return frozenset(
        value for path in (MIGRATIONS_DIR / "versions").glob("*.py")
        if isinstance(value := _module_constants(path, ("revision",)).get("revision"), str))


def stamped_revisions(db: Database) -> frozenset[str]:
    """The revisions recorded in alembic_version (empty for a new database)."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return frozenset()
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
        return frozenset(rows)


@functools.cache
def head_revisions() -> frozenset[str]:
    """The head revision(s), read from the migration scripts' ``revision`` and
    ``down_revision`` lines without importing Alembic (a second or more at every
    start on a busy machine); tests/db checks it agrees with Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        values = _module_constants(path, ("revision", "down_revision"))
        if isinstance(values.get("revision"), str):
            revisions.add(values["revision"])
            down = values.get("down_revision")
            parents.update([down] if isinstance(down, str) else list(down or ()))
    return frozenset(revisions - parents)


def _module_constants(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in names and node.value:
                    found[target.id] = ast.literal_eval(node.value)
    return found


def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
