"""Issue 10's Glance behaviours as the unchanged ``glance`` client sees them,
against a live server with the default configuration (so the default
[import_filtering_opts], which let port 80 through, and the address guard)."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.clients.conftest import GlanceCLI, find_program
from tests.clients.test_glance_cli import write_random
from tests.conftest import start_server
from tests.imports.test_container_formats import make_ova

pytestmark = pytest.mark.clients


def test_ova_appliance_is_stored_as_it_is(glance, server_image, tmp_path, suite):
    ova = make_ova(tmp_path)
    created = glance.props("image-create", "--name", f"ova-{suite}", "--disk-format", "vmdk",
                           "--container-format", "ova", "--file", str(ova))
    assert created["status"] == "active"
    on_server = server_image(created["id"])
    assert on_server["virtual_size"] is None
    assert on_server["size"] == ova.stat().st_size
    assert on_server["container_format"] == "ova"


def test_bare_data_of_another_format_is_415(glance, api, tmp_path, suite):
    write_random(tmp_path / "not.qcow2", 200_000)
    err = glance.error("image-create", "--name", f"bad-{suite}", "--disk-format", "qcow2",
                       "--container-format", "bare", "--file", str(tmp_path / "not.qcow2"))
    assert "415" in err, err
    assert "does not match disk_format qcow2" in err
    listed = api.get("/v2/images", params={"name": f"bad-{suite}"}).json()["images"]
    assert [i["status"] for i in listed] == ["queued"]


@pytest.mark.parametrize("uri", ["http://127.0.0.1/x", "http://localhost/x"])
def test_web_download_from_loopback_is_refused(glance, api, suite, uri):
    out = glance.error("image-create-via-import", "--name", f"ssrf-{suite}",
                       "--disk-format", "raw", "--container-format", "bare",
                       "--import-method", "web-download", "--uri", uri)
    assert "does not pass filtering" in out and "loopback address" in out, out
    for found in api.get("/v2/images", params={"name": f"ssrf-{suite}"}).json()["images"]:
        assert api.get(f"/v2/images/{found['id']}/tasks").json()["tasks"] == []


def test_task_show_and_list_work_for_the_noauth_admin(glance, api, suite):
    r = api.post("/v2/images", json={"name": f"task-{suite}", "disk_format": "raw",
                                     "container_format": "bare"})
    image_id = r.json()["id"]
    assert api.put(f"/v2/images/{image_id}/stage", content=os.urandom(1000),
                   headers={"Content-Type": "application/octet-stream"}).status_code == 204
    assert api.post(f"/v2/images/{image_id}/import",
                    json={"method": {"name": "glance-direct"}}).status_code == 202
    deadline = time.monotonic() + 30
    while True:
        tasks = api.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[-1]["status"] in ("success", "failure"):
            break
        assert time.monotonic() < deadline, tasks
        time.sleep(0.1)
    task_id = tasks[-1]["id"]
    shown = glance.props("task-show", task_id)
    assert shown["id"] == task_id and shown["status"] == "success"
    assert shown["message"] == "Copied 0 MiB"
    assert shown["owner"] == "None"
    listed = glance.rows("task-list")
    assert task_id in [row["ID"] for row in listed]


def test_image_tasks_with_multi_store(tmp_path, suite):
    """With enabled_backends the versions document lists v2.12, which glanceclient
    needs for image-tasks (as with Glance)."""
    config = (f"[DEFAULT]\nenabled_backends = fast:file\n[glance_store]\n"
              f"default_backend = fast\n[fast]\nfilesystem_store_datadir = {tmp_path / 'fast'}\n")
    live = start_server(tmp_path, f"sqlite:///{tmp_path / 'multi.sqlite'}", config)
    try:
        glance = GlanceCLI(find_program("glance"), live.url)
        with httpx.Client(base_url=live.url, timeout=30) as api:
            ids = [v["id"] for v in api.get("/versions").json()["versions"]]
            assert "v2.12" in ids
            image_id = api.post("/v2/images", json={"name": f"mt-{suite}",
                                                    "disk_format": "raw",
                                                    "container_format": "bare"}).json()["id"]
            assert api.put(f"/v2/images/{image_id}/stage", content=b"m" * 1000,
                           headers={"Content-Type": "application/octet-stream"}
                           ).status_code == 204
            assert api.post(f"/v2/images/{image_id}/import",
                            json={"method": {"name": "glance-direct"}}).status_code == 202
        rows = glance.rows("image-tasks", image_id)
        assert len(rows) == 1, rows
    finally:
        live.stop()


def test_fresh_database_has_no_resource_types(glance):
    assert glance.rows("md-resource-type-list") == []
