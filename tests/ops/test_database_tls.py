"""[database] connection over TLS to a PostgreSQL the test starts with ssl on, and the
pool options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glimpse.config import load_config
from glimpse.db.engine import make_engine
from tests.conftest import IN_CI, free_port
from tests.ops.conftest import Certs, write_conf


def _pg_bin() -> Path | None:
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / "initdb").exists():
            return base
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_owner(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


@pytest.fixture(scope="module")
def tls_postgres(certs: Certs) -> Iterator[int]:
    """A throw-away PostgreSQL on 127.0.0.1 that accepts TLS connections only."""
    pg = _pg_bin()
    if pg is None:
        if IN_CI:
            pytest.fail("PostgreSQL server binaries (initdb) are not installed", pytrace=False)
        pytest.skip("PostgreSQL server binaries (initdb) are not installed")
    assert pg is not None
    owner = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    # not under pytest's base directory: that is private to the user running the tests
    root = Path(tempfile.mkdtemp(prefix="glimpse-pgtls-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    key = root / "server.key"
    shutil.copy(certs.server_key, key)
    shutil.copy(certs.server_cert, root / "server.pem")
    key.chmod(0o600)
    if owner:
        shutil.chown(root, owner)
        for p in (sock, key, root / "server.pem"):
            shutil.chown(p, owner)
    init = subprocess.run(_as_owner([str(pg / "initdb"), "-D", str(data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8"], owner),
                          capture_output=True, text=True)
    assert init.returncode == 0, init.stdout + init.stderr
    (data / "pg_hba.conf").write_text("local all all trust\n"
                                      "hostssl all all 127.0.0.1/32 trust\n"
                                      "hostnossl all all 127.0.0.1/32 reject\n")
    port = free_port()
    log = root / "postgres.log"
    proc = subprocess.Popen(_as_owner([
        str(pg / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
        "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on",
        "-c", f"ssl_cert_file={root / 'server.pem'}", "-c", f"ssl_key_file={key}",
        "-c", "fsync=off"], owner), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            ready = subprocess.run([str(pg / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(port)], capture_output=True)
            if ready.returncode == 0:
                break
            time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def _url(port: int, certs: Certs, mode: str) -> str:
    return (f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode={mode}"
            f"&sslrootcert={certs.ca}")


def _glimpse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glimpse.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_schema_and_api_over_verified_tls(tmp_path: Path, tls_postgres: int,
                                          certs: Certs) -> None:
    conf = write_conf(tmp_path, f"[database]\nconnection = "
                      f"{_url(tls_postgres, certs, 'verify-full')}")
    proc = _glimpse("db", "sync", "--config-file", str(conf))
    assert proc.returncode == 0, proc.stderr
    check = _glimpse("db", "check", "--config-file", str(conf))
    assert check.returncode == 0, check.stdout + check.stderr
    engine = make_engine(load_config([str(conf)]).database.connection.replace(
        "postgresql://", "postgresql+psycopg://"))
    with engine.connect() as c:
        from sqlalchemy import text
        assert c.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                         ).scalar_one() is True
    engine.dispose()


def test_plain_connections_are_refused_with_one_line(tmp_path: Path, tls_postgres: int,
                                                     certs: Certs) -> None:
    conf = write_conf(tmp_path, f"[database]\nconnection = "
                      f"{_url(tls_postgres, certs, 'disable')}")
    proc = _glimpse("db", "sync", "--config-file", str(conf))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "cannot connect to the database" in proc.stderr
    assert "no encryption" in proc.stderr


def test_a_server_certificate_the_ca_did_not_sign_is_refused(tmp_path: Path,
                                                             tls_postgres: int,
                                                             certs: Certs) -> None:
    url = (f"postgresql://postgres@127.0.0.1:{tls_postgres}/postgres?sslmode=verify-full"
           f"&sslrootcert={certs.other_client_cert}")
    proc = _glimpse("db", "version", "--config-file",
                    str(write_conf(tmp_path, f"[database]\nconnection = {url}")))
    assert proc.returncode == 1
    assert "certificate verify failed" in proc.stderr


def test_pool_options_reach_the_engine(tmp_path: Path) -> None:
    conf = load_config([], {"database.max_pool_size": 3, "database.max_overflow": 4,
                            "database.pool_timeout": 7,
                            "database.connection_recycle_time": 99})
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/x", conf)
    try:
        assert engine.pool.size() == 3
        assert engine.pool._max_overflow == 4
        assert engine.pool._timeout == 7
        assert engine.pool._recycle == 99
    finally:
        engine.dispose()
