"""A bounded retry of whole write transactions that lost a conflict.

On a multi-master Galera cluster ``SELECT ... FOR UPDATE`` locks rows on one
node only: two nodes may both read an image, both change it, and the one that
commits second fails certification with MariaDB's deadlock error (1213). A
single server reports real lock cycles the same way (MariaDB 1213, PostgreSQL
40P01 deadlock_detected, 40001 serialization_failure). The transaction was
rolled back entirely, so running the use case again from the start, on the
state the winner committed, is correct: no change is lost, none is applied
twice.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from glimpse.errors import ServiceUnavailable

LOG = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

ATTEMPTS = 5
MYSQL_CONFLICTS = frozenset({1213})            # ER_LOCK_DEADLOCK (Galera certification too)
POSTGRESQL_CONFLICTS = frozenset({"40001", "40P01"})


class _Counter:
    """How many retries this process made (for tests and operators' logs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


RETRIES = _Counter()


def is_conflict(exc: BaseException) -> bool:
    """True for a transaction the database rolled back because of a conflict."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate is not None:
        return sqlstate in POSTGRESQL_CONFLICTS
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in MYSQL_CONFLICTS  # PyMySQL: (errno, message)


def retry_on_conflict(fn: Callable[P, T]) -> Callable[P, T]:
    """Run ``fn`` again (up to ATTEMPTS times in all) when its transaction lost
    a conflict. ``fn`` must do all its database work in transactions it opens
    itself and have no other effect before they commit."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except DBAPIError as exc:
                if attempt == ATTEMPTS or not is_conflict(exc):
                    raise
                RETRIES.add()
                LOG.info("%s lost a write conflict (attempt %d of %d), retrying: %s",
                         fn.__qualname__, attempt, ATTEMPTS, exc.orig)
                # A short, growing, jittered pause so the two losers of a
                # three-way conflict do not collide again at once.
                time.sleep(random.uniform(0.005, 0.02) * attempt)
        raise AssertionError("unreachable")

    return run


def retry_read_on_disconnect(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a read-only use case once more when its connection turned out to be
    dead (the server restarted, a proxy dropped it). SQLAlchemy has then
    discarded that connection and every other one of the pool, so the second
    attempt connects afresh. Connections are not pinged before each use; this
    is what keeps a database restart invisible to reads."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            LOG.info("%s lost its database connection, retrying once: %s",
                     fn.__qualname__, exc.orig)
            return fn(*args, **kwargs)

    return run


def is_unavailable(exc: BaseException) -> bool:
    """True when the database could not be reached or dropped the connection
    (server down or restarting, network cut, pool exhausted, SQLite busy): a fault
    of the moment, not of the request nor of the code."""
    if isinstance(exc, PoolTimeout | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


UNAVAILABLE_MESSAGE = "The image database is unavailable; try again later."


def as_http_error(exc: BaseException) -> ServiceUnavailable | None:
    """The one mapping of a database failure to what the client sees: 503 (with
    Retry-After) for an outage, None for anything else (a bug: 500)."""
    if not is_unavailable(exc):
        return None
    LOG.warning("database unavailable: %s", getattr(exc, "orig", None) or exc)
    return ServiceUnavailable(UNAVAILABLE_MESSAGE, headers={"Retry-After": "1"})
