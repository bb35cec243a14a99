"""HTTPS with [DEFAULT] cert_file/key_file, client certificates with ca_file."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from tests.clients.conftest import client_env, find_program, run_client
from tests.ops.conftest import Certs, Served, serve, tls_context


def _tls_conf(certs: Certs, ca_file: bool = False) -> str:
    lines = [f"cert_file = {certs.server_cert}", f"key_file = {certs.server_key}"]
    if ca_file:
        lines.append(f"ca_file = {certs.ca}")
    return "\n".join(lines)


def test_https_is_served_and_verifies_with_the_ca(tmp_path: Path, db_url: str, certs: Certs,
                                                  served: list[Served]) -> None:
    s = serve(tmp_path, _tls_conf(certs), db_url, scheme="https",
              verify=tls_context(certs.ca))
    served.append(s)
    r = httpx.get(s.url + "/versions", verify=tls_context(certs.ca))
    assert r.status_code == 200
    assert r.json()["versions"][0]["links"][0]["href"].startswith("https://127.0.0.1:")
    with pytest.raises(httpx.ConnectError):  # not trusted without the CA
        httpx.get(s.url + "/versions")
    with pytest.raises(httpx.RemoteProtocolError):  # no plain HTTP on the TLS port
        httpx.get(s.url.replace("https://", "http://") + "/versions")


def test_glance_cli_with_os_cacert(tmp_path: Path, db_url: str, certs: Certs,
                                   served: list[Served]) -> None:
    s = serve(tmp_path, _tls_conf(certs), db_url, scheme="https",
              verify=tls_context(certs.ca))
    served.append(s)
    glance = find_program("glance")
    # python-requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win over a session's own
    # CA file, so a machine that sets them would hide --os-cacert: run without them.
    env = {k: v for k, v in client_env().items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    # --os-image-api-version: glanceclient's version discovery ignores --os-cacert
    base = [glance, "--os-image-url", s.url, "--os-auth-token", "glimpse-test",
            "--os-image-api-version", "2"]
    created = run_client([*base, "--os-cacert", str(certs.ca), "image-create", "--name",
                          "over-tls", "--disk-format", "raw", "--container-format", "bare"],
                         stdin=None, env=env)
    assert b"over-tls" in created.stdout
    listed = run_client([*base, "--os-cacert", str(certs.ca), "image-list"], env=env)
    assert b"over-tls" in listed.stdout
    # the CA file is what the client checks against: another one is refused
    refused = run_client([*base, "--os-cacert", str(certs.other_client_cert), "image-list"],
                         check=False, env=env)
    assert b"CERTIFICATE_VERIFY_FAILED" in refused.stderr + refused.stdout


def test_ca_file_requires_a_client_certificate(tmp_path: Path, db_url: str, certs: Certs,
                                               served: list[Served]) -> None:
    good = tls_context(certs.ca, certs.client_cert, certs.client_key)
    s = serve(tmp_path, _tls_conf(certs, ca_file=True), db_url, scheme="https", verify=good)
    served.append(s)
    assert httpx.get(s.url + "/versions", verify=good).status_code == 200
    # TLS 1.3: the server's refusal arrives with the first read, as a TLS alert
    for bad in (tls_context(certs.ca),
                tls_context(certs.ca, certs.other_client_cert, certs.other_client_key)):
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError,
                            ssl.SSLError)):
            httpx.get(s.url + "/versions", verify=bad)


def test_unusable_tls_files_stop_the_start_with_one_line(tmp_path: Path, certs: Certs) -> None:
    import subprocess
    import sys

    from tests.ops.conftest import write_conf

    for text, expected in (
        (f"cert_file = {certs.server_cert}", "cert_file and key_file must be set together"),
        (f"cert_file = {certs.server_cert}\nkey_file = {tmp_path}/missing.key",
         "key_file"),
        (f"cert_file = {certs.ca}\nkey_file = {certs.server_key}", "TLS files are not usable"),
    ):
        conf = write_conf(tmp_path, text)
        proc = subprocess.run([sys.executable, "-m", "glimpse.cli", "serve", "--config-file",
                               str(conf), "--data-dir", str(tmp_path / "d")],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert expected in proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
