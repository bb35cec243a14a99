"""The os_glance_import_task lock (conflicts, takeover of stale locks) and the
recovery a worker start does for imports a dead worker left behind."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from glimpse.db import repository as repo
from glimpse.db import tasks_repo
from glimpse.imports.tasks import host_identity
from tests.imports.conftest import (
    image,
    multi_store_config,
    new_image,
    stage,
    start_import,
    wait_for,
    wait_task_done,
)

DATA = b"recover me " * 20_000
GLANCE_DIRECT = {"method": {"name": "glance-direct"}}


def dead_worker() -> str:
    """A process id that no longer exists, in the runner's '<pid>/<token>' form."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{proc.pid}/dead"


def add_task(client, image_id: str, status: str, *, method: str = "glance-direct",
             backend: list | None = None, worker: str | None = None, age: float = 0,
             lock: bool = True) -> str:
    """A task row as a worker would have left it (and the image lock it holds)."""
    rt = client.runtime
    task_id = str(uuid.uuid4())
    with rt.db.write() as session, session.begin():
        tasks_repo.create_task(session, {
            "id": task_id, "type": "api_image_import", "status": status, "owner": None,
            "image_id": image_id, "input": {"image_id": image_id,
                                            "import_req": {"method": {"name": method}},
                                            "backend": backend or [None]},
            "host": host_identity(rt), "worker": worker or dead_worker()})
        if age:
            tasks_repo.update_task(session, task_id, {
                "updated_at": repo.utcnow() - timedelta(seconds=age)})
        if lock:
            assert tasks_repo.acquire_import_lock(session, image_id, task_id)
    return task_id


def set_status(client, image_id: str, old: str, new: str) -> None:
    with client.runtime.db.write() as session, session.begin():
        assert repo.set_status(session, image_id, old, new)


def task(client, task_id: str) -> dict:
    return client.get(f"/v2/tasks/{task_id}").json()


# ---------------------------------------------------------------- lock


def test_valid_lock_is_409(make_app):
    client = make_app()
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    holder = add_task(client, image_id, "processing", worker=client.runtime.runner.worker)
    r = start_import(client, image_id, GLANCE_DIRECT)
    assert r.status_code == 409
    assert r.json()["message"] == "Image has active task"
    assert image(client, image_id)["os_glance_import_task"] == holder
    assert image(client, image_id)["status"] == "uploading"


@pytest.mark.parametrize("holder_state", ["failure", "success", "missing", "expired"])
def test_stale_lock_is_taken_over(make_app, holder_state):
    client = make_app(import_lock_timeout=60)
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    if holder_state == "missing":
        with client.runtime.db.write() as session, session.begin():
            assert tasks_repo.acquire_import_lock(session, image_id, str(uuid.uuid4()))
        holder = None
    elif holder_state == "expired":
        holder = add_task(client, image_id, "processing",
                          worker=client.runtime.runner.worker, age=120)
    else:
        holder = add_task(client, image_id, holder_state)
    r = start_import(client, image_id, GLANCE_DIRECT)
    assert r.status_code == 202
    done = wait_task_done(client, image_id)
    assert done["status"] == "success"
    assert image(client, image_id)["status"] == "active"
    if holder_state == "expired":
        old = task(client, holder)
        assert old["status"] == "failure"
        assert old["message"] == "Expired lock preempted"


def test_pending_lock_lasts_twice_as_long(make_app):
    client = make_app(import_lock_timeout=60)
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    add_task(client, image_id, "pending", worker=client.runtime.runner.worker, age=90)
    assert start_import(client, image_id, GLANCE_DIRECT).status_code == 409


def test_takeover_cleans_stale_store_progress(make_app, tmp_path):
    client = make_app(multi_store_config(tmp_path, ["a", "b"]))
    image_id = new_image(client)
    assert client.put(f"/v2/images/{image_id}/file", content=DATA,
                      headers={"Content-Type": "application/octet-stream"}).status_code == 204
    with client.runtime.db.write() as session, session.begin():
        repo.set_properties(session, image_id, {"os_glance_importing_to_stores": "b",
                                                "os_glance_failed_import": ""}, ())
    add_task(client, image_id, "failure", method="copy-image", backend=["b"])
    r = start_import(client, image_id, {"method": {"name": "copy-image"}, "stores": ["b"]})
    assert r.status_code == 202
    assert wait_task_done(client, image_id)["status"] == "success"
    img = image(client, image_id)
    assert img["stores"] == "a,b"
    assert img["os_glance_importing_to_stores"] == ""
    assert img["os_glance_failed_import"] == ""


# ---------------------------------------------------------------- restart recovery


def test_restart_returns_staged_image_to_uploading(make_app, tmp_path):
    client = make_app()
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    set_status(client, image_id, "uploading", "importing")
    task_id = add_task(client, image_id, "processing")
    # A plugin output the dead worker left beside the staged data.
    (tmp_path / "data" / "staging" / f"{image_id}.qcow2").write_bytes(b"partial")

    restarted = make_app()
    assert task(restarted, task_id)["status"] == "failure"
    assert "stopped before the task finished" in task(restarted, task_id)["message"]
    img = image(restarted, image_id)
    assert img["status"] == "uploading"
    assert img["size"] == len(DATA)
    assert "os_glance_import_task" not in img
    assert sorted(p.name for p in (tmp_path / "data" / "staging").iterdir()) == [image_id]
    # Retryable: import again.
    assert start_import(restarted, image_id, GLANCE_DIRECT).status_code == 202
    wait_for(lambda: image(restarted, image_id)["status"] == "active")
    assert restarted.get(f"/v2/images/{image_id}/file").content == DATA


def test_restart_returns_download_to_queued_and_cleans_work(make_app, tmp_path):
    client = make_app()
    image_id = new_image(client)
    set_status(client, image_id, "queued", "importing")
    task_id = add_task(client, image_id, "processing", method="web-download")
    work = tmp_path / "data" / "tasks_work_dir"
    work.mkdir(parents=True, exist_ok=True)
    (work / task_id).write_bytes(b"half a download")

    restarted = make_app()
    assert task(restarted, task_id)["status"] == "failure"
    img = image(restarted, image_id)
    assert img["status"] == "queued"
    assert "os_glance_import_task" not in img
    assert list(work.iterdir()) == []


def test_restart_after_lost_stage_goes_to_queued(make_app, tmp_path):
    client = make_app()
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    set_status(client, image_id, "uploading", "importing")
    task_id = add_task(client, image_id, "pending")
    (tmp_path / "data" / "staging" / image_id).unlink()

    restarted = make_app()
    assert task(restarted, task_id)["status"] == "failure"
    img = image(restarted, image_id)
    assert img["status"] == "queued" and img["size"] is None


def test_restart_marks_interrupted_copy_failed(make_app, tmp_path):
    config = multi_store_config(tmp_path, ["a", "b"])
    client = make_app(config)
    image_id = new_image(client)
    assert client.put(f"/v2/images/{image_id}/file", content=DATA,
                      headers={"Content-Type": "application/octet-stream"}).status_code == 204
    with client.runtime.db.write() as session, session.begin():
        repo.set_properties(session, image_id, {"os_glance_importing_to_stores": "b",
                                                "os_glance_failed_import": ""}, ())
    task_id = add_task(client, image_id, "processing", method="copy-image", backend=["b"])

    restarted = make_app(config)
    assert task(restarted, task_id)["status"] == "failure"
    img = image(restarted, image_id)
    assert img["status"] == "active"
    assert img["os_glance_importing_to_stores"] == ""
    assert img["os_glance_failed_import"] == "b"
    assert "os_glance_import_task" not in img


def test_tasks_of_live_workers_are_left_alone(make_app):
    client = make_app()
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    set_status(client, image_id, "uploading", "importing")
    task_id = add_task(client, image_id, "processing", worker=client.runtime.runner.worker)
    restarted = make_app()
    assert task(restarted, task_id)["status"] == "processing"
    assert image(restarted, image_id)["status"] == "importing"


def test_start_removes_staged_data_nobody_waits_for(make_app, tmp_path):
    client = make_app()
    gone = new_image(client)
    assert stage(client, gone, DATA).status_code == 204
    assert client.delete(f"/v2/images/{gone}").status_code == 204
    waiting = new_image(client)
    assert stage(client, waiting, DATA).status_code == 204
    make_app()
    names = sorted(p.name for p in (tmp_path / "data" / "staging").iterdir())
    # The staged data, and beside it what the stage measured of it (for the import).
    assert names == [waiting, f"{waiting}.measures"]
