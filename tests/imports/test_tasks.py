"""The tasks API (admin-only by default), the per-image task list, the legacy
'import' task, and task expiry."""

from __future__ import annotations

import re

import pytest

from tests.conftest import as_project
from tests.imports.conftest import (
    RAW,
    image,
    new_image,
    stage,
    start_import,
    wait_for,
    wait_task_done,
)

DATA = b"task data " * 10_000
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def imported(client, headers=None) -> tuple[str, dict]:
    image_id = new_image(client, headers=headers)
    assert stage(client, image_id, DATA, headers).status_code == 204
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}},
                        headers).status_code == 202
    return image_id, wait_task_done(client, image_id)


def test_task_shapes(make_app):
    client = make_app()
    headers = as_project("tp", user="tu")
    image_id, row = imported(client, headers)
    # GET /v2/images/{id}/tasks: database rows as Glance serializes them.
    assert set(row) == {"id", "type", "status", "owner", "expires_at", "created_at",
                        "updated_at", "deleted_at", "deleted", "image_id", "request_id",
                        "user_id", "input", "result", "message"}
    assert row["type"] == "api_image_import" and row["owner"] == "tp"
    assert row["user_id"] == "tu" and row["deleted"] is False and row["deleted_at"] is None
    assert DB_TIME.match(row["created_at"]) and DB_TIME.match(row["expires_at"])
    assert row["request_id"].startswith("req-")
    assert row["input"] == {"image_id": image_id, "backend": [None],
                            "import_req": {"method": {"name": "glance-direct"}}}
    # GET /v2/tasks/{id} (admin)
    task = client.get(f"/v2/tasks/{row['id']}").json()
    assert task == {
        "id": row["id"], "type": "api_image_import", "status": "success", "owner": "tp",
        "input": row["input"], "result": {"image_id": image_id},
        "message": "Copied 0 MiB",
        "created_at": task["created_at"], "updated_at": task["updated_at"],
        "expires_at": task["expires_at"], "image_id": image_id,
        "request_id": row["request_id"], "user_id": "tu", "self": f"/v2/tasks/{row['id']}",
        "schema": "/v2/schemas/task"}
    assert ISO.match(task["created_at"]) and ISO.match(task["expires_at"])
    # GET /v2/tasks: stubs without input, result, message.
    listed = client.get("/v2/tasks").json()
    assert listed["first"] == "/v2/tasks" and listed["schema"] == "/v2/schemas/tasks"
    assert set(listed["tasks"][0]) == {"id", "type", "status", "owner", "created_at",
                                       "updated_at", "expires_at", "self", "schema"}


def test_tasks_api_is_admin_only(make_app):
    client = make_app()
    image_id, row = imported(client, as_project("p1"))
    for method, path in (("GET", "/v2/tasks"), ("GET", f"/v2/tasks/{row['id']}"),
                         ("DELETE", f"/v2/tasks/{row['id']}")):
        r = client.request(method, path, headers=as_project("p1"))
        assert r.status_code == 403
        assert r.json()["message"] == ("You are not authorized to complete tasks_api_access "
                                       "action.")
    r = client.post("/v2/tasks", json={"type": "import", "input": {}},
                    headers=as_project("p1"))
    assert r.status_code == 403
    # The owner sees its image's tasks; another project cannot see the image.
    assert len(client.get(f"/v2/images/{image_id}/tasks",
                          headers=as_project("p1")).json()["tasks"]) == 1
    private = new_image(client, headers=as_project("p1"), visibility="private")
    assert client.get(f"/v2/images/{private}/tasks",
                      headers=as_project("p2")).status_code == 404


def test_delete_task_is_405(make_app):
    client = make_app()
    _, row = imported(client)
    r = client.delete(f"/v2/tasks/{row['id']}")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert "auto deleted after reaching the time based on their expires_at" in r.text


def test_list_filters_sort_and_paging(make_app):
    client = make_app()
    ids = [imported(client)[1]["id"] for _ in range(3)]
    listed = [t["id"] for t in client.get("/v2/tasks").json()["tasks"]]
    assert listed == list(reversed(ids))
    asc = [t["id"] for t in client.get("/v2/tasks?sort_dir=asc").json()["tasks"]]
    assert asc == ids
    page = client.get("/v2/tasks?limit=2&sort_dir=asc").json()
    assert [t["id"] for t in page["tasks"]] == ids[:2]
    assert page["first"] == "/v2/tasks?limit=2&sort_dir=asc"
    assert page["next"] == f"/v2/tasks?limit=2&sort_dir=asc&marker={ids[1]}"
    rest = client.get(page["next"]).json()
    assert [t["id"] for t in rest["tasks"]] == ids[2:]
    assert "next" not in rest
    assert client.get("/v2/tasks?status=success").json()["tasks"]
    assert client.get("/v2/tasks?status=failure").json()["tasks"] == []
    by_key = client.get("/v2/tasks?sort_key=status").json()["tasks"]
    assert len(by_key) == 3
    bad = [
        ("sort_dir=up", "Invalid sort direction: up"),
        ("status=done", "Invalid status value: done"),
        ("type=api_image_import", "Invalid type value: api_image_import"),
        ("marker=nope", "Invalid marker format"),
        ("marker=00000000-0000-0000-0000-000000000000",
         "Task with the given ID 00000000-0000-0000-0000-000000000000 was not found"),
        ("limit=x", "limit param must be an integer"),
        ("limit=-1", "limit param must be positive"),
        ("sort_key=bogus", "Sort key supplied was not valid."),
    ]
    for query, message in bad:
        r = client.get(f"/v2/tasks?{query}")
        assert r.status_code == 400, query
        assert r.json()["message"] == message
    r = client.get("/v2/tasks/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404


def test_legacy_import_task(make_app, web):
    client = make_app("[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n"
                      f"allowed_ports = [80,443,{web.port}]")
    uri = web.data("/legacy.raw", DATA)
    body = {"type": "import", "input": {
        "import_from": uri, "import_from_format": "raw",
        "image_properties": {"name": "legacy", "disk_format": "raw",
                             "container_format": "bare"}}}
    r = client.post("/v2/tasks", json=body)
    assert r.status_code == 201
    created = r.json()
    assert r.headers["location"] == f"/v2/tasks/{created['id']}"
    assert created["status"] in ("pending", "processing", "success")
    assert created["input"] == body["input"] and created["type"] == "import"

    def finished() -> dict | None:
        task = client.get(f"/v2/tasks/{created['id']}").json()
        return task if task["status"] in ("success", "failure") else None

    task = wait_for(finished)
    assert task["status"] == "success", task["message"]
    img = image(client, task["result"]["image_id"])
    assert img["name"] == "legacy" and img["status"] == "active"
    assert client.get(f"/v2/images/{img['id']}/file").content == DATA


def test_legacy_import_task_failures(make_app, web):
    client = make_app()
    r = client.post("/v2/tasks", json={"type": "import"})
    assert r.status_code == 400
    assert r.json()["message"] == "Task 'input' is required"
    r = client.post("/v2/tasks", json={"type": "import", "input": {}, "extra": 1})
    assert r.status_code == 400
    assert "Provided object does not match schema 'task'" in r.json()["message"]
    # import_from is checked before the task exists, as Glance does: 400, no task.
    props = {"disk_format": "raw", "container_format": "bare"}
    refused = [
        ({}, "Invalid location: None"),
        ({"import_from": "file:///etc/passwd"},
         "File based imports are not allowed. Please use a non-local source of image data."),
        ({"import_from": "x"}, "The given uri is not valid. Please specify a valid uri from "
                               "the following list of supported uri ['http']"),
        # The web-download filter (port 1 is not in allowed_ports) ...
        ({"import_from": "http://127.0.0.1:1/x"},
         "URI for legacy import task does not pass filtering: http://127.0.0.1:1/x"),
        # ... and the address guard (loopback, the host not in allowed_hosts).
        ({"import_from": web.url("/x").replace(f":{web.port}", "")},
         "is a loopback address and the host is not in allowed_hosts"),
        ({"import_from": "http://localhost/x"},
         "host 'localhost' resolves to 127.0.0.1, which is a loopback address"),
    ]
    for task_input, message in refused:
        body = {"type": "import", "input": {"import_from_format": "raw",
                                            "image_properties": props, **task_input}}
        r = client.post("/v2/tasks", json=body)
        assert r.status_code == 400, task_input
        assert message in r.json()["message"], (task_input, r.json())
    assert client.get("/v2/tasks").json()["tasks"] == []
    assert client.get("/v2/images").json()["images"] == []
    assert web.hits == []
    # Input that passes the URI checks but lacks a field fails in the task, as in Glance.
    allowed = make_app("[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n"
                       f"allowed_ports = [80,443,{web.port}]")
    r = allowed.post("/v2/tasks", json={"type": "import",
                                        "input": {"import_from": web.url("/x")}})
    assert r.status_code == 201
    task_id = r.json()["id"]
    task = wait_for(lambda: (t := allowed.get(f"/v2/tasks/{task_id}").json())["status"]
                    == "failure" and t)
    assert task["message"] == "Input does not contain 'import_from_format' field"


def test_finished_tasks_expire(make_app):
    client = make_app("[task]\ntask_time_to_live = 0\n")
    image_id = new_image(client)
    assert stage(client, image_id, DATA).status_code == 204
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}}
                        ).status_code == 202
    task_id = image(client, image_id).get("os_glance_import_task")
    wait_for(lambda: "os_glance_import_task" not in image(client, image_id))
    assert image(client, image_id)["status"] == "active"
    # Finished with a time to live of 0 hours: gone from every list at once.
    assert client.get(f"/v2/images/{image_id}/tasks").json()["tasks"] == []
    if task_id is not None:
        assert client.get(f"/v2/tasks/{task_id}").status_code == 404
    assert client.get("/v2/tasks").json()["tasks"] == []


@pytest.mark.parametrize("ttl", [48])
def test_expiry_follows_task_time_to_live(make_app, ttl):
    from datetime import datetime, timedelta

    client = make_app(f"[task]\ntask_time_to_live = {ttl}\n")
    _, row = imported(client)
    updated = datetime.fromisoformat(row["updated_at"])
    expires = datetime.fromisoformat(row["expires_at"])
    assert abs((expires - updated) - timedelta(hours=ttl)) < timedelta(seconds=5)


def test_schema_documents_still_served(make_app):
    client = make_app()
    assert client.get("/v2/schemas/task").json()["name"] == "task"
    assert client.put("/v2/images/x/stage", content=b"", headers={"Content-Type": RAW}
                      ).status_code == 404
