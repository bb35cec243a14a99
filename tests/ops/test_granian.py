"""``glimpse serve --http-server granian`` (docs/decisions/0012-http-server-quiet-measurement.md):
the same API, file-store downloads and cache hits sent by Granian itself (ASGI pathsend),
TLS with client certificates, Glimpse's log format for Granian's own lines, a clean
SIGTERM, workers that die with their parent.

The whole ops suite runs under either server (GLIMPSE_TEST_HTTP_SERVER=uvicorn|granian;
default: glimpse serve's); what differs is listed in decision 0012."""

from __future__ import annotations

import hashlib
import os
import signal
import ssl
import time
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import Certs, Served, serve, tls_context
from tests.ops.test_logging import LINE

GRANIAN = ("--http-server", "granian")
DATA = bytes(range(256)) * 8192  # 2 MiB


def test_downloads_are_sent_by_granian(tmp_path: Path, db_url: str, served: list[Served]) -> None:
    s = serve(tmp_path, "workers = 2", db_url, args=GRANIAN)
    served.append(s)
    image = httpx.post(
        s.url + "/v2/images", json={"name": "g", "disk_format": "raw", "container_format": "bare"}
    ).json()
    url = f"{s.url}/v2/images/{image['id']}/file"
    r = httpx.put(url, content=DATA, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["content-md5"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    ranged = httpx.get(url, headers={"Range": "bytes=5-9"})
    assert ranged.status_code == 206 and ranged.content == DATA[5:10]
    # One access line per request, in Glimpse's format, the pathsend bytes counted.
    lines = s.lines()
    assert any(
        f"GET /v2/images/{image['id']}/file status: 200 len: {len(DATA)}" in line for line in lines
    ), lines[-10:]
    granian_lines = [line for line in lines if " _granian " in line]
    assert granian_lines and all(LINE.match(line) for line in granian_lines)
    assert s.stop() == 0


def test_tls_with_client_certificates(
    tmp_path: Path, db_url: str, certs: Certs, served: list[Served]
) -> None:
    s = serve(
        tmp_path,
        f"cert_file = {certs.server_cert}\nkey_file = {certs.server_key}\nca_file = {certs.ca}",
        db_url,
        args=GRANIAN,
        scheme="https",
        verify=tls_context(certs.ca, certs.client_cert, certs.client_key),
    )
    served.append(s)
    good = tls_context(certs.ca, certs.client_cert, certs.client_key)
    assert httpx.get(s.url + "/versions", verify=good).status_code == 200
    with pytest.raises((httpx.HTTPError, ssl.SSLError)):
        httpx.get(s.url + "/versions", verify=tls_context(certs.ca)).raise_for_status()
    assert s.proc.poll() is None
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(30) == 0


def test_cache_hits_are_sent_by_granian(tmp_path: Path, db_url: str,
                                        served: list[Served]) -> None:
    s = serve(tmp_path, f"image_cache_dir = {tmp_path / 'cache'}\n"
              "image_cache_min_free_space = 0", db_url, args=GRANIAN)
    served.append(s)
    admin = {"X-Roles": "admin,member,reader", "X-Project-Id": "p", "X-User-Id": "u",
             "X-Identity-Status": "Confirmed"}
    image = httpx.post(s.url + "/v2/images", headers=admin, json={
        "name": "c", "disk_format": "raw", "container_format": "bare"}).json()
    url = f"{s.url}/v2/images/{image['id']}/file"
    r = httpx.put(url, content=DATA, headers={**admin,
                                               "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    assert httpx.get(url, headers=admin).content == DATA  # a miss: fills behind
    deadline = time.monotonic() + 30
    while not httpx.get(s.url + "/v2/cache", headers=admin).json()["cached_images"]:
        assert time.monotonic() < deadline, "the miss did not fill the cache"
        time.sleep(0.1)
    hit = httpx.get(url, headers=admin)
    assert hit.status_code == 200 and hit.content == DATA
    assert hit.headers["content-md5"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    [entry] = httpx.get(s.url + "/v2/cache", headers=admin).json()["cached_images"]
    assert entry["hits"] == 1
    assert s.stop() == 0


def test_workers_die_with_the_parent(tmp_path: Path, db_url: str,
                                     served: list[Served]) -> None:
    s = serve(tmp_path, "", db_url, args=GRANIAN)
    served.append(s)
    deadline = time.monotonic() + 30
    while "Worker ready (process" not in s.log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    worker = int(s.log.read_text().split("Worker ready (process ")[1].split(")")[0])
    s.proc.kill()
    s.proc.wait(10)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{worker}") and "zombie" not in open(
            f"/proc/{worker}/status").read().lower():
        assert time.monotonic() < deadline, "the worker outlived its parent"
        time.sleep(0.1)
    # nobody serves the port: refused, or reset when the connection reached the
    # backlog of a listening socket that was closing with its last process
    with pytest.raises((httpx.ConnectError, httpx.ReadError)):
        httpx.get(s.url + "/versions", timeout=2)
