"""Typed store errors reach the client as 413 / 403 / 503, never 500: real uploads
into a full filesystem, a read-only one and an unreachable Ceph cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.services import runtime as runtime_mod
from tests.stores.backends import IN_CI, backend_env, get_driver


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs as root: mounting a tmpfs must work")
        pytest.skip("needs root to mount a small tmpfs")
    target = tmp_path / "small"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    yield target
    subprocess.run(["umount", "-l", str(target)], check=True)


def _image(client) -> str:  # noqa: ANN001
    resp = client.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _upload(client, image_id: str, data: bytes):  # noqa: ANN001, ANN202
    return client.put(f"/v2/images/{image_id}/file", content=data,
                      headers={"Content-Type": "application/octet-stream"})


@pytest.fixture
def app_with(tmp_path: Path, db_url: str):  # noqa: ANN201
    """app_with(name, kind, options) -> TestClient with that one store (a config file:
    a store's section exists only once enabled_backends names it)."""
    runtimes = []

    def make(name: str, kind: str, section: dict[str, object]) -> TestClient:
        path = tmp_path / "glance-api.conf"
        path.write_text("\n".join([
            "[DEFAULT]", f"enabled_backends = {name}:{kind}",
            "[glance_store]", f"default_backend = {name}",
            f"[{name}]", *(f"{k} = {v}" for k, v in section.items())]) + "\n")
        conf = load_config([str(path)], {"data_dir": str(tmp_path / "data"),
                                         "database.connection": db_url})
        rt = runtime_mod.build(conf, migrate=True)
        runtimes.append(rt)
        return TestClient(create_app(conf, rt), headers={"Accept": "application/json"})

    yield make
    for rt in runtimes:
        rt.close()


def test_full_store_is_413(app_with, small_fs):
    client = app_with("small", "file", {"filesystem_store_datadir": small_fs / "images"})
    image_id = _image(client)
    resp = _upload(client, image_id, os.urandom(3 * 1024 * 1024))
    assert resp.status_code == 413, resp.text
    assert "small" in resp.text
    assert client.get(f"/v2/images/{image_id}").json()["status"] == "queued"
    assert os.listdir(small_fs / "images") == []


def test_store_that_became_read_only_is_403(app_with, small_fs):
    client = app_with("share", "file", {"filesystem_store_datadir": small_fs / "images"})
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    image_id = _image(client)
    resp = _upload(client, image_id, b"data")
    assert resp.status_code == 403, resp.text
    assert client.get(f"/v2/images/{image_id}").json()["status"] == "queued"


def test_unreachable_ceph_is_503(app_with, tmp_path):
    get_driver("rbd")
    env = backend_env("ceph")
    from tests.conftest import free_port

    dead = tmp_path / "dead-ceph.conf"
    dead.write_text("\n".join(
        f"mon host = v2:127.0.0.1:{free_port()}" if line.startswith("mon host") else line
        for line in Path(env["CEPH_CONF"]).read_text().splitlines()))
    client = app_with("ceph", "rbd", {"rbd_store_ceph_conf": dead,
                                      "rbd_store_user": env["CEPH_USER"],
                                      "rados_connect_timeout": 2})
    image_id = _image(client)
    resp = _upload(client, image_id, b"data")
    assert resp.status_code == 503, resp.text
    assert "ceph" in resp.text
