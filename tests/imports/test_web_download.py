"""web-download from a local HTTP server: filtering on every hop, limits, validation."""

from __future__ import annotations

import hashlib
import threading

import pytest

from tests.conftest import as_project
from tests.imports.conftest import image, new_image, start_import, wait_for, wait_task_done

DATA = b"downloaded image bytes " * 40_000
ALLOW_LOCAL = ("[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n"
               "allowed_ports = [80,443,{port}]\n")


@pytest.fixture
def client(make_app, web):
    # The test server listens on a random port of 127.0.0.1, which the default
    # allowed_ports [80, 443] refuses and the address guard refuses as loopback;
    # allow that host and port (and only them) in a real config file.
    return make_app(ALLOW_LOCAL.format(port=web.port))


def web_download(uri: str, **extra: object) -> dict:
    return {"method": {"name": "web-download", "uri": uri}, **extra}


def test_download_goes_active_with_hashes(client, web, tmp_path):
    uri = web.data("/disk.raw", DATA)
    image_id = new_image(client)
    r = start_import(client, image_id, web_download(uri))
    assert r.status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "success", task["message"]
    img = image(client, image_id)
    assert img["status"] == "active"
    assert img["size"] == len(DATA)
    assert img["checksum"] == hashlib.md5(DATA).hexdigest()
    assert img["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    assert client.get(f"/v2/images/{image_id}/file").content == DATA
    assert web.hits == ["/disk.raw"]
    work = tmp_path / "data" / "tasks_work_dir"
    assert not work.exists() or list(work.iterdir()) == []


def test_importing_is_visible_and_progress_reported(client, web):
    web.gates["/slow"] = gate = threading.Event()
    uri = web.data("/slow", DATA)
    image_id = new_image(client)
    assert start_import(client, image_id, web_download(uri)).status_code == 202
    img = image(client, image_id)
    assert img["status"] == "importing"
    assert img["os_glance_import_task"]
    # Another import while this one holds the lock: 409.
    r = start_import(client, image_id, web_download(uri))
    assert r.status_code == 409
    task_id = img["os_glance_import_task"]
    running = wait_for(lambda: (t := client.get(f"/v2/tasks/{task_id}").json())["result"] and t)
    assert running["status"] == "processing"
    progress = running["result"]["progress"]
    assert progress["phase"] == "download" and progress["bytes_processed"] == 0
    gate.set()
    assert wait_task_done(client, image_id)["status"] == "success"
    assert image(client, image_id)["status"] == "active"


def test_uri_refused_up_front(client, web):
    image_id = new_image(client)
    for uri in ("http://127.0.0.1:1/x", "ftp://127.0.0.1/x", "file:///etc/passwd"):
        r = start_import(client, image_id, web_download(uri))
        assert r.status_code == 400, uri
        assert "URI for web-download does not pass filtering" in r.json()["message"]
    r = start_import(client, image_id, {"method": {"name": "web-download"}})
    assert r.status_code == 400
    assert image(client, image_id)["status"] == "queued"
    assert client.get(f"/v2/images/{image_id}/tasks").json()["tasks"] == []


def test_redirect_to_refused_port_fails(client, web):
    # 127.0.0.1:1 is not in allowed_ports: the redirect hop must be refused.
    uri = web.redirect("/hop", "http://127.0.0.1:1/secret")
    image_id = new_image(client)
    assert start_import(client, image_id, web_download(uri)).status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert "does not pass filtering" in task["message"]
    assert "127.0.0.1:1" in task["message"]
    img = image(client, image_id)
    assert img["status"] == "queued"
    assert "os_glance_import_task" not in img


def test_redirect_to_refused_host_fails(client, web):
    # localhost is not in allowed_hosts (only 127.0.0.1 is): the hop is refused.
    uri = web.redirect("/hop", f"http://localhost:{web.port}/disk")
    web.data("/disk", DATA)
    image_id = new_image(client)
    assert start_import(client, image_id, web_download(uri)).status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert "localhost" in task["message"]
    assert web.hits == ["/hop"]
    assert image(client, image_id)["status"] == "queued"


def test_allowed_redirects_are_followed(client, web):
    web.data("/final", DATA)
    web.redirect("/second", "/final", status=307)
    uri = web.redirect("/first", web.url("/second"), status=301)
    image_id = new_image(client)
    assert start_import(client, image_id, web_download(uri)).status_code == 202
    assert wait_task_done(client, image_id)["status"] == "success"
    assert web.hits == ["/first", "/second", "/final"]
    assert image(client, image_id)["size"] == len(DATA)


@pytest.mark.parametrize("announce_length", [True, False])
def test_size_cap_stops_download(make_app, web, tmp_path, announce_length):
    client = make_app(ALLOW_LOCAL.format(port=web.port),
                      image_size_cap=len(DATA) - 1)
    uri = web.data("/big", DATA, length=announce_length)
    image_id = new_image(client)
    assert start_import(client, image_id, web_download(uri)).status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert f"maximum image size of {len(DATA) - 1} bytes" in task["message"]
    assert image(client, image_id)["status"] == "queued"
    work = tmp_path / "data" / "tasks_work_dir"
    assert not work.exists() or list(work.iterdir()) == []


def test_storage_quota_stops_download(make_app, web):
    client = make_app(ALLOW_LOCAL.format(port=web.port),
                      user_storage_quota=str(len(DATA) // 2))
    uri = web.data("/big", DATA)
    headers = as_project("quota-p")
    image_id = new_image(client, headers=headers)
    assert start_import(client, image_id, web_download(uri), headers).status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert "quota" in task["message"]
    assert image(client, image_id, headers)["status"] == "queued"


def test_validation_data_checked_before_active(client, web):
    uri = web.data("/disk", DATA)
    good = {"os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(DATA).hexdigest()}
    image_id = new_image(client)
    body = {"method": {"name": "web-download", "uri": uri, "validation_data": good}}
    assert start_import(client, image_id, body).status_code == 202
    assert wait_task_done(client, image_id)["status"] == "success"
    assert image(client, image_id)["status"] == "active"

    wrong = {"os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(b"other").hexdigest()}
    other = new_image(client)
    body = {"method": {"name": "web-download", "uri": uri, "validation_data": wrong}}
    assert start_import(client, other, body).status_code == 202
    task = wait_task_done(client, other)
    assert task["status"] == "failure"
    assert "does not match the validation data" in task["message"]
    img = image(client, other)
    assert img["status"] == "queued" and img["checksum"] is None


def test_bad_validation_data_is_400(client, web):
    uri = web.data("/disk", DATA)
    image_id = new_image(client)
    for data in ({"os_hash_algo": "sha256", "os_hash_value": "zz"},
                 {"os_hash_algo": "sha256", "os_hash_value": "ab"},
                 {"os_hash_algo": "nope", "os_hash_value": "ab"},
                 {"os_hash_value": "ab"}):
        body = {"method": {"name": "web-download", "uri": uri, "validation_data": data}}
        assert start_import(client, image_id, body).status_code == 400, data


def test_http_error_fails_task(client, web):
    image_id = new_image(client)
    assert start_import(client, image_id, web_download(web.url("/nothing"))).status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert "404" in task["message"]
    assert image(client, image_id)["status"] == "queued"


def test_web_download_needs_queued_image(client, web):
    uri = web.data("/disk", DATA)
    image_id = new_image(client)
    assert start_import(client, image_id, web_download(uri)).status_code == 202
    wait_for(lambda: image(client, image_id)["status"] == "active")
    wait_task_done(client, image_id)
    r = start_import(client, image_id, web_download(uri))
    assert r.status_code == 409
    assert "Image with status active cannot be target for import" in r.text
