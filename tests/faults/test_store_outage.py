"""The object store cut mid-upload and mid-download, for real: a TCP proxy between
``glimpse serve`` and the shared Swift or S3 (SeaweedFS) server resets every
connection and refuses new ones (the shared servers themselves stay up for the
other tests).

- Upload cut half-way (multipart / segments in flight): 503 naming the store
  failure, the image is queued again, and once the store is back nothing of the
  partial upload is left in it (the driver cleans up, or the orphan sweep does);
  the upload can then be retried.
- Download cut half-way: the 200 response cannot turn into an error any more, so
  the connection is aborted before Content-Length bytes (the client knows it is
  short); a download started during the outage answers 503 with a clear message;
  after the outage the same download returns the right bytes.

The rbd store is in test_rbd_outage.py: Ceph clients talk to every OSD directly (the
addresses come from the monitor's maps), so one proxy cannot cut them; that test
freezes the OSD of a cluster of its own instead.
test_download_fails_over_to_another_location: with S3 cut, a download is served from
the image's second location on a file store.
"""

from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import start_server
from tests.faults.load import JSON
from tests.stores import swift_s3_backends as backends
from tests.stores.test_swift_s3_api import _section

MIB = 1024 * 1024
DATA = os.urandom(16 * MIB)
RAW = {**JSON, "Content-Type": "application/octet-stream"}
KINDS = ["s3", "swift"]


def _endpoint(kind: str) -> tuple[str, str]:
    """(URL of the real server, the option that names it)."""
    if kind == "s3":
        return backends.backend_env("seaweedfs")["S3_SEAWEEDFS_ENDPOINT"], "s3_store_host"
    return backends.backend_env("swift")["SWIFT_AUTH_URL"], "swift_store_auth_address"


def _leftovers(kind: str, tmp_path) -> list[str]:  # noqa: ANN001
    if kind == "s3":
        return backends.s3_leftovers(backends.make_s3(tmp_path))
    return backends.swift_leftovers(backends.make_swift(tmp_path))


def _wait(check, timeout: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


@pytest.fixture
def proxied(request, tmp_path, tcp_proxy, db_url):  # noqa: ANN001, ANN201
    kind = request.param
    real, option = _endpoint(kind)
    parts = urlsplit(real)
    proxy = tcp_proxy(parts.hostname, parts.port)
    through = real.replace(parts.netloc, f"127.0.0.1:{proxy.port}")
    sizes = (
        {"s3_store_large_object_size": 5, "s3_store_large_object_chunk_size": 5}
        if kind == "s3"
        else {"swift_store_large_object_size": 4, "swift_store_large_object_chunk_size": 2}
    )
    config = _section(kind, tmp_path, **{option: through}, **sizes)
    config = "lease_period = 2\nlease_sweep_interval = 0.3\norphan_sweep_interval = 1\n" + config
    server = start_server(tmp_path, db_url, config_text=config)
    yield kind, proxy, server
    server.stop()


def _create(api: httpx.Client) -> str:
    r = api.post(
        "/v2/images", json={"name": "outage", "disk_format": "raw", "container_format": "bare"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("proxied", KINDS, indirect=True)
def test_store_cut_mid_upload_then_mid_download(proxied, tmp_path):
    """One server per store kind for both halves (each start costs seconds)."""
    kind, proxy, server = proxied
    api = httpx.Client(base_url=server.url, headers=JSON, timeout=60)
    image_id = _create(api)
    # The link goes down while the store is being written to: parts or segments
    # are in flight when the proxy has passed 6 MiB of the 16 MiB on.
    proxy.cut_at_bytes_up = proxy.bytes_up + 6 * MIB
    result: dict[str, object] = {}
    try:
        result["r"] = api.put(f"/v2/images/{image_id}/file", content=DATA, headers=RAW, timeout=120)
    except httpx.HTTPError as exc:
        result["r"] = exc
    assert not proxy.up, f"the store link was not cut ({proxy.bytes_up} bytes passed)"
    cut_after = proxy.bytes_up
    r = result["r"]
    assert isinstance(r, httpx.Response), r
    assert r.status_code == 503, r.text
    message = r.json()["message"]
    assert message.startswith("Error storing image data"), message
    img = api.get(f"/v2/images/{image_id}").json()
    assert img["status"] == "queued" and img["size"] is None
    # A second upload while the store is still away: 503 too, image still queued.
    r = api.put(f"/v2/images/{image_id}/file", content=DATA[:MIB], headers=RAW)
    assert r.status_code == 503, r.text
    assert api.get(f"/v2/images/{image_id}").json()["status"] == "queued"
    proxy.restore()
    # Nothing of the partial upload is left once the store is back.
    _wait(lambda: _leftovers(kind, tmp_path) == [], 30, "the partial upload to be removed")
    r = api.put(f"/v2/images/{image_id}/file", content=DATA, headers=RAW)
    assert r.status_code == 204, r.text
    img = api.get(f"/v2/images/{image_id}").json()
    assert img["status"] == "active" and img["checksum"] == hashlib.md5(DATA).hexdigest()
    print(
        f"\n{kind}: upload cut after {cut_after} bytes went to the store; "
        f"proxy reset {proxy.cuts} connections, refused {proxy.refused}"
    )
    _download_cut(kind, proxy, server, api, image_id)


def _download_cut(kind, proxy, server, api, image_id) -> None:  # noqa: ANN001
    """The image is active with DATA: cut the store half-way through its download."""
    got = 0
    with pytest.raises(httpx.HTTPError) as aborted:  # noqa: PT012 - the read is the point
        with api.stream("GET", f"/v2/images/{image_id}/file") as r:
            assert r.status_code == 200
            assert int(r.headers["content-length"]) == len(DATA)
            for piece in r.iter_bytes():
                got += len(piece)
                if got >= 2 * MIB and proxy.up:
                    proxy.cut()
    assert got < len(DATA), "the download finished although the store was cut"
    print(
        f"\n{kind}: download aborted after {got} of {len(DATA)} bytes: "
        f"{type(aborted.value).__name__}"
    )
    r = api.get(f"/v2/images/{image_id}/file")
    assert r.status_code == 503, r.text
    assert r.json()["message"].startswith("Could not read image data"), r.text
    assert api.get(f"/v2/images/{image_id}").json()["status"] == "active"
    proxy.restore()
    r = api.get(f"/v2/images/{image_id}/file")
    assert r.status_code == 200 and hashlib.md5(r.content).digest() == hashlib.md5(DATA).digest()
    assert "Unhandled error" not in server.log.read_text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_download_fails_over_to_another_location(db_url, tmp_path, tcp_proxy):
    """An image in two stores (S3 and a file store): with S3 cut, the download is
    served from the file store's copy instead of answering 503."""
    real, option = _endpoint("s3")
    parts = urlsplit(real)
    proxy = tcp_proxy(parts.hostname, parts.port)
    through = real.replace(parts.netloc, f"127.0.0.1:{proxy.port}")
    config = _section("s3", tmp_path, **{option: through}).replace(
        "enabled_backends = objects:s3", "enabled_backends = objects:s3,local:file"
    )
    config += f"[local]\nfilesystem_store_datadir = {tmp_path / 'local'}\n"
    server = start_server(tmp_path, db_url, config_text=config)
    try:
        api = httpx.Client(base_url=server.url, headers=JSON, timeout=60)
        image_id = _create(api)
        assert (
            api.put(f"/v2/images/{image_id}/file", content=DATA[:MIB], headers=RAW).status_code
            == 204
        )
        r = api.post(
            f"/v2/images/{image_id}/import",
            json={"method": {"name": "copy-image"}, "stores": ["local"]},
        )
        assert r.status_code == 202, r.text
        _wait(
            lambda: api.get(f"/v2/images/{image_id}").json()["stores"] == "objects,local",
            60,
            "the copy to the file store",
        )
        proxy.cut()
        r = api.get(f"/v2/images/{image_id}/file")
        assert r.status_code == 200, r.text
        assert r.content == DATA[:MIB]
    finally:
        server.stop()
