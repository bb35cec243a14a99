"""Downloads under a server that offers ASGI http.response.pathsend (Granian): a whole
file-store image is sent by the server from its path; Range requests still stream."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import as_project

OWNER = as_project("p-pathsend")
DATA = bytes(range(256)) * 4096  # 1 MiB


async def _call(app: Any, path: str, headers: dict[str, str], pathsend: bool) -> list[dict]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9292),
        "extensions": {"http.response.pathsend": {}} if pathsend else {},
    }
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return messages


@pytest.fixture
def image_url(client) -> str:  # noqa: ANN001
    r = client.post(
        "/v2/images",
        json={"name": "p", "disk_format": "raw", "container_format": "bare"},
        headers=OWNER,
    )
    assert r.status_code == 201, r.text
    url = f"/v2/images/{r.json()['id']}/file"
    r = client.put(url, content=DATA, headers={**OWNER, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return url


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_whole_download_is_sent_from_the_path(client, image_url):
    messages = anyio.run(_call, client.app, image_url, OWNER, True)
    start, *rest = messages
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-length"] == str(len(DATA)).encode()
    assert headers[b"content-type"] == b"application/octet-stream"
    assert b"content-md5" in headers and b"x-openstack-request-id" in headers
    assert [m["type"] for m in rest] == ["http.response.pathsend"]
    assert Path(rest[0]["path"]).read_bytes() == DATA


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ranges_and_servers_without_pathsend_stream_the_body(client, image_url):
    ranged = anyio.run(_call, client.app, image_url, {**OWNER, "Range": "bytes=10-19"}, True)
    assert ranged[0]["status"] == 206
    assert b"".join(m.get("body", b"") for m in ranged[1:]) == DATA[10:20]
    assert "http.response.pathsend" not in [m["type"] for m in ranged]
    plain = anyio.run(_call, client.app, image_url, OWNER, False)
    assert plain[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in plain[1:]) == DATA


# ---------------------------------------------------------------- the image cache

ADMIN = {"X-Roles": "admin,member,reader", "X-Project-Id": "p-pathsend",
         "X-User-Id": "admin-user", "X-Identity-Status": "Confirmed"}


def _cached_image(app_factory, tmp_path: Path):  # noqa: ANN001, ANN202
    client = app_factory(image_cache_dir=str(tmp_path / "cache"),
                         image_cache_min_free_space="0")
    r = client.post("/v2/images", json={"name": "c", "disk_format": "raw",
                                        "container_format": "bare"}, headers=ADMIN)
    image_id = r.json()["id"]
    r = client.put(f"/v2/images/{image_id}/file", content=DATA,
                   headers={**ADMIN, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return client, image_id


def _hits(client, image_id: str) -> int | None:  # noqa: ANN001
    entries = client.get("/v2/cache", headers=ADMIN).json()["cached_images"]
    return next((e["hits"] for e in entries if e["image_id"] == image_id), None)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_miss_is_sent_from_the_store_and_fills_the_cache_then_hits_are_sent_from_the_copy(
        app_factory, tmp_path):
    client, image_id = _cached_image(app_factory, tmp_path)
    url = f"/v2/images/{image_id}/file"
    copy = tmp_path / "cache" / image_id
    miss = anyio.run(_call, client.app, url, ADMIN, True)
    assert miss[0]["status"] == 200
    assert miss[1]["type"] == "http.response.pathsend"
    assert Path(miss[1]["path"]) != copy  # the store's file
    assert Path(miss[1]["path"]).read_bytes() == DATA
    # the miss filled the cache behind the response
    import time

    deadline = time.monotonic() + 30
    while _hits(client, image_id) is None:
        assert time.monotonic() < deadline, "the miss did not fill the cache"
        time.sleep(0.05)
    assert copy.read_bytes() == DATA
    assert _hits(client, image_id) == 0
    for n in (1, 2):
        hit = anyio.run(_call, client.app, url, ADMIN, True)
        headers = dict(hit[0]["headers"])
        assert hit[0]["status"] == 200
        assert headers[b"content-length"] == str(len(DATA)).encode()
        assert headers[b"content-md5"] == hashlib.md5(DATA, usedforsecurity=False
                                                      ).hexdigest().encode()
        assert [m["type"] for m in hit[1:]] == ["http.response.pathsend"]
        assert Path(hit[1]["path"]) == copy
        assert _hits(client, image_id) == n
    # a Range hit streams from the copy (and counts too)
    ranged = anyio.run(_call, client.app, url, {**ADMIN, "Range": "bytes=10-19"}, True)
    assert ranged[0]["status"] == 206
    assert b"".join(m.get("body", b"") for m in ranged[1:]) == DATA[10:20]
    assert _hits(client, image_id) == 3
    # the policy check still comes first: another project sees no such image
    other = anyio.run(_call, client.app, url, as_project("p-other"), True)
    assert other[0]["status"] == 404
    assert "http.response.pathsend" not in [m["type"] for m in other]
