"""python-glanceclient's location commands, unchanged, against a live server with two
file stores and the http store: ``location-add``, ``location-update``,
``location-delete`` and ``stores-delete``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, start_server
from tests.stores.http_server import RangeServer

pytestmark = pytest.mark.clients

PAYLOAD = os.urandom(150_000)


@pytest.fixture(scope="module")
def source() -> RangeServer:
    return RangeServer.shared()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    source: RangeServer,
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("location-clients")
    port = source.url.rsplit(":", 1)[1]
    config = f"""enabled_backends = fast:file,cheap:file,web:http
show_multiple_locations = true
[glance_store]
default_backend = fast
[fast]
filesystem_store_datadir = {root / "fast"}
[cheap]
filesystem_store_datadir = {root / "cheap"}
[import_filtering_opts]
allowed_hosts = [127.0.0.1]
allowed_ports = [80,443,{port}]
"""
    live = start_server(root, f"sqlite:///{root / 'glimpse.sqlite'}", config)
    yield live
    live.stop()


def _show(api: httpx.Client, image_id: str) -> dict:
    r = api.get(f"/v2/images/{image_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_location_add_update_delete(glance, api, source, suite):
    url = source.put(f"cli-{suite}", PAYLOAD)
    image_id = glance.props(
        "image-create", "--name", suite, "--disk-format", "raw", "--container-format", "bare"
    )["id"]
    sha = hashlib.sha512(PAYLOAD).hexdigest()
    shown = glance.props(
        "location-add",
        "--url",
        url,
        "--metadata",
        '{"speed": "88mph"}',
        "--hash-algo",
        "sha512",
        "--hash-value",
        sha,
        image_id,
    )
    assert shown["status"] == "active"
    doc = _show(api, image_id)
    assert doc["os_hash_value"] == sha and doc["size"] == len(PAYLOAD)
    assert doc["locations"] == [{"url": url, "metadata": {"speed": "88mph", "store": "web"}}]
    second = url + "#2"
    glance.run("location-add", "--url", second, image_id)
    glance.run("location-update", "--url", url, "--metadata", '{"speed": "1.21GW"}', image_id)
    doc = _show(api, image_id)
    assert [loc["url"] for loc in doc["locations"]] == [url, second]
    assert doc["locations"][0]["metadata"]["speed"] == "1.21GW"
    glance.run("location-delete", "--url", url, image_id)
    assert [loc["url"] for loc in _show(api, image_id)["locations"]] == [second]
    err = glance.error("location-delete", "--url", second, image_id)
    assert "403" in err or "last location" in err
    r = api.get(f"/v2/images/{image_id}/file")
    assert r.content == PAYLOAD


def test_stores_delete(glance, api, tmp_path, suite):
    path = tmp_path / "data"
    path.write_bytes(PAYLOAD)
    image_id = glance.props(
        "image-create",
        "--name",
        suite,
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        str(path),
        "--store",
        "fast",
    )["id"]
    r = api.post(
        f"/v2/images/{image_id}/import",
        json={"method": {"name": "copy-image"}, "stores": ["cheap"]},
    )
    assert r.status_code == 202, r.text
    for _ in range(200):
        if _show(api, image_id).get("stores") == "fast,cheap":
            break
        time.sleep(0.1)
    assert _show(api, image_id)["stores"] == "fast,cheap"
    glance.run("stores-delete", "--store", "fast", image_id)
    doc = _show(api, image_id)
    assert doc["stores"] == "cheap"
    assert [loc["metadata"]["store"] for loc in doc["locations"]] == ["cheap"]
    err = glance.error("stores-delete", "--store", "cheap", image_id)
    assert "403" in err or "only store" in err
