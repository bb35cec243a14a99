"""glance-direct: stage, import, and everything that can go wrong around them."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import tools
from tests.conftest import as_project
from tests.imports.conftest import (
    image,
    new_image,
    stage,
    start_import,
    wait_for,
    wait_task_done,
)

DATA = b"glance-direct data " * 50_000


def test_stage_then_import_goes_active(make_app, tmp_path):
    client = make_app(worker_self_reference_url="http://worker-a:9292")
    image_id = new_image(client, name="gd")
    r = stage(client, image_id, DATA)
    assert r.status_code == 204
    staged = image(client, image_id)
    assert staged["status"] == "uploading"
    assert staged["size"] == len(DATA)
    # Recorded for other workers, never shown to clients.
    assert "os_glance_stage_host" not in staged
    staging = tmp_path / "data" / "staging"
    assert (staging / image_id).read_bytes() == DATA

    r = start_import(client, image_id, {"method": {"name": "glance-direct"}})
    assert r.status_code == 202
    assert r.content == b""
    done = wait_for(lambda: (i := image(client, image_id))["status"] == "active" and i)
    assert done["checksum"] == hashlib.md5(DATA).hexdigest()
    assert done["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    assert done["size"] == len(DATA)
    assert "os_glance_import_task" not in done
    assert client.get(f"/v2/images/{image_id}/file").content == DATA
    task = wait_task_done(client, image_id)
    assert task["status"] == "success"
    assert task["result"] == {"image_id": image_id}
    assert task["input"]["import_req"] == {"method": {"name": "glance-direct"}}
    assert list(staging.iterdir()) == []


def test_import_before_staging_is_409(make_app):
    client = make_app()
    image_id = new_image(client)
    r = start_import(client, image_id, {"method": {"name": "glance-direct"}})
    assert r.status_code == 409
    assert "Image needs to be staged before 'glance-direct' method can be used" in r.text
    assert image(client, image_id)["status"] == "queued"


def test_import_body_errors(make_app):
    client = make_app(enabled_import_methods=["glance-direct"])
    image_id = new_image(client)
    stage(client, image_id, b"x" * 10)
    cases = [
        ({}, "Import request requires a 'method' field."),
        ({"method": {}}, "Import request requires a 'name' field."),
        ({"method": {"name": "web-download"}}, "Unknown import method name 'web-download'."),
        ({"method": {"name": "glance-direct"}, "all_stores": "yes"},
         "'all_stores' must be boolean value only"),
        ({"method": {"name": "glance-direct"}, "all_stores_must_succeed": 1},
         "'all_stores_must_succeed' must be boolean value only"),
        ({"method": {"name": "glance-direct"}, "all_stores_must_succeed": False},
         "All_stores_must_succeed can only be set with enabled_backends"),
    ]
    for body, message in cases:
        r = start_import(client, image_id, body)
        assert r.status_code == 400, body
        assert message in r.json()["message"]
    assert image(client, image_id)["status"] == "uploading"


def test_stage_rules(make_app):
    client = make_app()
    image_id = new_image(client, visibility="private", owner="p1")
    assert stage(client, image_id, b"x", as_project("p2")).status_code == 404
    r = client.put(f"/v2/images/{image_id}/stage", content=b"x",
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert stage(client, image_id, b"abc").status_code == 204
    r = stage(client, image_id, b"again")
    assert r.status_code == 409
    assert "Image status transition from uploading to uploading is not allowed" in r.text
    disabled = make_app(enabled_import_methods=["web-download"])
    other = new_image(disabled)
    r = stage(disabled, other, b"x")
    assert r.status_code == 404
    assert "'glance-direct' method is not available at this site." in r.text


def test_stage_over_size_cap_is_refused_and_cleaned(make_app, tmp_path):
    client = make_app(image_size_cap=1000)
    image_id = new_image(client)
    r = stage(client, image_id, b"x" * 1001)
    assert r.status_code == 413
    assert image(client, image_id)["status"] == "queued"
    assert list((tmp_path / "data" / "staging").iterdir()) == []


@pytest.fixture
def qemu_img() -> str:
    return tools.qemu_img()


def test_unsafe_qcow2_is_refused_at_stage(make_app, tmp_path, qemu_img):
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 65536)
    disk = tmp_path / "backed.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw",
                    str(disk)], check=True)
    client = make_app()
    image_id = new_image(client, disk_format="qcow2")
    r = stage(client, image_id, disk.read_bytes())
    assert r.status_code == 415
    assert "unsafe" in r.json()["message"].lower()
    assert image(client, image_id)["status"] == "queued"
    assert list((tmp_path / "data" / "staging").iterdir()) == []


def test_data_of_another_format_fails_the_import(make_app, tmp_path, qemu_img):
    """qcow2 bytes staged before disk_format is known, imported as raw: refused."""
    disk = tmp_path / "disk.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(disk), "1M"], check=True)
    client = make_app()
    image_id = new_image(client, disk_format=None, container_format=None)
    assert stage(client, image_id, disk.read_bytes()).status_code == 204
    # Formats cannot change while uploading; import needs them: 409.
    r = start_import(client, image_id, {"method": {"name": "glance-direct"}})
    assert r.status_code == 409
    assert "'container_format' needs to be set before import" in r.text


def test_failed_import_returns_image_to_queued_and_removes_staging(make_app, tmp_path):
    config = "\n".join([
        "[DEFAULT]", "enabled_backends = good:file,broken:file",
        "[glance_store]", "default_backend = good",
        "[good]", f"filesystem_store_datadir = {tmp_path / 'good'}",
        "[broken]", f"filesystem_store_datadir = {tmp_path / 'broken'}",
    ])
    client = make_app(config)
    # The broken store's directory turns into a file: every write there fails.
    shutil.rmtree(tmp_path / "broken")
    (tmp_path / "broken").write_bytes(b"")
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    r = start_import(client, image_id, {"method": {"name": "glance-direct"},
                                        "stores": ["good", "broken"]})
    assert r.status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert "broken" in task["message"]
    assert task["expires_at"] is not None
    img = image(client, image_id)
    assert img["status"] == "queued"
    assert img["os_glance_importing_to_stores"] == ""
    assert img["os_glance_failed_import"] == "broken"
    assert "os_glance_import_task" not in img
    assert img["checksum"] is None and img["size"] is None
    # The copy that had reached the good store is gone again, and so is the stage.
    assert list((tmp_path / "good").iterdir()) == []
    staging = tmp_path / "data" / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []
    # The image can be staged and imported again.
    assert stage(client, image_id, DATA).status_code == 204
    r = start_import(client, image_id, {"method": {"name": "glance-direct"},
                                        "stores": ["good"]})
    assert r.status_code == 202
    wait_for(lambda: image(client, image_id)["status"] == "active")
    done = image(client, image_id)
    assert done["stores"] == "good"
    assert done["os_glance_failed_import"] == "broken"


def test_all_stores_must_succeed_false_keeps_partial_success(make_app, tmp_path):
    config = "\n".join([
        "[DEFAULT]", "enabled_backends = good:file,broken:file",
        "[glance_store]", "default_backend = good",
        "[good]", f"filesystem_store_datadir = {tmp_path / 'good'}",
        "[broken]", f"filesystem_store_datadir = {tmp_path / 'broken'}",
    ])
    client = make_app(config)
    shutil.rmtree(tmp_path / "broken")
    (tmp_path / "broken").write_bytes(b"")
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    r = start_import(client, image_id, {"method": {"name": "glance-direct"},
                                        "stores": ["broken", "good"],
                                        "all_stores_must_succeed": False})
    assert r.status_code == 202
    assert wait_task_done(client, image_id)["status"] == "success"
    img = image(client, image_id)
    assert img["status"] == "active"
    assert img["stores"] == "good"
    assert img["os_glance_failed_import"] == "broken"
    assert img["os_glance_importing_to_stores"] == ""


def test_non_owner_cannot_stage_or_import(make_app):
    client = make_app()
    image_id = new_image(client, headers=as_project("p1"), visibility="community")
    assert stage(client, image_id, b"x", as_project("p2")).status_code == 403
    assert stage(client, image_id, b"data", as_project("p1")).status_code == 204
    r = start_import(client, image_id, {"method": {"name": "glance-direct"}}, as_project("p2"))
    assert r.status_code == 403


def test_usage_counts_staged_data(make_app):
    client = make_app(user_storage_quota="10MB")
    headers = as_project("p-usage")
    image_id = new_image(client, headers=headers)
    assert stage(client, image_id, b"s" * (2 * 1024 * 1024), headers).status_code == 204
    usage = client.get("/v2/info/usage", headers=headers).json()["usage"]
    assert usage["image_stage_total"] == {"limit": -1, "usage": 2}
    assert usage["image_count_uploading"] == {"limit": -1, "usage": 1}
    assert usage["image_count_total"] == {"limit": -1, "usage": 1}
    assert usage["image_size_total"] == {"limit": 10, "usage": 0}
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}},
                        headers).status_code == 202
    wait_for(lambda: image(client, image_id, headers)["status"] == "active")
    usage = client.get("/v2/info/usage", headers=headers).json()["usage"]
    assert usage["image_size_total"]["usage"] == 2
    assert usage["image_stage_total"]["usage"] == 0
    assert usage["image_count_uploading"]["usage"] == 0


def test_staging_directory_from_node_staging_uri(make_app, tmp_path: Path):
    where = tmp_path / "elsewhere"
    client = make_app(node_staging_uri=f"file://{where}")
    image_id = new_image(client)
    assert stage(client, image_id, b"abc").status_code == 204
    assert (where / image_id).read_bytes() == b"abc"


def _store_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "images"


def test_staged_data_is_imported_without_a_copy(make_app, tmp_path):
    """Staging and store on one filesystem: the store gets the staged file itself
    (a hard link), and the digests taken while staging are reused."""
    client = make_app()
    data = DATA * 20  # ~19 MiB: several multi-MiB chunks
    image_id = new_image(client)
    assert stage(client, image_id, data).status_code == 204
    staged = tmp_path / "data" / "staging" / image_id
    inode = staged.stat().st_ino
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}}).status_code == 202
    done = wait_for(lambda: (i := image(client, image_id))["status"] == "active" and i)
    assert done["size"] == len(data)
    assert done["checksum"] == hashlib.md5(data).hexdigest()
    assert done["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert done["virtual_size"] == len(data)
    stored = _store_dir(tmp_path) / image_id
    assert stored.stat().st_ino == inode
    assert stored.read_bytes() == data
    assert list((tmp_path / "data" / "staging").iterdir()) == []


def test_import_measures_the_data_when_the_stage_record_is_missing_or_stale(make_app, tmp_path):
    client = make_app()
    for spoil in ("remove", "stale"):
        image_id = new_image(client)
        assert stage(client, image_id, DATA).status_code == 204
        record = tmp_path / "data" / "staging" / f"{image_id}.measures"
        assert record.exists()
        if spoil == "remove":
            record.unlink()
        else:
            # A record of other data (another file): must not be believed.
            doc = json.loads(record.read_text())
            doc.update(checksum="0" * 32, file=[0, 0, 0])
            record.write_text(json.dumps(doc))
        r = start_import(client, image_id, {"method": {"name": "glance-direct"}})
        assert r.status_code == 202
        done = wait_for(lambda i=image_id: (m := image(client, i))["status"] == "active" and m)
        assert done["checksum"] == hashlib.md5(DATA).hexdigest(), spoil
        assert done["os_hash_value"] == hashlib.sha512(DATA).hexdigest(), spoil
        assert done["virtual_size"] == len(DATA)


def test_staged_data_on_another_filesystem_is_copied(make_app, tmp_path, monkeypatch):
    import errno
    import os

    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    client = make_app()
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    inode = (tmp_path / "data" / "staging" / image_id).stat().st_ino
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}}).status_code == 202
    done = wait_for(lambda: (i := image(client, image_id))["status"] == "active" and i)
    assert done["checksum"] == hashlib.md5(DATA).hexdigest()
    assert done["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    stored = _store_dir(tmp_path) / image_id
    assert stored.read_bytes() == DATA and stored.stat().st_ino != inode
    assert sorted(p.name for p in _store_dir(tmp_path).iterdir()) == [image_id]
