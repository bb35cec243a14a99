"""Fixtures for import tests: apps built from a real config file, a local HTTP
server to download from, and helpers to wait for an import to finish."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.services import runtime as runtime_mod

RAW = "application/octet-stream"


@dataclass
class Served:
    """A local HTTP server: path -> (status, headers, body)."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    gates: dict[str, threading.Event] = field(default_factory=dict)
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def data(self, path: str, body: bytes, length: bool = True) -> str:
        headers = {"Content-Type": RAW}
        if length:
            headers["Content-Length"] = str(len(body))
        self.routes[path] = (200, headers, body)
        return self.url(path)

    def redirect(self, path: str, target: str, status: int = 302) -> str:
        self.routes[path] = (status, {"Location": target, "Content-Length": "0"}, b"")
        return self.url(path)


@pytest.fixture
def web() -> Iterator[Served]:
    with served_at("127.0.0.1", 0) as served:
        yield served


@contextlib.contextmanager
def served_at(host: str, port: int) -> Iterator[Served]:
    """A Served HTTP server on ``host``:``port`` (0: any free port)."""
    served = Served()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's hook name
            served.hits.append(self.path)
            gate = served.gates.get(self.path)
            if gate is not None:
                gate.wait(20)
            status, headers, body = served.routes.get(
                self.path, (404, {"Content-Length": "9"}, b"not found"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Length" not in headers:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            if "Content-Length" not in headers:
                self.close_connection = True

        def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
            length = int(self.headers.get("Content-Length") or 0)
            served.posts.append((self.path, dict(self.headers.items()), self.rfile.read(length)))
            status, headers, body = served.routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer((host, port), Handler)
    served.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield served
    finally:
        for gate in served.gates.values():
            gate.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def make_app(tmp_path: Path, db_url: str):  # noqa: ANN201
    """make(config_text="", **overrides) -> TestClient on a runtime built from a
    glance-api.conf holding ``config_text`` (sections included)."""
    runtimes: list[runtime_mod.Runtime] = []

    def make(config_text: str = "", **overrides: object) -> TestClient:
        n = len(runtimes)
        conf_file = tmp_path / f"glance-api-{n}.conf"
        conf_file.write_text(config_text.strip() + "\n")
        values: dict[str, object] = {"data_dir": str(tmp_path / "data"),
                                     "database.connection": db_url}
        values.update(overrides)
        conf = load_config([str(conf_file)], values)
        rt = runtime_mod.build(conf, migrate=True)
        runtimes.append(rt)
        client = TestClient(create_app(conf, rt), headers={"Accept": "application/json"})
        client.runtime = rt  # type: ignore[attr-defined]
        return client

    yield make
    for rt in runtimes:
        rt.close()


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def image(client: TestClient, image_id: str, headers: dict[str, str] | None = None) -> dict:
    r = client.get(f"/v2/images/{image_id}", headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def wait_task_done(client: TestClient, image_id: str) -> dict:
    """The image's newest task once it has finished (success or failure)."""
    def finished() -> dict | None:
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[-1]["status"] in ("success", "failure"):
            return tasks[-1]
        return None

    return wait_for(finished)


def new_image(client: TestClient, headers: dict[str, str] | None = None, **attrs: Any) -> str:
    body = {"disk_format": "raw", "container_format": "bare", **attrs}
    r = client.post("/v2/images", json=body, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def stage(client: TestClient, image_id: str, data: bytes,
          headers: dict[str, str] | None = None) -> Any:
    return client.put(f"/v2/images/{image_id}/stage", content=data,
                      headers={"Content-Type": RAW, **(headers or {})})


def start_import(client: TestClient, image_id: str, body: dict,
                 headers: dict[str, str] | None = None) -> Any:
    return client.post(f"/v2/images/{image_id}/import", json=body, headers=headers or {})


def multi_store_config(tmp_path: Path, names: list[str], default: str | None = None) -> str:
    lines = ["[DEFAULT]", "enabled_backends = " + ",".join(f"{n}:file" for n in names),
             "[glance_store]", f"default_backend = {default or names[0]}"]
    for name in names:
        lines += [f"[{name}]", f"filesystem_store_datadir = {tmp_path / 'stores' / name}",
                  f"store_description = {name.capitalize()} store"]
    lines += ["[os_glance_staging_store]",
              f"filesystem_store_datadir = {tmp_path / 'staging-multi'}",
              "[os_glance_tasks_store]",
              f"filesystem_store_datadir = {tmp_path / 'tasks-multi'}"]
    return "\n".join(lines)
