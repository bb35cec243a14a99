"""The cache management API (/v2/cache, API 2.14-2.18): Glance's answers."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import as_project

ADMIN = {"X-Roles": "admin,member,reader", "X-Project-Id": "admin-project",
         "X-User-Id": "admin-user", "X-Identity-Status": "Confirmed"}
MEMBER = as_project("some-project")
NOT_SUPPORTED = "Caching via API is not supported at this site."
ENDPOINTS = [("GET", "/v2/cache"), ("DELETE", "/v2/cache"), ("POST", "/v2/cache/clean"),
             ("POST", "/v2/cache/prune")]


@pytest.fixture
def on(app_factory, tmp_path):  # noqa: ANN001, ANN201
    return app_factory(image_cache_dir=str(tmp_path / "cache"), image_cache_min_free_space="0")


def _active(client, data: bytes = b"d" * 4096) -> str:  # noqa: ANN001
    image_id = client.post("/v2/images", headers=ADMIN, json={
        "name": "c", "disk_format": "raw", "container_format": "bare"}).json()["id"]
    client.put(f"/v2/images/{image_id}/file", content=data,
               headers={**ADMIN, "Content-Type": "application/octet-stream"})
    return image_id


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_off_is_404_after_the_policy_check(client, method, path):
    assert client.request(method, path, headers=MEMBER).status_code == 403
    resp = client.request(method, path, headers=ADMIN)
    assert resp.status_code == 404 and NOT_SUPPORTED in resp.text


def test_off_queue_and_versions(client):
    image_id = _active(client)
    resp = client.put(f"/v2/cache/{image_id}", headers=ADMIN)
    assert resp.status_code == 404 and NOT_SUPPORTED in resp.text
    ids = [v["id"] for v in client.get("/versions").json()["versions"]]
    assert "v2.18" not in ids and "v2.16" not in ids


def test_on_versions_advertise_the_cache_api(on):
    versions = {v["id"]: v["status"] for v in on.get("/versions").json()["versions"]}
    assert versions["v2.18"] == "CURRENT"
    assert all(versions[f"v2.{m}"] == "SUPPORTED" for m in (14, 15, 16, 17))


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_non_admin_is_forbidden(on, method, path):
    assert on.request(method, path, headers=MEMBER).status_code == 403


def test_queue_caches_at_once(on, tmp_path):
    data = os.urandom(100_000)
    image_id = _active(on, data)
    assert on.put(f"/v2/cache/{image_id}", headers=ADMIN).status_code == 202
    deadline = time.monotonic() + 30
    while True:
        state = on.get("/v2/cache", headers=ADMIN).json()
        if state["cached_images"] and not state["queued_images"]:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert [e["image_id"] for e in state["cached_images"]] == [image_id]
    assert state["queued_images"] == []
    assert (tmp_path / "cache" / image_id).read_bytes() == data


def test_queue_refusals(on):
    missing = "00000000-0000-4000-8000-000000000000"
    resp = on.put(f"/v2/cache/{missing}", headers=ADMIN)
    assert resp.status_code == 404 and f"Image {missing} not found." in resp.text
    queued = on.post("/v2/images", headers=ADMIN, json={
        "name": "q", "disk_format": "raw", "container_format": "bare"}).json()["id"]
    resp = on.put(f"/v2/cache/{queued}", headers=ADMIN)
    assert resp.status_code == 400 and "status active" in resp.text
    active = _active(on)
    assert on.put(f"/v2/cache/{active}", headers=MEMBER).status_code in (403, 404)
    resp = on.delete(f"/v2/cache/{missing}", headers=ADMIN)
    assert resp.status_code == 404


def test_queue_of_an_image_that_cannot_be_cached_stays_queued_for_the_prefetcher(
        app_factory, tmp_path):
    client = app_factory(image_cache_dir=str(tmp_path / "cache"),
                         image_cache_min_free_space="100%")
    image_id = _active(client)
    assert client.put(f"/v2/cache/{image_id}", headers=ADMIN).status_code == 202
    rt = client.app.state.runtime
    rt.cache._prefetcher.submit(lambda: None).result(10)  # the first attempt is over
    assert client.get("/v2/cache", headers=ADMIN).json()["queued_images"] == [image_id]
    rt.conf.set_override("image_cache_min_free_space", "0")
    assert rt.cache.prefetch() == 1  # what the periodic pass does
    state = client.get("/v2/cache", headers=ADMIN).json()
    assert state["queued_images"] == [] and state["cached_images"][0]["image_id"] == image_id


def test_clear_targets(on):
    a, b = _active(on), _active(on)
    on.get(f"/v2/images/{a}/file", headers=ADMIN)
    rt = on.app.state.runtime
    rt.cache.queue(b)
    resp = on.delete("/v2/cache", headers={**ADMIN, "x-image-cache-clear-target": "bogus"})
    assert resp.status_code == 400 and "'cache', 'queue' or empty string" in resp.text
    assert on.delete("/v2/cache", headers={**ADMIN, "x-image-cache-clear-target": "queue"}
                     ).status_code == 204
    state = on.get("/v2/cache", headers=ADMIN).json()
    assert state["queued_images"] == [] and len(state["cached_images"]) == 1
    rt.cache.queue(b)
    assert on.delete("/v2/cache", headers={**ADMIN, "x-image-cache-clear-target": "cache"}
                     ).status_code == 204
    state = on.get("/v2/cache", headers=ADMIN).json()
    assert state["queued_images"] == [b] and state["cached_images"] == []
    on.get(f"/v2/images/{a}/file", headers=ADMIN)
    assert on.delete("/v2/cache", headers=ADMIN).status_code == 204
    assert on.get("/v2/cache", headers=ADMIN).json() == {"cached_images": [],
                                                          "queued_images": []}


def test_delete_entry_and_prune_answer(on):
    image_id = _active(on)
    on.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert on.delete(f"/v2/cache/{image_id}", headers=ADMIN).status_code == 204
    assert on.get("/v2/cache", headers=ADMIN).json()["cached_images"] == []
    resp = on.post("/v2/cache/prune", headers=ADMIN)
    assert resp.status_code == 200
    assert resp.json() == {"total_files_pruned": 0, "total_bytes_pruned": 0}
    assert on.post("/v2/cache/clean", headers=ADMIN).status_code == 200


def test_flavors_with_caching_are_accepted(tmp_path):
    from glimpse.config import effective_auth_strategy, load_config

    for flavor in ("keystone+caching", "keystone+cachemanagement"):
        conf = load_config([], {"paste_deploy.flavor": flavor})
        assert effective_auth_strategy(conf) == "keystone"


def test_a_queued_image_deleted_before_it_is_cached_leaves_the_queue(on):
    image_id = _active(on)
    rt = on.app.state.runtime
    rt.cache.queue(image_id)  # queued, not yet copied
    assert rt.cache.queued_images() == [image_id]
    assert on.delete(f"/v2/images/{image_id}", headers=ADMIN).status_code == 204
    assert rt.cache.queued_images() == []  # the delete took it out
    rt.cache.queue(image_id)  # as if another node's delete: the prefetcher drops it
    assert rt.cache.prefetch() == 0
    assert on.get("/v2/cache", headers=ADMIN).json() == {"cached_images": [],
                                                          "queued_images": []}
