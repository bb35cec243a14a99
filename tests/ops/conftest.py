"""Live ``glimpse serve`` processes with any configuration, and test certificates."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


@dataclass
class Served:
    proc: subprocess.Popen
    url: str
    log: Path
    conf_file: Path

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


def write_conf(tmp_path: Path, text: str, db_url: str | None = None) -> Path:
    conf = tmp_path / "glance-api.conf"
    body = text.strip()
    if not body.startswith("["):
        body = "[DEFAULT]\n" + body
    if db_url:
        body += f"\n[database]\nconnection = {db_url}\n"
    conf.write_text(body + "\n")
    return conf


def serve(tmp_path: Path, text: str = "", db_url: str | None = None, *, args: tuple = (),
          scheme: str = "http", verify: object = True,
          ready_path: str = "/healthcheck", wait: float = 60) -> Served:
    """Start ``glimpse serve`` on a free port and wait until ``ready_path`` answers."""
    port = free_port()
    conf = write_conf(tmp_path, text, db_url)
    log = tmp_path / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "glimpse.cli", "serve", "--config-file", str(conf),
           "--data-dir", str(tmp_path / "data"), "--port", str(port), *args]
    if os.environ.get("GLIMPSE_TEST_HTTP_SERVER"):  # the ops tests under another server
        cmd += ["--http-server", os.environ["GLIMPSE_TEST_HTTP_SERVER"]]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    try:
        # One client for the whole wait (each new one loads a CA bundle).
        with httpx.Client(timeout=2, verify=verify, trust_env=False) as poller:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{log.read_text()}")
                try:
                    poller.get(url + ready_path)
                    return Served(proc, url, log, conf)
                except httpx.HTTPError:
                    time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{log.read_text()}")
    except BaseException:
        proc.kill()  # never leave a server behind a failed start
        proc.wait(10)
        raise


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    """Servers a test starts (append them); stopped at the end."""
    started: list[Served] = []
    yield started
    for s in started:
        s.stop()


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None,
                ) -> ssl.SSLContext:
    """A client's TLS settings: trust ``ca``; present ``cert`` when given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # signed by a CA the server does not trust
    other_client_key: Path


def _key():  # noqa: ANN202
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key, cert) -> tuple[Path, Path]:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    key_path = path.with_suffix(".key")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key_path


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool = False,  # noqa: ANN001
          server: bool = False):  # noqa: ANN202
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_name or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256()), name


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca_key = _key()
    ca_cert, ca_name = _cert("Glimpse test CA", ca_key, None, None, ca=True)
    ca_path, _ = _write(d / "ca.pem", ca_key, ca_cert)
    s_key = _key()
    s_cert, _ = _cert("127.0.0.1", s_key, ca_name, ca_key, server=True)
    server_cert, server_key = _write(d / "server.pem", s_key, s_cert)
    c_key = _key()
    c_cert, _ = _cert("glimpse-client", c_key, ca_name, ca_key)
    client_cert, client_key = _write(d / "client.pem", c_key, c_cert)
    o_ca_key = _key()
    _, o_ca_name = _cert("Some other CA", o_ca_key, None, None, ca=True)
    o_key = _key()
    o_cert, _ = _cert("stranger", o_key, o_ca_name, o_ca_key)
    other_cert, other_key = _write(d / "other.pem", o_key, o_cert)
    return Certs(ca_path, server_cert, server_key, client_cert, client_key, other_cert,
                 other_key)


def _memcached_binary() -> str:
    import shutil

    found = shutil.which("memcached") or ("/usr/bin/memcached"
                                          if Path("/usr/bin/memcached").exists() else None)
    if found is None:
        from tests.conftest import IN_CI

        if IN_CI:
            pytest.fail("memcached is not installed (apt-get install memcached)",
                        pytrace=False)
        pytest.skip("memcached is not installed (apt-get install memcached)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def memcached() -> Iterator[str]:
    """A memcached of our own on 127.0.0.1 (host:port)."""
    import os
    import socket

    binary = _memcached_binary()
    port = free_port()
    cmd = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]  # memcached refuses to run as root otherwise
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
