"""Deleting image data: at once, or later by the scrubber with delayed_delete."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from glimpse import cli
from glimpse.db import repository as repo
from glimpse.db.models import Image, ImageLocation
from glimpse.services import scrub as scrub_svc
from glimpse.services.runtime import Runtime
from tests.conftest import as_project

OCTET = {"Content-Type": "application/octet-stream"}


def _runtime(client) -> Runtime:  # noqa: ANN001
    return client.app.state.runtime


def _store_files(tmp_path: Path) -> list[str]:
    path = tmp_path / "data" / "images"
    return sorted(os.listdir(path)) if path.exists() else []


def _image_with_data(client, data: bytes = b"scrub me" * 1000,  # noqa: ANN001
                     headers: dict[str, str] | None = None) -> str:
    r = client.post("/v2/images", json={"name": "s", "disk_format": "raw",
                                        "container_format": "bare"}, headers=headers or {})
    assert r.status_code == 201
    image_id = r.json()["id"]
    r = client.put(f"/v2/images/{image_id}/file", content=data,
                   headers={**OCTET, **(headers or {})})
    assert r.status_code == 204
    return image_id


def _row(rt: Runtime, image_id: str):  # noqa: ANN202
    with rt.db.read() as session:
        return repo.get_image(session, image_id, include_deleted=True, with_locations=False)


def _location_statuses(rt: Runtime, image_id: str) -> list[str]:
    with rt.db.read() as session:
        return list(session.scalars(
            ImageLocation.__table__.select().with_only_columns(ImageLocation.status)
            .where(ImageLocation.image_id == image_id)))


def _age_deletion(rt: Runtime, image_id: str, seconds: int) -> None:
    """Pretend the image was deleted ``seconds`` ago (instead of sleeping)."""
    with rt.db.write() as session, session.begin():
        session.execute(update(Image).where(Image.id == image_id).values(
            deleted_at=repo.utcnow() - timedelta(seconds=seconds)))


# ---------------------------------------------------------------- immediate delete


def test_delete_removes_the_data_file(client, tmp_path):
    image_id = _image_with_data(client)
    assert _store_files(tmp_path) == [image_id]
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert _store_files(tmp_path) == []
    assert client.get(f"/v2/images/{image_id}").status_code == 404
    assert client.get(f"/v2/images/{image_id}/file").status_code == 404
    rt = _runtime(client)
    assert _row(rt, image_id).status == "deleted"
    assert _location_statuses(rt, image_id) == ["deleted"]


def test_delete_with_data_already_missing_still_succeeds(client, tmp_path):
    image_id = _image_with_data(client)
    os.unlink(tmp_path / "data" / "images" / image_id)
    assert client.get(f"/v2/images/{image_id}/file").status_code == 404
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert client.get(f"/v2/images/{image_id}").status_code == 404


def test_deleted_image_id_cannot_be_reused(client):
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    r = client.post("/v2/images", json={"id": image_id, "name": "again"})
    assert r.status_code == 409


def test_delete_twice_is_404(client):
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert client.delete(f"/v2/images/{image_id}").status_code == 404


# ---------------------------------------------------------------- delayed delete


def test_delayed_delete_keeps_data_until_scrubbed(app_factory, tmp_path):
    client = app_factory(delayed_delete=True)
    rt = _runtime(client)
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert client.get(f"/v2/images/{image_id}").status_code == 404
    assert client.get(f"/v2/images/{image_id}/file").status_code == 404
    assert image_id not in [i["id"] for i in client.get("/v2/images").json()["images"]]
    assert client.delete(f"/v2/images/{image_id}").status_code == 404
    assert _row(rt, image_id).status == "pending_delete"
    assert _location_statuses(rt, image_id) == ["pending_delete"]
    assert _store_files(tmp_path) == [image_id]

    report = scrub_svc.scrub(rt)
    assert (report.images, report.locations, report.errors) == (1, 1, 0)
    assert _store_files(tmp_path) == []
    assert _row(rt, image_id).status == "deleted"
    assert _location_statuses(rt, image_id) == ["deleted"]
    # Nothing left to do the second time.
    again = scrub_svc.scrub(rt)
    assert (again.images, again.locations, again.errors) == (0, 0, 0)


def test_delayed_delete_of_image_without_data_is_immediate(app_factory):
    client = app_factory(delayed_delete=True)
    r = client.post("/v2/images", json={"name": "empty"})
    image_id = r.json()["id"]
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert _row(_runtime(client), image_id).status == "deleted"


def test_delayed_delete_only_scrubs_pending_images(app_factory, tmp_path):
    client = app_factory(delayed_delete=True)
    rt = _runtime(client)
    kept = _image_with_data(client, b"keep" * 100)
    gone = _image_with_data(client, b"gone" * 100)
    assert client.delete(f"/v2/images/{gone}").status_code == 204
    scrub_svc.scrub(rt)
    assert _store_files(tmp_path) == [kept]
    assert client.get(f"/v2/images/{kept}/file").content == b"keep" * 100


def test_scrub_time_is_respected(app_factory, tmp_path):
    client = app_factory(delayed_delete=True, scrub_time=3600)
    rt = _runtime(client)
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204

    report = scrub_svc.scrub(rt)
    assert (report.images, report.locations) == (0, 0)
    assert _store_files(tmp_path) == [image_id]
    assert _row(rt, image_id).status == "pending_delete"

    _age_deletion(rt, image_id, 1800)  # half way: still kept
    assert scrub_svc.scrub(rt).images == 0
    assert _store_files(tmp_path) == [image_id]

    _age_deletion(rt, image_id, 3700)  # past scrub_time
    assert scrub_svc.scrub(rt).images == 1
    assert _store_files(tmp_path) == []
    assert _row(rt, image_id).status == "deleted"


def test_scrub_ignoring_scrub_time(app_factory, tmp_path):
    client = app_factory(delayed_delete=True, scrub_time=3600)
    rt = _runtime(client)
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert scrub_svc.scrub(rt, ignore_scrub_time=True).images == 1
    assert _store_files(tmp_path) == []


def test_scrub_when_data_is_already_gone(app_factory, tmp_path):
    client = app_factory(delayed_delete=True)
    rt = _runtime(client)
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    os.unlink(tmp_path / "data" / "images" / image_id)
    report = scrub_svc.scrub(rt)
    assert (report.images, report.errors) == (1, 0)
    assert _row(rt, image_id).status == "deleted"


def test_scrub_keeps_pending_image_when_its_data_cannot_be_removed(app_factory, tmp_path):
    client = app_factory(delayed_delete=True)
    rt = _runtime(client)
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    data_file = tmp_path / "data" / "images" / image_id
    data_file.unlink()
    data_file.mkdir()  # something the store cannot delete stands in its place
    report = scrub_svc.scrub(rt)
    assert (report.images, report.locations, report.errors) == (0, 0, 1)
    assert _row(rt, image_id).status == "pending_delete"
    assert _location_statuses(rt, image_id) == ["pending_delete"]
    data_file.rmdir()
    report = scrub_svc.scrub(rt)  # retried on the next run
    assert (report.images, report.errors) == (1, 0)
    assert _row(rt, image_id).status == "deleted"


def test_delete_when_data_cannot_be_removed_is_still_204(client, tmp_path):
    image_id = _image_with_data(client)
    data_file = tmp_path / "data" / "images" / image_id
    data_file.unlink()
    data_file.mkdir()
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert client.get(f"/v2/images/{image_id}").status_code == 404


def test_pending_delete_data_counts_against_quota_until_scrubbed(app_factory):
    client = app_factory(delayed_delete=True, user_storage_quota="1KB")
    project = as_project("p-scrub")
    first = _image_with_data(client, b"a" * 1000, project)
    assert client.delete(f"/v2/images/{first}", headers=project).status_code == 204
    r = client.post("/v2/images", json={"name": "s", "disk_format": "raw",
                                        "container_format": "bare"}, headers=project)
    second = r.json()["id"]
    r = client.put(f"/v2/images/{second}/file", content=b"b" * 1000,
                   headers={**OCTET, **project})
    assert r.status_code == 413
    scrub_svc.scrub(_runtime(client))
    r = client.put(f"/v2/images/{second}/file", content=b"b" * 1000,
                   headers={**OCTET, **project})
    assert r.status_code == 204


# ---------------------------------------------------------------- the CLI


def _conf_file(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "glance-api.conf"
    path.write_text(f"[DEFAULT]\ndata_dir = {tmp_path / 'data'}\ndelayed_delete = True\n"
                    f"{extra}\n[database]\nconnection = {db_url}\n")
    return path


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glimpse.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_scrub(app_factory, tmp_path, db_url, capsys):
    client = app_factory(delayed_delete=True, scrub_time=3600)
    rt = _runtime(client)
    image_id = _image_with_data(client)
    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    conf = _conf_file(tmp_path, db_url, "scrub_time = 3600")

    # In-process first (cheap): scrub_time from the file keeps the data.
    assert cli.main(["scrub", "--config-file", str(conf)]) == 0
    assert "scrubbed 0 images" in capsys.readouterr().out
    assert _store_files(tmp_path) == [image_id]

    # Then the real command line.
    now = _run_cli("scrub", "--config-file", str(conf), "--now")
    assert now.returncode == 0, now.stderr
    assert "scrubbed 1 images, 1 locations, 0 errors" in now.stdout
    assert _store_files(tmp_path) == []
    assert _row(rt, image_id).status == "deleted"
