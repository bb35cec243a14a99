"""Concurrent writers on one project or one image, on every database back end.

- user_storage_quota: two uploads that each fit but not both, run at the same
  time (both past the check made before the data arrives), end with exactly one
  active image; the other answers 413 and is left queued with no data.
- two POST /import of one staged image: exactly one 202, the other 409.
- concurrent PATCHes of one image: every change answered 200 is in the image.

The races on live servers use two worker processes, so the requests really
run at the same time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpse.context import RequestContext
from glimpse.db import repository as repo
from glimpse.errors import RequestEntityTooLarge
from glimpse.services import data as data_service
from glimpse.services import images as images_service
from glimpse.services import imports as imports_service
from glimpse.services import runtime as runtime_mod
from tests.conftest import as_project, make_conf, start_server

PROJECT = "race-project"
HEADERS = as_project(PROJECT)
JSON_PATCH = "application/openstack-images-v2.1-json-patch"
QUOTA = 1000
PIECE = 300  # two pieces: 600 bytes, so one upload fits in the quota and two do not


def _chunks(barrier: threading.Barrier) -> Iterator[bytes]:
    yield b"a" * PIECE
    # Both uploads are streaming: each passed the check made before the data.
    barrier.wait(timeout=60)
    yield b"b" * PIECE


@pytest.mark.parametrize("path", ["upload", "stage"])
def test_parallel_uploads_cannot_exceed_the_storage_quota(tmp_path: Path, db_url: str,
                                                          path: str) -> None:
    """PUT /file and PUT /stage both record a size that counts against the quota."""
    conf = make_conf(tmp_path, db_url, user_storage_quota=str(QUOTA))
    rt = runtime_mod.build(conf, migrate=True)
    ctx = RequestContext(user_id="u", project_id=PROJECT, roles=("member", "reader"))
    try:
        ids = [images_service.create_image(rt, ctx, {"disk_format": "raw",
                                                     "container_format": "bare"}).id
               for _ in range(2)]
        barrier = threading.Barrier(2)

        send = data_service.upload if path == "upload" else imports_service.stage

        def upload(image_id: str) -> str:
            try:
                send(rt, ctx, image_id, _chunks(barrier))
            except RequestEntityTooLarge as exc:
                return f"413 {exc.message}"
            return "ok"

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(upload, ids))
        assert sorted(o.split()[0] for o in outcomes) == ["413", "ok"], outcomes
        assert "exceeds the quota" in next(o for o in outcomes if o != "ok")
        with rt.db.read() as session:
            images = {i: repo.get_image(session, i) for i in ids}
            used = repo.storage_used(session, PROJECT)
        done = "active" if path == "upload" else "uploading"
        statuses = sorted(image.status for image in images.values())
        assert statuses == sorted([done, "queued"])
        assert used == 2 * PIECE <= QUOTA
        loser = next(image for image in images.values() if image.status == "queued")
        assert loser.size is None and not loser.locations
        # Nothing of the refused data is left in the store or the staging area.
        where = tmp_path / "data" / ("images" if path == "upload" else "staging")
        winner = next(i for i, image in images.items() if image.status == done)
        assert sorted(p.name for p in where.iterdir() if "." not in p.name) == [
            winner]
    finally:
        rt.close()


# ---------------------------------------------------------------- live servers


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[str]:
    live = start_server(tmp_path, db_url, config_text=f"user_storage_quota = {QUOTA}",
                        workers=2)
    yield live.url
    live.stop()


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=HEADERS, timeout=60, trust_env=False)


def _new_image(client: httpx.Client) -> str:
    r = client.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _together(n: int, fn: Any) -> list[Any]:
    """Run fn(i) in n threads released at the same moment."""
    start = threading.Barrier(n)

    def run(i: int) -> Any:
        start.wait(timeout=60)
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_parallel_uploads_on_a_live_server_stay_within_the_quota(server: str) -> None:
    with _client(server) as client:
        ids = [_new_image(client) for _ in range(4)]

    def upload(i: int) -> int:
        with _client(server) as c:
            return c.put(f"/v2/images/{ids[i]}/file", content=b"x" * 400,
                         headers={"Content-Type": "application/octet-stream"}).status_code

    codes = _together(4, upload)
    assert sorted(codes) == [204, 204, 413, 413], codes  # 2 x 400 fit in 1000, 3 do not
    with _client(server) as client:
        images = [client.get(f"/v2/images/{i}").json() for i in ids]
    active = [i for i in images if i["status"] == "active"]
    assert len(active) == 2 and sum(i["size"] for i in active) <= QUOTA
    assert sorted(i["status"] for i in images) == ["active", "active", "queued", "queued"]


def test_two_imports_of_one_image_one_wins(server: str) -> None:
    with _client(server) as client:
        ids = [_new_image(client) for _ in range(3)]
        for image_id in ids:
            r = client.put(f"/v2/images/{image_id}/stage", content=b"s" * 100,
                           headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 204, r.text
    for image_id in ids:
        def start(_: int, image_id: str = image_id) -> int:
            with _client(server) as c:
                return c.post(f"/v2/images/{image_id}/import",
                              json={"method": {"name": "glance-direct"}}).status_code

        codes = _together(2, start)
        assert sorted(codes) == [202, 409], (image_id, codes)
    with _client(server) as client:
        for image_id in ids:
            _wait_active(client, image_id)


def _wait_active(client: httpx.Client, image_id: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.get(f"/v2/images/{image_id}").json()
        if body["status"] == "active":
            assert body["size"] == 100
            return
        assert body["status"] in ("uploading", "importing"), body
        time.sleep(0.1)
    raise AssertionError(f"import of {image_id} not active after 60 s")


def test_concurrent_patches_lose_no_update(server: str) -> None:
    with _client(server) as client:
        image_id = _new_image(client)
    writers, rounds = 6, 5

    def patch(i: int) -> list[tuple[str, str, int]]:
        done = []
        with _client(server) as c:
            for n in range(rounds):
                prop, value = f"w{i}_{n}", f"v{i}-{n}"
                r = c.patch(f"/v2/images/{image_id}",
                            json=[{"op": "add", "path": f"/{prop}", "value": value},
                                  {"op": "replace", "path": "/name", "value": prop}],
                            headers={"Content-Type": JSON_PATCH})
                done.append((prop, value, r.status_code))
        return done

    results = [entry for per_writer in _together(writers, patch) for entry in per_writer]
    assert {code for _, _, code in results} == {200}, results
    with _client(server) as client:
        final = client.get(f"/v2/images/{image_id}").json()
    lost = [prop for prop, value, _ in results if final.get(prop) != value]
    assert lost == []
    assert final["name"] in {prop for prop, _, _ in results}
