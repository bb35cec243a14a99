"""Distributed glance-direct: an import that reaches a worker other than the one
holding the staged data is replayed there, with the caller's identity."""

from __future__ import annotations

import json

from tests.conftest import as_project
from tests.imports.conftest import image, new_image, stage, start_import


def test_import_is_proxied_to_the_stage_host(make_app, web):
    staging_worker = make_app(worker_self_reference_url=web.url(""))
    headers = as_project("dp")
    image_id = new_image(staging_worker, headers=headers)
    assert stage(staging_worker, image_id, b"staged elsewhere", headers).status_code == 204
    # This worker (another URL) receives the import; the "stage host" is the
    # local HTTP server, which records what it is sent and answers 202.
    other = make_app(worker_self_reference_url="http://127.0.0.1:9/")
    web.routes[f"/v2/images/{image_id}/import"] = (202, {}, b"")
    body = {"method": {"name": "glance-direct"}}
    r = start_import(other, image_id, body, headers)
    assert r.status_code == 202
    [(path, sent_headers, sent_body)] = web.posts
    assert path == f"/v2/images/{image_id}/import"
    assert json.loads(sent_body) == body
    lowered = {k.lower(): v for k, v in sent_headers.items()}
    assert lowered["x-project-id"] == "dp" and lowered["x-roles"] == "member,reader"
    # Nothing happened here: no task, no lock, still staged.
    assert image(other, image_id, headers)["status"] == "uploading"
    assert other.get(f"/v2/images/{image_id}/tasks", headers=headers).json()["tasks"] == []


def test_remote_errors_and_unreachable_stage_host(make_app, web):
    staging_worker = make_app(worker_self_reference_url=web.url(""))
    image_id = new_image(staging_worker)
    assert stage(staging_worker, image_id, b"data").status_code == 204
    other = make_app(worker_self_reference_url="http://127.0.0.1:9/")
    web.routes[f"/v2/images/{image_id}/import"] = (409, {}, b"")
    assert start_import(other, image_id, {"method": {"name": "glance-direct"}}
                        ).status_code == 409
    gone = make_app(worker_self_reference_url="http://127.0.0.1:9/")
    unreachable = new_image(gone)
    with gone.runtime.db.write() as session, session.begin():
        from glimpse.db import repository as repo

        assert repo.set_status(session, unreachable, "queued", "uploading")
        repo.set_properties(session, unreachable,
                            {"os_glance_stage_host": "http://127.0.0.1:1"}, ())
    r = start_import(gone, unreachable, {"method": {"name": "glance-direct"}})
    assert r.status_code == 504
    assert r.json()["message"] == "Stage host is unavailable"


def _record_stage_host(client, image_id: str, url: str) -> None:  # noqa: ANN001
    from glimpse.db import repository as repo

    with client.runtime.db.write() as session, session.begin():
        repo.set_properties(session, image_id, {"os_glance_stage_host": url}, ())


def test_delete_removes_the_staged_data(make_app):
    worker = make_app(worker_self_reference_url="http://127.0.0.1:9/")
    image_id = new_image(worker)
    assert stage(worker, image_id, b"staged, never imported").status_code == 204
    staging = worker.runtime.runner.staging
    assert staging.has(image_id)
    assert worker.delete(f"/v2/images/{image_id}").status_code == 204
    assert not staging.has(image_id)
    assert worker.get(f"/v2/images/{image_id}").status_code == 404


def test_delete_follows_the_stage_host_answer_unless_it_is_unreachable(make_app, web):
    staging_worker = make_app(worker_self_reference_url=web.url(""))
    image_id = new_image(staging_worker)
    assert stage(staging_worker, image_id, b"data").status_code == 204
    other = make_app(worker_self_reference_url="http://127.0.0.1:9/")
    # The recording server has no DELETE (http.server answers 501): the stage
    # host's answer, even a server error, is what the caller gets; nothing is
    # deleted here.
    assert other.delete(f"/v2/images/{image_id}").status_code == 501
    assert image(other, image_id)["status"] == "uploading"
    assert staging_worker.runtime.runner.staging.has(image_id)
    # A stage host that cannot be reached does not keep the image alive (Glance
    # deletes it locally; the staged data stays on that worker).
    _record_stage_host(other, image_id, "http://127.0.0.1:1")
    assert other.delete(f"/v2/images/{image_id}").status_code == 204
    assert other.get(f"/v2/images/{image_id}").status_code == 404
