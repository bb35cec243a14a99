"""Crash recovery with real servers: ``glimpse serve`` is killed with SIGKILL at
each stage of upload, stage, import (glance-direct, web-download, while the
image_conversion plugin runs qemu-img), copy-image and delete; then either the
same node restarts, or (PostgreSQL) a second node sharing the database and the
stores recovers while the killed node never comes back.

After recovery every image is in a status a client can act on, retrying the
operation works, and ``glimpse doctor`` finds nothing.

Kill points are either timed by a slow client (mid-stream) or, where timing
cannot reach them (after the store write and before the commit, right after
the commit), the test-only GLIMPSE_TEST_CRASH_AT hook (glimpse/crashpoints.py).
Short lease options keep the tests fast; bench/recovery_time.py measures the
defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, LiveServer, free_port, start_server
from tests.imports.conftest import Served, web  # noqa: F401 - the fixture

RAW = {"Content-Type": "application/octet-stream"}
DATA = os.urandom(6 * 1024 * 1024 + 17)
FIRST = 5 * 1024 * 1024  # a slow client sends this much, then waits
LEASE = 3.0
CRASH_DBS = [b for b in ("sqlite", "postgresql") if b in BACKENDS]
# One node on SQLite and PostgreSQL; two nodes share PostgreSQL (a SQLite file
# is not shared between nodes).
SETUPS = [pytest.param(db, two, id=f"{db}-{'two-nodes' if two else 'one-node'}")
          for db in CRASH_DBS for two in (False, True) if not (two and db == "sqlite")]
NODES = pytest.mark.parametrize(("db_url", "two_nodes"), SETUPS, indirect=["db_url"])
ACTIONABLE = {"queued", "active", "uploading"}

# One client for every request of the module (a new one per request loads the CA
# bundle: tens of milliseconds of CPU per poll). No keep-alive: servers are killed
# and restarted, and every request opens its connection as before.
HTTP = httpx.Client(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))

@dataclass
class Node:
    server: LiveServer
    port: int
    conf: Path

    @property
    def url(self) -> str:
        return self.server.url

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return HTTP.request(method, self.url + path, timeout=60, **kwargs)

    def image(self, image_id: str) -> dict[str, Any]:
        r = self.request("GET", f"/v2/images/{image_id}")
        assert r.status_code == 200, r.text
        return r.json()


class Cluster:
    """Nodes sharing one database and two file stores (a, b); each node has its
    own data directory (staging, tasks work area)."""

    def __init__(self, root: Path, db_url: str, web_port: int, monkeypatch):
        self.root, self.db_url, self.web_port = root, db_url, web_port
        self.monkeypatch = monkeypatch
        self.nodes: list[Node] = []
        self.plugins = False

    def config(self) -> str:
        shared = self.root / "shared"
        return f"""
lease_period = {LEASE}
lease_sweep_interval = 0.3
orphan_sweep_interval = 1
enabled_backends = a:file,b:file
[glance_store]
default_backend = a
[a]
filesystem_store_datadir = {shared / 'a'}
[b]
filesystem_store_datadir = {shared / 'b'}
[import_filtering_opts]
allowed_ports = [80,443,{self.web_port}]
allowed_hosts = [127.0.0.1]
"""

    def start(self, port: int | None = None, crash_at: str | None = None) -> Node:
        port = port or free_port()
        data_dir = self.root / f"server-{port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.plugins:
            (data_dir / "glance-image-import.conf").write_text(
                "[image_import_opts]\nimage_import_plugins = ['image_conversion']\n"
                "[image_conversion]\noutput_format = raw\n")
        if crash_at:
            self.monkeypatch.setenv("GLIMPSE_TEST_CRASH_AT", crash_at)
        else:
            self.monkeypatch.delenv("GLIMPSE_TEST_CRASH_AT", raising=False)
        try:
            server = start_server(self.root, self.db_url, self.config(), port=port)
        finally:
            self.monkeypatch.delenv("GLIMPSE_TEST_CRASH_AT", raising=False)
        node = Node(server, port, data_dir / "glance-api.conf")
        self.nodes.append(node)
        return node

    def store_files(self) -> list[str]:
        found = []
        for store in ("a", "b"):
            folder = self.root / "shared" / store
            if folder.is_dir():
                found += [f"{store}/{n}" for n in sorted(os.listdir(folder))]
        return found

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.server.proc.poll() is None:
                node.server.proc.kill()
                node.server.proc.wait(10)


@pytest.fixture
def cluster(tmp_path: Path, db_url: str, web: Served, monkeypatch) -> Iterator[Cluster]:  # noqa: F811
    nodes = Cluster(tmp_path, db_url, web.port, monkeypatch)
    yield nodes
    nodes.stop_all()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def new_image(node: Node, disk_format: str = "raw") -> str:
    r = node.request("POST", "/v2/images", json={
        "name": "crash", "disk_format": disk_format, "container_format": "bare"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def put(node: Node, image_id: str, kind: str, data: bytes = DATA) -> httpx.Response:
    return node.request("PUT", f"/v2/images/{image_id}/{kind}", content=data, headers=RAW)


def send_in_background(node: Node, image_id: str, kind: str, gate: threading.Event | None,
                       ) -> threading.Thread:
    """A client that sends FIRST bytes, then (with a gate) waits for it before the rest."""
    def body() -> Iterator[bytes]:
        yield DATA[:FIRST]
        if gate is not None:
            gate.wait(30)
        yield DATA[FIRST:]

    def run() -> None:
        try:
            httpx.put(f"{node.url}/v2/images/{image_id}/{kind}", content=body(), headers=RAW,
                      timeout=30)
        except httpx.HTTPError:
            pass  # the server died under it: expected

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def kill_midstream(cluster: Cluster, node: Node, image_id: str, kind: str) -> None:
    gate = threading.Event()
    thread = send_in_background(node, image_id, kind, gate)
    folder = (cluster.root / "shared" / "a" if kind == "file"
              else cluster.root / f"server-{node.port}" / "staging")

    def partial_written() -> bool:
        return folder.is_dir() and any(
            n.startswith(f".{image_id}.") and (folder / n).stat().st_size > 0
            for n in os.listdir(folder))

    wait_for(partial_written, 20, "partial data on disk")
    node.server.proc.kill()
    node.server.proc.wait(10)
    gate.set()
    thread.join(30)


def wait_dead(node: Node) -> None:
    node.server.proc.wait(30)


def start_import(node: Node, image_id: str, body: dict[str, Any]) -> httpx.Response:
    return node.request("POST", f"/v2/images/{image_id}/import", json=body)


def wait_import(node: Node, image_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        tasks = node.request("GET", f"/v2/images/{image_id}/tasks").json()["tasks"]
        done = [t for t in tasks if t["status"] in ("success", "failure")]
        return done[-1] if done and len(done) == len(tasks) else None
    return wait_for(finished, 30, "import task to finish")


def doctor(cluster: Cluster, node: Node) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "glimpse.cli", "doctor", "--json", "--config-file",
         str(node.conf), "--data-dir", str(node.conf.parent)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": ""})
    assert out.stdout.startswith("{"), out.stderr
    report = json.loads(out.stdout)
    assert out.returncode == (1 if report["found"] else 0), out.stderr
    return report


def assert_clean(cluster: Cluster, node: Node) -> None:
    def clean() -> dict[str, Any] | None:
        report = doctor(cluster, node)
        return None if report["found"] else report
    wait_for(clean, 20, "glimpse doctor to find nothing")


def recover(cluster: Cluster, dead: Node, two_nodes: bool) -> Node:
    """The node that carries on: ``dead`` restarted, or a second node."""
    if two_nodes:
        return cluster.nodes[1]
    return cluster.start(port=dead.port)


def actionable(node: Node, image_id: str, expected: set[str]) -> dict[str, Any]:
    started = time.monotonic()

    def settled() -> dict[str, Any] | None:
        img = node.image(image_id)
        return img if img["status"] in expected else None
    img = wait_for(settled, 30, f"image to become one of {expected}")
    print(f"recovered to {img['status']} in {time.monotonic() - started:.1f}s")
    return img


def upload_works(node: Node, image_id: str) -> None:
    assert put(node, image_id, "file").status_code == 204
    got = node.request("GET", f"/v2/images/{image_id}/file")
    assert got.status_code == 200
    assert hashlib.md5(got.content).hexdigest() == hashlib.md5(DATA).hexdigest()


def glance_direct_works(node: Node, image_id: str, stage: bool = True) -> None:
    if stage:
        assert put(node, image_id, "stage").status_code == 204
    assert start_import(node, image_id, {"method": {"name": "glance-direct"}}).status_code == 202
    task = wait_import(node, image_id)
    assert task["status"] == "success", task["message"]
    assert node.image(image_id)["status"] == "active"


def setup(cluster: Cluster, two_nodes: bool, crash_at: str | None) -> Node:
    node = cluster.start(crash_at=crash_at)
    if two_nodes:
        cluster.start()
    return node


# ---------------------------------------------------------------- upload


@NODES
@pytest.mark.parametrize("point", ["upload.started", "midstream", "upload.stored",
                                   "upload.committed"])
def test_upload_killed(cluster, point, two_nodes):
    node = setup(cluster, two_nodes, None if point == "midstream" else point)
    image_id = new_image(node)
    if point == "midstream":
        kill_midstream(cluster, node, image_id, "file")
    else:
        send_in_background(node, image_id, "file", None)
        wait_dead(node)
    survivor = recover(cluster, node, two_nodes)
    if point == "upload.committed":
        img = actionable(survivor, image_id, {"active"})
        assert img["checksum"] == hashlib.md5(DATA).hexdigest()
    else:
        actionable(survivor, image_id, {"queued"})
        upload_works(survivor, image_id)
    assert cluster.store_files() == [f"a/{image_id}"]
    assert_clean(cluster, survivor)


# ---------------------------------------------------------------- stage


@NODES
@pytest.mark.parametrize("point", ["stage.started", "midstream", "stage.stored",
                                   "stage.committed"])
def test_stage_killed(cluster, point, two_nodes):
    node = setup(cluster, two_nodes, None if point == "midstream" else point)
    image_id = new_image(node)
    if point == "midstream":
        kill_midstream(cluster, node, image_id, "stage")
    else:
        send_in_background(node, image_id, "stage", None)
        wait_dead(node)
    survivor = recover(cluster, node, two_nodes)
    if point == "stage.committed":
        img = actionable(survivor, image_id, {"uploading"})
        assert img["size"] == len(DATA)
        # One node: the staged data is there. Two nodes: it died with its node,
        # the import fails cleanly and the image can be staged again.
        if two_nodes:
            assert start_import(survivor, image_id,
                                {"method": {"name": "glance-direct"}}).status_code == 202
            assert wait_import(survivor, image_id)["status"] == "failure"
            actionable(survivor, image_id, {"queued"})
        glance_direct_works(survivor, image_id, stage=two_nodes)
    else:
        actionable(survivor, image_id, {"queued"})
        staging = cluster.root / f"server-{node.port}" / "staging"
        if not two_nodes:
            assert not [n for n in os.listdir(staging) if image_id in n]
        glance_direct_works(survivor, image_id)
    assert cluster.store_files() == [f"a/{image_id}"]
    assert_clean(cluster, survivor)


# ---------------------------------------------------------------- imports


@NODES
@pytest.mark.parametrize("point", ["import.stored", "import.committed"])
def test_glance_direct_import_killed(cluster, point, two_nodes):
    node = setup(cluster, two_nodes, point)
    image_id = new_image(node)
    assert put(node, image_id, "stage").status_code == 204
    assert start_import(node, image_id, {"method": {"name": "glance-direct"}}).status_code == 202
    wait_dead(node)
    survivor = recover(cluster, node, two_nodes)
    if point == "import.committed":
        actionable(survivor, image_id, {"active"})
    elif two_nodes:
        # The staged data died with its node: stage again.
        actionable(survivor, image_id, {"queued"})
        glance_direct_works(survivor, image_id)
    else:
        img = actionable(survivor, image_id, {"uploading"})
        assert img["size"] == len(DATA)
        glance_direct_works(survivor, image_id, stage=False)
    assert cluster.store_files() == [f"a/{image_id}"]
    assert_clean(cluster, survivor)


@pytest.fixture
def qcow2_data(tmp_path: Path) -> bytes:
    qemu_img = shutil.which("qemu-img")
    assert qemu_img is not None, "qemu-img (qemu-utils) is needed"
    raw = tmp_path / "guest.raw"
    raw.write_bytes(os.urandom(48 * 1024 * 1024))
    out = tmp_path / "guest.qcow2"
    subprocess.run([qemu_img, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True)
    return out.read_bytes()


@NODES
def test_import_killed_while_qemu_img_converts(cluster, two_nodes, qcow2_data):
    cluster.plugins = True
    node = setup(cluster, two_nodes, "import.convert")
    image_id = new_image(node, disk_format="qcow2")
    assert put(node, image_id, "stage", qcow2_data).status_code == 204
    assert start_import(node, image_id, {"method": {"name": "glance-direct"}}).status_code == 202
    wait_dead(node)
    survivor = recover(cluster, node, two_nodes)
    if two_nodes:
        actionable(survivor, image_id, {"queued"})
        assert put(survivor, image_id, "stage", qcow2_data).status_code == 204
    else:
        actionable(survivor, image_id, {"uploading"})
    glance_direct_works(survivor, image_id, stage=False)
    assert survivor.image(image_id)["disk_format"] == "raw"
    assert cluster.store_files() == [f"a/{image_id}"]
    assert_clean(cluster, survivor)


@NODES
def test_web_download_killed_after_store_write(cluster, web, two_nodes):  # noqa: F811
    source = web.data("/image.raw", DATA)
    node = setup(cluster, two_nodes, "import.stored")
    image_id = new_image(node)
    body = {"method": {"name": "web-download", "uri": source}}
    assert start_import(node, image_id, body).status_code == 202
    wait_dead(node)
    survivor = recover(cluster, node, two_nodes)
    actionable(survivor, image_id, {"queued"})
    assert start_import(survivor, image_id, body).status_code == 202
    assert wait_import(survivor, image_id)["status"] == "success"
    assert survivor.image(image_id)["status"] == "active"
    assert cluster.store_files() == [f"a/{image_id}"]
    assert_clean(cluster, survivor)


@NODES
def test_copy_image_killed_after_store_write(cluster, two_nodes):
    node = setup(cluster, two_nodes, "import.stored")
    image_id = new_image(node)
    assert put(node, image_id, "file").status_code == 204
    body = {"method": {"name": "copy-image"}, "stores": ["b"]}
    assert start_import(node, image_id, body).status_code == 202
    wait_dead(node)
    survivor = recover(cluster, node, two_nodes)

    def copy_undone() -> dict[str, Any] | None:
        img = survivor.image(image_id)
        return img if img.get("os_glance_importing_to_stores") == "" else None
    img = wait_for(copy_undone, 30, "the copy to be undone")
    assert img["status"] == "active" and img["stores"] == "a"
    assert img["os_glance_failed_import"] == "b"
    # The sweep undoes the task first, then removes the copied data: wait for both.
    wait_for(lambda: cluster.store_files() == [f"a/{image_id}"], 30, "the copy's data to go")
    assert start_import(survivor, image_id, body).status_code == 202
    assert wait_import(survivor, image_id)["status"] == "success"
    assert survivor.image(image_id)["stores"] == "a,b"
    assert cluster.store_files() == [f"a/{image_id}", f"b/{image_id}"]
    assert_clean(cluster, survivor)


# ---------------------------------------------------------------- delete


@NODES
def test_delete_killed_before_data_removal(cluster, two_nodes):
    node = setup(cluster, two_nodes, "delete.committed")
    image_id = new_image(node)
    assert put(node, image_id, "file").status_code == 204
    assert cluster.store_files() == [f"a/{image_id}"]
    try:
        node.request("DELETE", f"/v2/images/{image_id}")
    except httpx.HTTPError:
        pass
    wait_dead(node)
    survivor = recover(cluster, node, two_nodes)
    assert survivor.request("GET", f"/v2/images/{image_id}").status_code == 404
    wait_for(lambda: cluster.store_files() == [], 30, "the deleted image's data to go")
    assert_clean(cluster, survivor)


@NODES
def test_web_download_killed_while_downloading(cluster, web, two_nodes):  # noqa: F811
    source = web.data("/held.raw", DATA)
    web.gates["/held.raw"] = gate = threading.Event()
    node = setup(cluster, two_nodes, None)
    image_id = new_image(node)
    body = {"method": {"name": "web-download", "uri": source}}
    assert start_import(node, image_id, body).status_code == 202
    wait_for(lambda: "/held.raw" in web.hits, 20, "the download to start")
    node.server.proc.kill()
    node.server.proc.wait(10)
    gate.set()
    survivor = recover(cluster, node, two_nodes)
    actionable(survivor, image_id, {"queued"})
    assert start_import(survivor, image_id, body).status_code == 202
    assert wait_import(survivor, image_id)["status"] == "success"
    assert cluster.store_files() == [f"a/{image_id}"]
    assert_clean(cluster, survivor)
