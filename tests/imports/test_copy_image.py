"""Multi-store: discovery, uploads to a named store, copy-image to more stores."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import as_project
from tests.imports.conftest import (
    RAW,
    image,
    multi_store_config,
    new_image,
    start_import,
    wait_task_done,
)

DATA = b"copy me " * 30_000
ADMIN = {"X-Identity-Status": "Confirmed", "X-Project-Id": "admin-p", "X-User-Id": "admin-u",
         "X-Roles": "admin,member,reader"}


@pytest.fixture
def three(make_app, tmp_path):
    return make_app(multi_store_config(tmp_path, ["fast", "cheap", "slow"], default="fast"))


def upload(client, image_id: str, store: str | None = None, headers: dict | None = None):
    h = {"Content-Type": RAW, **(headers or {})}
    if store:
        h["X-Image-Meta-Store"] = store
    return client.put(f"/v2/images/{image_id}/file", content=DATA, headers=h)


def stored_in(tmp_path, store: str, image_id: str) -> bytes | None:
    path = tmp_path / "stores" / store / image_id
    return path.read_bytes() if path.exists() else None


def test_discovery_with_stores(three, tmp_path):
    r = three.post("/v2/images", json={"name": "x"})
    assert r.headers["OpenStack-image-store-ids"] == ("fast,cheap,slow,os_glance_staging_store,"
                                                      "os_glance_tasks_store")
    stores = three.get("/v2/info/stores").json()["stores"]
    assert stores == [
        {"id": "fast", "description": "Fast store", "default": "true"},
        {"id": "cheap", "description": "Cheap store"},
        {"id": "slow", "description": "Slow store"},
    ]
    detail = three.get("/v2/info/stores/detail").json()["stores"]
    assert [s["id"] for s in detail] == ["fast", "cheap", "slow"]
    assert detail[0]["type"] == "file"
    assert detail[0]["properties"]["data_dir"] == str(tmp_path / "stores" / "fast")
    r = three.get("/v2/info/stores/detail", headers=as_project("p"))
    assert r.status_code == 403
    assert "stores_info_detail" in r.json()["message"]


def test_discovery_single_store(make_app):
    client = make_app()
    r = client.get("/v2/info/stores")
    assert r.status_code == 404
    assert r.json()["message"] == "Multi backend is not supported at this site."
    assert "OpenStack-image-store-ids" not in client.post("/v2/images", json={}).headers
    methods = client.get("/v2/info/import").json()
    assert methods == {"import-methods": {"description": "Import methods available.",
                                          "type": "array",
                                          "value": ["glance-direct", "web-download",
                                                    "copy-image"]}}
    # With one store there is nowhere to copy to.
    image_id = new_image(client)
    assert upload(client, image_id).status_code == 204
    r = start_import(client, image_id, {"method": {"name": "copy-image"}})
    assert r.status_code == 400
    assert "Image is already present at store 'file'" in r.json()["message"]


def test_http_store_is_listed_read_only(make_app, tmp_path):
    config = multi_store_config(tmp_path, ["local"]).replace(
        "enabled_backends = local:file", "enabled_backends = local:file,web:http")
    client = make_app(config)
    stores = client.get("/v2/info/stores").json()["stores"]
    assert stores[1] == {"id": "web", "read-only": "true"}
    detail = client.get("/v2/info/stores/detail").json()["stores"]
    assert detail[1]["type"] == "http" and detail[1]["properties"] == {}


def test_upload_to_named_store(three, tmp_path):
    image_id = new_image(three)
    assert upload(three, image_id, "cheap").status_code == 204
    assert image(three, image_id)["stores"] == "cheap"
    assert stored_in(tmp_path, "cheap", image_id) == DATA
    other = new_image(three)
    assert upload(three, other, "nowhere").status_code == 400
    assert image(three, other)["status"] == "queued"


def test_copy_image_to_two_more_stores(three, tmp_path):
    image_id = new_image(three)
    assert upload(three, image_id, "cheap").status_code == 204
    r = start_import(three, image_id, {"method": {"name": "copy-image"},
                                       "stores": ["fast", "slow"]})
    assert r.status_code == 202
    during = image(three, image_id)
    assert during["status"] == "active"
    task = wait_task_done(three, image_id)
    assert task["status"] == "success", task["message"]
    assert task["input"]["backend"] == ["fast", "slow"]
    done = image(three, image_id)
    assert done["status"] == "active"
    assert done["stores"] == "cheap,fast,slow"
    assert done["os_glance_importing_to_stores"] == ""
    assert done["os_glance_failed_import"] == ""
    assert done["checksum"] == hashlib.md5(DATA).hexdigest()
    for store in ("fast", "cheap", "slow"):
        assert stored_in(tmp_path, store, image_id) == DATA
    # Now in every store: all_stores has nothing left to do (202, no task).
    before = len(three.get(f"/v2/images/{image_id}/tasks").json()["tasks"])
    r = start_import(three, image_id, {"method": {"name": "copy-image"}, "all_stores": True})
    assert r.status_code == 202
    assert len(three.get(f"/v2/images/{image_id}/tasks").json()["tasks"]) == before


def test_copy_image_all_stores_between_two(make_app, tmp_path):
    client = make_app(multi_store_config(tmp_path, ["one", "two"]))
    image_id = new_image(client)
    assert upload(client, image_id).status_code == 204
    assert image(client, image_id)["stores"] == "one"
    r = start_import(client, image_id, {"method": {"name": "copy-image"}, "all_stores": True})
    assert r.status_code == 202
    assert wait_task_done(client, image_id)["input"]["backend"] == ["two"]
    assert image(client, image_id)["stores"] == "one,two"
    assert client.get(f"/v2/images/{image_id}/file").content == DATA


def test_copy_image_refusals(three):
    image_id = new_image(three, headers=as_project("owner-p"))
    queued = image_id
    r = start_import(three, queued, {"method": {"name": "copy-image"}, "stores": ["slow"]})
    assert r.status_code == 409
    assert "Only images with status active can be targeted for copying" in r.text
    assert upload(three, image_id, "fast", as_project("owner-p")).status_code == 204
    cases = [
        ({"stores": ["fast"]}, 400, "Image is already present at store 'fast'"),
        ({"stores": ["nowhere"]}, 409, "Unknown scheme 'nowhere' found in URI"),
        ({"stores": ["slow"], "all_stores": True}, 400,
         "All_stores parameter can't be used with x-image-meta-store header or stores "
         "parameter"),
    ]
    for extra, status, message in cases:
        r = start_import(three, image_id, {"method": {"name": "copy-image"}, **extra})
        assert r.status_code == status, extra
        assert message in r.json()["message"]
    r = start_import(three, image_id, {"method": {"name": "copy-image"}, "stores": ["slow"]},
                     headers={"X-Image-Meta-Store": "cheap"})
    assert r.status_code == 400
    # copy_image is an admin rule by default: the owner may not copy.
    r = start_import(three, image_id, {"method": {"name": "copy-image"}, "stores": ["slow"]},
                     as_project("owner-p"))
    assert r.status_code == 403
    assert "copy_image" in r.json()["message"]
    # An admin of another project may.
    r = start_import(three, image_id, {"method": {"name": "copy-image"}, "stores": ["slow"]},
                     ADMIN)
    assert r.status_code == 202
    task = wait_task_done(three, image_id)
    assert task["status"] == "success"
    assert task["owner"] == "admin-p"
    assert image(three, image_id)["stores"] == "fast,slow"


def test_import_to_stores_header_and_body(three, tmp_path):
    image_id = new_image(three)
    assert three.put(f"/v2/images/{image_id}/stage", content=DATA,
                     headers={"Content-Type": RAW}).status_code == 204
    r = start_import(three, image_id, {"method": {"name": "glance-direct"}},
                     headers={"X-Image-Meta-Store": "slow"})
    assert r.status_code == 202
    assert wait_task_done(three, image_id)["status"] == "success"
    img = image(three, image_id)
    assert img["stores"] == "slow"
    assert img["os_glance_importing_to_stores"] == ""
    assert stored_in(tmp_path, "slow", image_id) == DATA
    # Staged in the reserved staging store's directory, which is then emptied.
    assert list((tmp_path / "staging-multi").iterdir()) == []


def test_reserved_store_names_are_refused(make_app, tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        make_app("[DEFAULT]\nenabled_backends = os_glance_mine:file\n")
