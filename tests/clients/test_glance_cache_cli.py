"""python-glanceclient's cache commands (``glance cache-*``), unchanged, against a
live server whose image cache is on; the server's state is checked over HTTP."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.clients.conftest import list_table
from tests.conftest import LiveServer, free_port, start_server

pytestmark = pytest.mark.clients


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("cache-clients")
    port = free_port()
    live = start_server(root, f"sqlite:///{root / 'glimpse.sqlite'}",
                        f"image_cache_dir = {root / 'cache'}\n"
                        "image_cache_min_free_space = 0\n"
                        f"worker_self_reference_url = http://127.0.0.1:{port}\n", port=port)
    yield live
    live.stop()


def _state(api) -> dict:  # noqa: ANN001
    r = api.get("/v2/cache", headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


def _wait_cached(api, image_id: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while image_id not in [e["image_id"] for e in _state(api)["cached_images"]]:
        assert time.monotonic() < deadline, "image was not cached"
        time.sleep(0.2)


def test_cache_queue_list_delete_clear(glance, api, new_image):
    data = os.urandom(300_000)
    one = new_image(data=data, name="cache-one")["id"]
    two = new_image(data=data, name="cache-two")["id"]

    glance.run("cache-queue", one, two)
    _wait_cached(api, one)
    _wait_cached(api, two)
    rows = list_table(glance.text("cache-list"))
    cached = {r["ID"]: r for r in rows if r["State"] == "cached"}
    assert set(cached) == {one, two}
    assert cached[one]["Size"] == str(len(data))

    glance.run("cache-delete", one)
    assert [e["image_id"] for e in _state(api)["cached_images"]] == [two]

    glance.run("cache-clear", "--target", "queue")
    assert [e["image_id"] for e in _state(api)["cached_images"]] == [two]
    glance.run("cache-clear", "--target", "cache")
    assert _state(api) == {"cached_images": [], "queued_images": []}

    assert api.get(f"/v2/images/{one}/file").content == data  # a miss fills again
    assert [e["image_id"] for e in _state(api)["cached_images"]] == [one]
    glance.run("cache-clear")
    assert _state(api)["cached_images"] == []
    assert "Pruned 0 file(s), 0 byte(s)." in glance.text("cache-prune")
    glance.run("cache-clean")


def test_cache_nodes_list(glance, api, new_image, server):
    image_id = new_image(data=b"x" * 1000, name="cache-nodes")["id"]
    api.get(f"/v2/images/{image_id}/file")
    text = glance.text("cache-nodes-list", image_id)
    assert [r["Node Reference URL"] for r in list_table(text)] == [server.url]
