"""New MariaDB connections share one TLS context (issue 13's cold-pool p99).

PyMySQL offers TLS to a server when no ssl option is given and, left alone,
builds a default SSL context (loading the system's CA certificates) for every
connection: tens of milliseconds each, holding the interpreter lock. The
engine hands every such connection one context per process instead; a
connection with explicit ssl options still gets its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from glimpse.db.engine import Database
from tests.conftest import BACKENDS


@pytest.fixture
def mysql_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    if "mysql" not in BACKENDS:
        pytest.skip("MariaDB is not among GLIMPSE_TEST_DBS")
    url = request.getfixturevalue("_migrated_server_urls").get("mysql")
    if isinstance(url, Exception):
        pytest.fail(f"MariaDB is not reachable: {url}")
    # Without the test suite's ssl_disabled (tests/conftest.py): PyMySQL's own default,
    # the TLS offer, is what is under test.
    from sqlalchemy.engine import make_url

    db = Database(make_url(url).difference_update_query(["ssl_disabled"])
                  .render_as_string(hide_password=False))
    yield db
    db.dispose()


def _new_connection(engine):  # noqa: ANN001, ANN202
    """A connection opened now (not one the pool kept), as the driver's object."""
    return engine.pool._creator()  # noqa: SLF001 - the pool's own way to connect


def test_new_connections_share_one_tls_context(mysql_db: Database) -> None:
    from sqlalchemy import text

    opened = [_new_connection(engine) for engine in mysql_db.engines for _ in range(2)]
    try:
        for conn in opened:
            cur = conn.cursor()
            cur.execute("SELECT 7")
            assert cur.fetchone() == (7,)
        contexts = {id(conn.ctx) for conn in opened if getattr(conn, "ctx", None) is not None}
        if not contexts:
            pytest.fail("PyMySQL made no TLS offer: the shared context has nothing to share")
        assert len(contexts) == 1, "each new connection built an SSL context of its own"
        context = opened[0].ctx
        # The offer is PyMySQL's own: unverified, used only if the server takes it.
        assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
        assert all(conn.ssl and not conn._ssl_required for conn in opened)  # noqa: SLF001
    finally:
        for conn in opened:
            conn.close()
    with mysql_db.reading() as conn:  # and the pooled path still works
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_explicit_ssl_options_get_their_own_context(mysql_db: Database) -> None:
    conn = _new_connection(mysql_db.engine)
    try:
        options = {"ca": None, "check_hostname": False, "verify_mode": True}
        first, second = conn._create_ssl_ctx(options), conn._create_ssl_ctx(options)  # noqa: SLF001
        assert first is not second and first is not conn.ctx
        assert first.verify_mode == ssl.CERT_REQUIRED
    finally:
        conn.close()
