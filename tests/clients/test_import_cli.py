"""python-glanceclient's import commands, unchanged, against a live server:
``image-create-via-import`` with glance-direct and web-download, the separate
``image-stage`` / ``image-import`` steps, ``import-info`` and ``image-tasks``.
The web-download source is a local HTTP server the server is allowed to reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, start_server

pytestmark = pytest.mark.clients

PAYLOAD = os.urandom(200_000)


class Source:
    """A local HTTP server serving PAYLOAD at /image.raw."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's hook name
                if self.path != "/image.raw":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    src = Source()
    yield src
    src.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, source: Source) -> Iterator[LiveServer]:
    """This module's live server: allowed to download from the local source."""
    root = tmp_path_factory.mktemp("import-clients")
    config = ("[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n"
              f"allowed_ports = [80,443,{source.port}]\n")
    live = start_server(root, f"sqlite:///{root / 'glimpse.sqlite'}", config)
    yield live
    live.stop()


def wait_active(api: httpx.Client, image_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        image = api.get(f"/v2/images/{image_id}").json()
        if image["status"] == "active":
            return image
        assert image["status"] in ("uploading", "importing", "queued"), image
        if time.monotonic() > deadline:
            raise AssertionError(f"image {image_id} stayed {image['status']}")
        time.sleep(0.1)


def assert_payload(image: dict, data: bytes) -> None:
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_import_info(glance):
    info = json.loads(glance.props("import-info")["import-methods"])
    assert info["value"] == ["glance-direct", "web-download", "copy-image"]


def test_create_via_import_glance_direct(glance, api, tmp_path: Path, suite):
    path = tmp_path / "disk.raw"
    path.write_bytes(PAYLOAD)
    created = glance.props("image-create-via-import", "--name", f"gd-{suite}",
                           "--disk-format", "raw", "--container-format", "bare",
                           "--import-method", "glance-direct", "--file", str(path))
    image = wait_active(api, created["id"])
    assert image["name"] == f"gd-{suite}"
    assert_payload(image, PAYLOAD)
    assert api.get(f"/v2/images/{created['id']}/file").content == PAYLOAD
    tasks = api.get(f"/v2/images/{created['id']}/tasks").json()["tasks"]
    assert [t["status"] for t in tasks] == ["success"]
    assert tasks[0]["input"]["import_req"]["method"]["name"] == "glance-direct"


def test_create_via_import_web_download(glance, api, source: Source, suite):
    uri = f"http://127.0.0.1:{source.port}/image.raw"
    created = glance.props("image-create-via-import", "--name", f"wd-{suite}",
                           "--disk-format", "raw", "--container-format", "bare",
                           "--import-method", "web-download", "--uri", uri)
    image = wait_active(api, created["id"])
    assert_payload(image, PAYLOAD)
    # One store, no cache: the versions document stops at v2.9/v2.15/v2.17 as
    # Glance's does, and glanceclient wants v2.12 for image-tasks, as with Glance
    # (with enabled_backends it works: tests/clients/test_fidelity_cli.py).
    err = glance.error("image-tasks", created["id"])
    assert "Server does not support image tasks API (v2.12)" in err
    tasks = api.get(f"/v2/images/{created['id']}/tasks").json()["tasks"]
    assert [t["status"] for t in tasks] == ["success"]


def test_web_download_of_refused_uri_fails_in_the_client(glance, api, suite):
    out = glance.error("image-create-via-import", "--name", f"refused-{suite}",
                       "--disk-format", "raw", "--container-format", "bare",
                       "--import-method", "web-download", "--uri", "http://127.0.0.1:1/x")
    assert "does not pass filtering" in out


def test_stage_then_import_separately(glance, api, tmp_path: Path, suite):
    created = glance.props("image-create", "--name", f"steps-{suite}", "--disk-format", "raw",
                           "--container-format", "bare")
    path = tmp_path / "disk.raw"
    path.write_bytes(PAYLOAD)
    glance.run("image-stage", "--file", str(path), created["id"])
    assert api.get(f"/v2/images/{created['id']}").json()["status"] == "uploading"
    glance.run("image-import", "--import-method", "glance-direct", created["id"])
    assert_payload(wait_active(api, created["id"]), PAYLOAD)
