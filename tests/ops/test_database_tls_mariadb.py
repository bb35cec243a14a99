"""[database] connection over TLS to a MariaDB the test starts: its own data directory
(mariadb-install-db), 127.0.0.1 on a free port, certificates the tests make, TLS
required for every TCP connection (require_secure_transport) and, for Glimpse's
account, a client certificate from the test CA (seed 002's x509)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from glimpse.config import database_url, load_config
from glimpse.db.engine import make_engine
from tests.conftest import IN_CI, as_project, free_port
from tests.ops.conftest import Certs, Served, serve, write_conf

PASSWORD = "tls-only-secret"


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()),
        None)


@dataclass(frozen=True)
class TLSMariaDB:
    port: int
    socket: Path

    def url(self, user: str = "glimpse", **ssl: Path | str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"charset": "utf8mb4", **ssl}.items())
        return f"mysql+pymysql://{user}:{PASSWORD}@127.0.0.1:{self.port}/glimpse?{query}"


@pytest.fixture(scope="module")
def tls_mariadb(certs: Certs) -> Iterator[TLSMariaDB]:
    """A throw-away MariaDB on 127.0.0.1 that accepts TLS connections only."""
    install, server = _binary("mariadb-install-db"), _binary("mariadbd")
    if not (install and server):
        message = "MariaDB server binaries (mariadb-install-db, mariadbd) are not installed"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert install and server
    # mariadbd runs as the invoking user; as root it must be told that is meant
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="glimpse-mariadbtls-"))
    data, sock = root / "data", root / "mariadb.sock"
    for name in ("ca", "server_cert", "server_key"):
        shutil.copy(getattr(certs, name), root / f"{name}.pem")
    (root / "server_key.pem").chmod(0o600)
    init = subprocess.run([install, "--no-defaults", f"--datadir={data}", *as_user,
                           "--skip-test-db", "--auth-root-authentication-method=socket"],
                          capture_output=True, text=True, timeout=180)
    assert init.returncode == 0, init.stdout + init.stderr
    # Run at start with every privilege: Glimpse's account needs the test CA's
    # client certificate; "plain" needs only TLS (to see require_secure_transport).
    (root / "init.sql").write_text(f"""
CREATE DATABASE glimpse CHARACTER SET utf8mb4;
CREATE USER 'glimpse'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'
    REQUIRE SUBJECT '/CN=glimpse-client' AND ISSUER '/CN=Glimpse test CA';
GRANT ALL PRIVILEGES ON glimpse.* TO 'glimpse'@'127.0.0.1';
CREATE USER 'plain'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
GRANT ALL PRIVILEGES ON glimpse.* TO 'plain'@'127.0.0.1';
""")
    port = free_port()
    log = root / "mariadbd.log"
    proc = subprocess.Popen([
        server, "--no-defaults", f"--datadir={data}", *as_user, f"--socket={sock}",
        f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
        f"--pid-file={root / 'mariadbd.pid'}", f"--log-error={log}",
        f"--ssl-ca={root / 'ca.pem'}", f"--ssl-cert={root / 'server_cert.pem'}",
        f"--ssl-key={root / 'server_key.pem'}", "--require-secure-transport=ON",
        f"--init-file={root / 'init.sql'}", "--skip-log-bin",
        "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text() if log.exists() else "mariadbd exited")
            # ready once the init file ran: Glimpse's database is there
            ping = subprocess.run([_binary("mariadb") or "mariadb", f"--socket={sock}",
                                   "-uroot", "-N", "-e", "SHOW DATABASES LIKE 'glimpse'"],
                                  capture_output=True, text=True)
            if ping.returncode == 0 and "glimpse" in ping.stdout:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not come up:\n{log.read_text()}")
            time.sleep(0.3)
        yield TLSMariaDB(port, sock)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _glimpse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glimpse.cli", *args], capture_output=True,
                          text=True, timeout=120)


def _verified(db: TLSMariaDB, certs: Certs) -> str:
    return db.url(ssl_ca=certs.ca, ssl_cert=certs.client_cert, ssl_key=certs.client_key)


def test_schema_and_api_over_verified_tls(tmp_path: Path, tls_mariadb: TLSMariaDB,
                                          certs: Certs, served: list[Served]) -> None:
    url = _verified(tls_mariadb, certs)
    conf = write_conf(tmp_path, f"[database]\nconnection = {url}")
    proc = _glimpse("db", "sync", "--config-file", str(conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = _glimpse("db", "check", "--config-file", str(conf))
    assert check.returncode == 0, check.stdout + check.stderr
    # the connection Glimpse makes from that URL is TLS, as the certificate's user
    engine = make_engine(database_url(load_config([str(conf)])))
    try:
        with engine.connect() as c:
            status = dict(c.execute(text("SHOW SESSION STATUS LIKE 'Ssl_%'")).all())
            assert status["Ssl_version"].startswith("TLSv1.")
            assert status["Ssl_cipher"]
            assert c.execute(text("SELECT CURRENT_USER()")).scalar_one() == "glimpse@127.0.0.1"
    finally:
        engine.dispose()
    # and the API serves from it
    (tmp_path / "serve").mkdir()
    s = serve(tmp_path / "serve", "", url)
    served.append(s)
    headers = as_project("proj-dbtls")
    created = httpx.post(s.url + "/v2/images", json={"name": "over-tls"}, headers=headers)
    assert created.status_code == 201, created.text
    listed = httpx.get(s.url + "/v2/images", headers=headers).json()["images"]
    assert [i["id"] for i in listed] == [created.json()["id"]]


def test_plain_connections_are_refused_with_one_line(tmp_path: Path,
                                                     tls_mariadb: TLSMariaDB,
                                                     certs: Certs) -> None:
    """require_secure_transport: the "plain" account (no REQUIRE clause) gets in over
    TLS and not without; MariaDB 10.11 answers that refusal as "Access denied"."""
    conf = write_conf(tmp_path, "[database]\nconnection = "
                      f"{tls_mariadb.url('plain', ssl_ca=certs.ca)}")
    proc = _glimpse("db", "version", "--config-file", str(conf))
    assert proc.returncode == 0, proc.stderr
    # ssl_disabled: PyMySQL (1.2 on) otherwise tries TLS unverified when the server offers it
    conf = write_conf(tmp_path, "[database]\nconnection = "
                      f"{tls_mariadb.url('plain', ssl_disabled='1')}")
    proc = _glimpse("db", "sync", "--config-file", str(conf))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "cannot connect to the database" in proc.stderr
    assert "Access denied for user 'plain'@'127.0.0.1'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_tls_without_the_client_certificate_is_refused(tmp_path: Path,
                                                       tls_mariadb: TLSMariaDB,
                                                       certs: Certs) -> None:
    # Glimpse's account wants the test CA's client certificate (REQUIRE SUBJECT/ISSUER)
    conf = write_conf(tmp_path, f"[database]\nconnection = {tls_mariadb.url(ssl_ca=certs.ca)}")
    proc = _glimpse("db", "version", "--config-file", str(conf))
    assert proc.returncode == 1
    assert "Access denied for user 'glimpse'" in proc.stderr, proc.stderr
    other = tls_mariadb.url(ssl_ca=certs.ca, ssl_cert=certs.other_client_cert,
                            ssl_key=certs.other_client_key)
    conf = write_conf(tmp_path, f"[database]\nconnection = {other}")
    proc = _glimpse("db", "version", "--config-file", str(conf))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr


def test_a_server_certificate_the_ca_did_not_sign_is_refused(tmp_path: Path,
                                                             tls_mariadb: TLSMariaDB,
                                                             certs: Certs) -> None:
    url = tls_mariadb.url(ssl_ca=certs.other_client_cert, ssl_cert=certs.client_cert,
                          ssl_key=certs.client_key)
    proc = _glimpse("db", "version", "--config-file",
                    str(write_conf(tmp_path, f"[database]\nconnection = {url}")))
    assert proc.returncode == 1
    assert "certificate verify failed" in proc.stderr, proc.stderr
