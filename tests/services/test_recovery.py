"""Leases, the recovery sweeps and ``glimpse doctor``, in-process on every database.

The end-to-end proof with killed servers is tests/test_crash_recovery.py; these
tests pin the rules: renewal is one UPDATE, a dead lease is taken over by one
node only, data of a live lease or younger than the lease period is never
touched, the periodic sweep leaves data of images the database does not know.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from glimpse.db import leases_repo, tasks_repo
from glimpse.db import repository as repo
from glimpse.services import leases as leases_mod
from glimpse.services import recovery
from glimpse.services import runtime as runtime_mod
from glimpse.stores.file import FileStore
from tests.conftest import make_conf
from tests.imports.conftest import make_app, web  # noqa: F401 - fixtures

LEASE = 1.0


@pytest.fixture
def runtimes(tmp_path: Path, db_url: str):  # noqa: ANN201
    """make(name) -> a Runtime with its own data directory, sharing the database
    and the image store (another node)."""
    built: list[runtime_mod.Runtime] = []

    def make(name: str = "a") -> runtime_mod.Runtime:
        conf = make_conf(tmp_path / name, db_url, lease_period=LEASE,
                         **{"glance_store.filesystem_store_datadir": str(tmp_path / "images")})
        rt = runtime_mod.build(conf, migrate=True)
        built.append(rt)
        return rt

    yield make
    for rt in built:
        rt.close()


def new_image(rt: runtime_mod.Runtime, status: str = "queued") -> str:
    image_id = str(uuid.uuid4())
    with rt.db.write() as session, session.begin():
        repo.create_image(session, {"id": image_id, "status": status, "visibility": "shared",
                                    "disk_format": "raw", "container_format": "bare"}, {}, [])
    return image_id


def status(rt: runtime_mod.Runtime, image_id: str) -> str:
    with rt.db.read() as session:
        image = repo.get_image(session, image_id, include_deleted=True)
    assert image is not None
    return image.status


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def foreign_lease(rt: runtime_mod.Runtime, operation: str, image_id: str, *,
                  expired: bool = True, detail: dict | None = None) -> str:
    """A lease as a worker on another host left it."""
    lease_id = str(uuid.uuid4())
    now = repo.utcnow()
    with rt.db.write() as session, session.begin():
        leases_repo.insert_lease(session, leases_repo.LeaseRecord(
            id=lease_id, operation=operation, image_id=image_id, task_id=None,
            host="elsewhere:/staging", worker="4242/gone",
            expires_at=now + timedelta(seconds=-5 if expired else 60), created_at=now,
            detail=detail or {}))
    return lease_id


def lease_ids(rt: runtime_mod.Runtime) -> set[str]:
    with rt.db.read() as session:
        return {lease.id for lease in leases_repo.all_leases(session)}


# ---------------------------------------------------------------- the file store listing


def test_file_store_lists_committed_and_in_progress_data(tmp_path: Path):
    store = FileStore("file", str(tmp_path / "s"))
    stored = store.add("img-1", [b"x" * 10])
    (tmp_path / "s" / ".img-2.abc123.tmp").write_bytes(b"partial")
    entries = {e.url: e for e in store.list_data()}
    assert entries[stored.url].complete and entries[stored.url].size == 10
    partial = entries["file://" + str(tmp_path / "s" / ".img-2.abc123.tmp")]
    assert not partial.complete and partial.size == 7
    assert abs(partial.modified - time.time()) < 60
    assert len(entries) == 2


# ---------------------------------------------------------------- leases


def test_renewal_is_one_update_for_all_leases_of_a_worker(runtimes):
    rt = runtimes()
    ids = []
    with rt.db.write() as session, session.begin():
        for _ in range(3):
            ids.append(rt.leases.acquire(session, leases_mod.UPLOAD, image_id=str(uuid.uuid4())))
    for lease_id in ids:
        rt.leases.held(lease_id)
    with rt.db.read() as session:
        before = {lease.id: lease.expires_at for lease in leases_repo.all_leases(session)}
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    time.sleep(0.05)
    event.listen(rt.db.engine, "before_cursor_execute", count)
    try:
        rt.leases.renew()
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("UPDATE")]) == 1
    with rt.db.read() as session:
        after = {lease.id: lease.expires_at for lease in leases_repo.all_leases(session)}
    assert all(after[i] > before[i] for i in ids)


def test_background_renewal_keeps_a_lease_alive(runtimes):
    rt = runtimes()
    other = runtimes("b")
    image_id = new_image(rt, "saving")
    with rt.db.write() as session, session.begin():
        lease_id = rt.leases.acquire(session, leases_mod.UPLOAD, image_id=image_id,
                                     detail={"store": "file"})
    rt.leases.held(lease_id)
    time.sleep(LEASE * 2.5)
    assert recovery.sweep_leases(other) == []
    assert status(other, image_id) == "saving"
    rt.leases.release_now(lease_id)
    assert lease_ids(rt) == set()


def test_an_expired_lease_is_resolved_by_one_node_only(runtimes, tmp_path):
    first, second = runtimes("a"), runtimes("b")
    image_id = new_image(first, "saving")
    partial = tmp_path / "images" / f".{image_id}.x1.tmp"
    partial.write_bytes(b"half an upload")
    lease_id = foreign_lease(first, leases_mod.UPLOAD, image_id, detail={"store": "file"})
    with second.db.read() as session:
        seen_by_second = [lease for lease in leases_repo.all_leases(session)
                          if lease.id == lease_id]
    assert [lease.id for lease in recovery.sweep_leases(first)] == [lease_id]
    # The second node read the lease before the first took it: its CAS fails.
    with second.db.write() as session, session.begin():
        assert not leases_repo.take_over(session, seen_by_second[0], second.leases.worker,
                                         second.leases.host, second.leases.expiry())
    assert recovery.sweep_leases(second) == []
    assert status(first, image_id) == "queued"
    assert not partial.exists()
    assert lease_ids(first) == set()


def test_an_expired_delete_lease_finishes_the_data_removal(runtimes, tmp_path):
    rt = runtimes()
    image_id = new_image(rt)
    stored = rt.stores.default.add(image_id, [b"data"])
    with rt.db.write() as session, session.begin():
        repo.mark_deleted(session, image_id, "queued", "deleted")
    foreign_lease(rt, leases_mod.DELETE, image_id, detail={"urls": [stored.url]})
    recovery.sweep_leases(rt)
    assert not (tmp_path / "images" / image_id).exists()
    assert lease_ids(rt) == set()


def test_a_dead_pid_on_this_host_is_noticed_before_the_expiry(runtimes):
    rt = runtimes()
    image_id = new_image(rt, "uploading")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    now = repo.utcnow()
    with rt.db.write() as session, session.begin():
        leases_repo.insert_lease(session, leases_repo.LeaseRecord(
            id=str(uuid.uuid4()), operation=leases_mod.STAGE, image_id=image_id, task_id=None,
            host=rt.leases.host, worker=f"{proc.pid}/dead",
            expires_at=now + timedelta(hours=1), created_at=now))
    assert len(recovery.sweep_leases(rt)) == 1
    assert status(rt, image_id) == "queued"


# ---------------------------------------------------------------- orphaned data and doctor


def test_data_of_a_live_lease_is_never_touched(runtimes, tmp_path):
    owner, doctor_rt = runtimes("a"), runtimes("b")
    image_id = new_image(owner, "saving")
    with owner.db.write() as session, session.begin():
        lease_id = owner.leases.acquire(session, leases_mod.UPLOAD, image_id=image_id,
                                        detail={"store": "file"})
    owner.leases.held(lease_id)
    partial = tmp_path / "images" / f".{image_id}.x2.tmp"
    partial.write_bytes(b"still coming")
    age(partial, 3600)
    report = recovery.doctor(doctor_rt, fix=True)
    assert not report.found, report.as_dict()
    assert partial.exists()
    assert status(owner, image_id) == "saving"
    owner.leases.release_now(lease_id)


def test_recent_data_is_left_alone(runtimes, tmp_path):
    rt = runtimes()
    (tmp_path / "images" / f".{uuid.uuid4()}.x3.tmp").write_bytes(b"just started")
    assert recovery.find_orphans(rt) == []


def test_unreferenced_data_of_a_known_image_is_swept(runtimes, tmp_path):
    rt = runtimes()
    image_id = new_image(rt)
    stored = rt.stores.default.add(image_id, [b"data"])
    with rt.db.write() as session, session.begin():
        repo.mark_deleted(session, image_id, "queued", "deleted")
    age(tmp_path / "images" / image_id, 60)
    removed = recovery.sweep_data(rt)
    assert [o.url for o in removed] == [stored.url]
    assert not (tmp_path / "images" / image_id).exists()


def test_data_of_unknown_images_is_only_reported_until_doctor_fix(runtimes, tmp_path):
    rt = runtimes()
    stray = tmp_path / "images" / str(uuid.uuid4())
    stray.write_bytes(b"from another database?")
    age(stray, 60)
    assert recovery.sweep_data(rt) == []
    assert stray.exists()
    report = recovery.doctor(rt)
    assert [o["url"] for o in report.orphaned_data] == ["file://" + str(stray)]
    assert report.found
    recovery.doctor(rt, fix=True)
    assert not stray.exists()
    assert not recovery.doctor(rt).found


def test_staged_data_is_kept_only_while_an_import_waits_for_it(runtimes):
    rt = runtimes()
    waiting, done = new_image(rt, "uploading"), new_image(rt, "active")
    staging = Path(rt.runner.staging.store.datadir)
    for image_id in (waiting, done):
        (staging / image_id).write_bytes(b"staged")
        age(staging / image_id, 60)
    with rt.db.write() as session, session.begin():
        repo.update_image(session, waiting, {"size": 6})
    orphans = recovery.find_orphans(rt)
    assert [(o.store, o.image_id) for o in orphans] == [("os_glance_staging_store", done)]


def test_doctor_reports_missing_data_and_stuck_images(runtimes, tmp_path):
    rt = runtimes()
    image_id = new_image(rt, "saving")
    stored = rt.stores.default.add(image_id, [b"data"])
    with rt.db.write() as session, session.begin():
        repo.add_location(session, image_id, stored.url, {"store": "file"})
        repo.set_status(session, image_id, "saving", "active")
    os.unlink(tmp_path / "images" / image_id)
    stuck = new_image(rt, "saving")  # no lease: written by an older version, say
    report = recovery.doctor(rt)
    assert report.missing_data == [{"image_id": image_id, "url": stored.url,
                                    "reason": "data is missing"}]
    assert report.stuck_images == [{"image_id": stuck, "status": "saving"}]
    recovery.doctor(rt, fix=True)
    assert status(rt, stuck) == "queued"
    assert recovery.doctor(rt).stuck_images == []


def test_doctor_command_exit_code_and_json(tmp_path: Path, db_url: str):
    conf = tmp_path / "glance-api.conf"
    conf.write_text(f"[DEFAULT]\nlease_period = {LEASE}\n[database]\nconnection = {db_url}\n")
    cmd = [sys.executable, "-m", "glimpse.cli", "doctor", "--json", "--config-file", str(conf),
           "--data-dir", str(tmp_path / "data")]
    subprocess.run([sys.executable, "-m", "glimpse.cli", "db", "sync", "--config-file",
                    str(conf), "--data-dir", str(tmp_path / "data")], check=True,
                   capture_output=True)
    clean = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert '"found": false' in clean.stdout
    stray = tmp_path / "data" / "images" / f".{uuid.uuid4()}.x4.tmp"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"left by a crash")
    age(stray, 60)
    found = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert found.returncode == 1
    assert str(stray) in found.stdout and stray.exists()
    fixed = subprocess.run([*cmd, "--fix"], capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 1 and not stray.exists()
    assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0


# ---------------------------------------------------------------- graceful shutdown


def test_an_import_cut_short_by_shutdown_is_recovered_at_the_next_start(make_app, web):  # noqa: F811
    from tests.imports.conftest import image, wait_task_done
    from tests.imports.conftest import new_image as api_image

    source = web.data("/slow.raw", b"x" * 4096)
    web.gates["/slow.raw"] = gate = threading.Event()
    config = (f"[import_filtering_opts]\nallowed_ports = [80,443,{web.port}]\n"
              "allowed_hosts = [127.0.0.1]\n")
    first = make_app(config, lease_period=LEASE)
    image_id = api_image(first)
    r = first.post(f"/v2/images/{image_id}/import",
                   json={"method": {"name": "web-download", "uri": source}})
    assert r.status_code == 202
    deadline = time.monotonic() + 20
    while "/slow.raw" not in web.hits and time.monotonic() < deadline:
        time.sleep(0.05)
    threading.Timer(0.5, gate.set).start()
    first.runtime.close()  # the download returns while the runner stops
    with first.runtime.db.read() as session:
        task = tasks_repo.tasks_for_image(session, image_id)[-1]
        leased = leases_repo.leased_task_ids(session)
    assert task.status == "processing" and task.id in leased
    again = make_app(config, lease_period=LEASE)
    assert wait_task_done(again, image_id)["status"] == "failure"
    assert image(again, image_id)["status"] == "queued"
    assert lease_ids(again.runtime) == set()


def test_data_a_location_names_by_another_path_is_kept(runtimes, tmp_path):
    rt = runtimes()
    image_id = new_image(rt)
    rt.stores.default.add(image_id, [b"migrated from glance"])
    (tmp_path / "glance-link").symlink_to(tmp_path / "images")
    with rt.db.write() as session, session.begin():
        repo.add_location(session, image_id, f"file://{tmp_path}/glance-link/{image_id}",
                          {"store": "file"})
        repo.set_status(session, image_id, "queued", "active")
    age(tmp_path / "images" / image_id, 60)
    assert recovery.find_orphans(rt) == []
    assert recovery.sweep_data(rt) == []
    assert (tmp_path / "images" / image_id).exists()


def test_work_files_of_tasks_that_are_not_running_are_swept(runtimes):
    rt = runtimes()
    work = Path(rt.runner.staging.work.datadir)
    leftover = work / f"{uuid.uuid4()}.qcow2"
    leftover.write_bytes(b"plugin output of a dead task")
    age(leftover, 60)
    assert [o.reason for o in recovery.sweep_data(rt)] == ["work file of no running task"]
    assert not leftover.exists()
