"""Downloads under a server that offers ASGI http.response.pathsend (Granian): a whole
file-store image is sent by the server from its path; Range requests still stream."""

from __future__ import annotations

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
