"""Fixtures for driving a live Glimpse server with the real OpenStack clients.

A client program costs 0.5-2 s to start, so these tests run once, on SQLite
only (not once per database back end), against ONE ``glimpse serve`` per test
module. Every test creates its own images with unique names (and a unique
``suite`` property where it lists), so tests do not depend on each other.

Outside CI a missing client or ``qemu-img`` skips the test with the reason; with
CI=true it fails, because CI installs them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import tools
from tests.conftest import LiveServer, start_server
from tests.tools import require_program

QCOW2_VIRTUAL_SIZE = 64 * 1024 * 1024
CLIENT_TIMEOUT = 60


def find_program(name: str) -> str:
    """A client program from this virtualenv first, then from PATH."""
    return require_program(name)


def client_env(**extra: str) -> dict[str, str]:
    """The caller's environment without OS_* settings that could redirect a client."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def run_client(cmd: list[str], *, check: bool | None = True, env: dict[str, str] | None = None,
               stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[bytes]:
    """Run a client; ``check``: True = must succeed, False = must fail, None = either."""
    proc = subprocess.run(cmd, capture_output=True, env=env or client_env(), stdin=stdin,
                          timeout=CLIENT_TIMEOUT, check=False)
    failed = proc.returncode != 0
    if check is not None and failed == check:
        expected = "to succeed" if check else "to fail"
        raise AssertionError(
            f"expected {shlex.join(cmd)} {expected}, exit status {proc.returncode}\n"
            f"--- stdout\n{proc.stdout.decode(errors='replace')}\n"
            f"--- stderr\n{proc.stderr.decode(errors='replace')}")
    return proc


def table_rows(text: str) -> list[list[str]]:
    """Cells of a prettytable drawn with | and +, header row first."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            rows.append([cell.strip() for cell in line[1:-1].split("|")])
    return rows


def property_table(text: str) -> dict[str, str]:
    """A glance ``Property | Value`` table as a dict.

    glanceclient wraps values longer than 80 characters onto continuation rows
    with an empty Property cell; the pieces are joined back (exact for the
    hashes and JSON lists this suite reads)."""
    rows = table_rows(text)
    assert rows and rows[0] == ["Property", "Value"], f"not a property table:\n{text}"
    result: dict[str, str] = {}
    last = None
    for key, value in rows[1:]:
        if key:
            result[key] = value
            last = key
        else:
            assert last is not None
            result[last] += value
    return result


def list_table(text: str) -> list[dict[str, str]]:
    rows = table_rows(text)
    assert rows, f"not a table:\n{text}"
    header = rows[0]
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


class GlanceCLI:
    """``glance`` (python-glanceclient) pointed at the server with a dummy token."""

    def __init__(self, program: str, url: str):
        self.program = program
        self.url = url

    def run(self, *args: str, check: bool | None = True) -> subprocess.CompletedProcess[bytes]:
        cmd = [self.program, "--os-image-url", self.url, "--os-auth-token", "glimpse-test",
               *args]
        # glanceclient uploads whatever stdin holds when stdin is not a terminal (an
        # empty pipe makes an active image of 0 bytes), so give it a terminal: then
        # image-create without --file creates a queued image, as typed at a shell.
        controller, terminal = os.openpty()
        try:
            return run_client(cmd, check=check, stdin=terminal)
        finally:
            os.close(terminal)
            os.close(controller)

    def text(self, *args: str) -> str:
        return self.run(*args).stdout.decode()

    def props(self, *args: str) -> dict[str, str]:
        """Run a command that prints one image as a property table."""
        return property_table(self.text(*args))

    def rows(self, *args: str) -> list[dict[str, str]]:
        """Run a command that prints a list table (image-list, member-list)."""
        return list_table(self.text(*args))

    parse_rows = staticmethod(list_table)

    def error(self, *args: str) -> str:
        """Run a command that must fail; its error output."""
        return self.run(*args, check=False).stderr.decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server per test module, on SQLite."""
    root = tmp_path_factory.mktemp("clients")
    live = start_server(root, f"sqlite:///{root / 'glimpse.sqlite'}")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """Plain HTTP to the same server, to check what the clients really did."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def glance(server: LiveServer) -> GlanceCLI:
    return GlanceCLI(find_program("glance"), server.url)


@dataclass
class Qcow2Disk:
    path: Path
    virtual_size: int


@pytest.fixture
def qcow2_disk(tmp_path: Path) -> Qcow2Disk:
    """A real (empty) qcow2 disk made by qemu-img: 64 MiB virtual, ~200 KiB on disk."""
    qemu_img = tools.qemu_img()
    path = tmp_path / "disk.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path),
                    str(QCOW2_VIRTUAL_SIZE)], check=True, timeout=30)
    return Qcow2Disk(path, QCOW2_VIRTUAL_SIZE)


@pytest.fixture
def suite() -> str:
    """A value unique to one test, to tag and filter the images it creates."""
    return uuid.uuid4().hex[:12]


NewImage = Callable[..., dict[str, Any]]
ServerImage = Callable[..., dict[str, Any] | None]


@pytest.fixture(scope="module")
def new_image(api: httpx.Client) -> NewImage:
    """new_image(data=None, headers=None, **attrs): create (and upload) an image over
    plain HTTP as test set-up; returns the server's image document."""

    def make(data: bytes | None = None, headers: dict[str, str] | None = None,
             **attrs: object) -> dict[str, Any]:
        headers = headers or {}
        body = {"disk_format": "raw", "container_format": "bare", **attrs}
        r = api.post("/v2/images", json=body, headers=headers)
        assert r.status_code == 201, r.text
        image_id = r.json()["id"]
        if data is not None:
            r = api.put(f"/v2/images/{image_id}/file", content=data,
                        headers={**headers, "Content-Type": "application/octet-stream"})
            assert r.status_code == 204, r.text
        return api.get(f"/v2/images/{image_id}", headers=headers).json()

    return make


@pytest.fixture(scope="module")
def server_image(api: httpx.Client) -> ServerImage:
    """server_image(id, headers=None): the image as the server has it, None if 404."""

    def fetch(image_id: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
        r = api.get(f"/v2/images/{image_id}", headers=headers or {})
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    return fetch


# ---------------------------------------------------------------- openstack CLI


class _RefusingIdentityHandler(BaseHTTPRequestHandler):
    """Identity v3 version document at / and /v3; 403 Forbidden for anything else."""

    stand_in: KeystoneStandIn

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        self.stand_in.seen.append(self.path)
        if self.path.rstrip("/") in ("", "/v3"):
            status, doc = 200, {"version": {
                "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}],
                "links": [{"rel": "self", "href": f"{self.stand_in.url}/v3/"}]}}
        else:
            status, doc = 403, {"error": {
                "code": 403, "title": "Forbidden",
                "message": "You are not authorized to perform the requested action."}}
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


class KeystoneStandIn:
    """Keystone cannot run here. openstackclient looks a project up in Keystone
    before ``image add project`` / ``image set --accept --project`` / ``image
    remove project``; when Keystone answers 403 (a user who may not read
    projects) it uses the given ID as it is. This stand-in gives exactly that
    answer, so those commands reach Glimpse with the project ID unchanged."""

    def __init__(self) -> None:
        handler = type("Handler", (_RefusingIdentityHandler,), {"stand_in": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def keystone() -> Iterator[KeystoneStandIn]:
    stand_in = KeystoneStandIn()
    yield stand_in
    stand_in.close()


class OpenStackCLI:
    """``openstack`` (python-openstackclient) with no authentication: the image
    endpoint is the server, the identity endpoint is the Keystone stand-in."""

    def __init__(self, program: str, url: str, identity_url: str):
        self.cmd = [program, "--os-auth-type", "none", "--os-endpoint", url]
        self.env = client_env(OS_IDENTITY_ENDPOINT_OVERRIDE=identity_url)

    def run(self, *args: str, check: bool | None = True) -> subprocess.CompletedProcess[bytes]:
        return run_client([*self.cmd, *args], check=check, env=self.env)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-f", "json").stdout)


@pytest.fixture(scope="module")
def osc(server: LiveServer, keystone: KeystoneStandIn) -> OpenStackCLI:
    return OpenStackCLI(find_program("openstack"), server.url, keystone.url)
