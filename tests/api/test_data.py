"""Image data through the API: PUT and GET /v2/images/{id}/file, on every database."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import as_project, start_server
from tests.domain.test_diskformat import make_disk, qemu_virtual_size

OCTET = {"Content-Type": "application/octet-stream"}
DATA = bytes(range(256)) * 40  # 10240 bytes, every byte value


def _create(client, headers: dict[str, str] | None = None, **fields: object) -> str:  # noqa: ANN001
    doc: dict[str, object] = {"name": "data-test", "disk_format": "raw",
                              "container_format": "bare"}
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not None}
    r = client.post("/v2/images", json=doc, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _put(client, image_id: str, content, headers: dict[str, str] | None = None):  # noqa: ANN001, ANN202
    return client.put(f"/v2/images/{image_id}/file", content=content,
                      headers={**OCTET, **(headers or {})})


def _show(client, image_id: str) -> dict:  # noqa: ANN001
    r = client.get(f"/v2/images/{image_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _store_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "images"


def _store_files(tmp_path: Path) -> list[str]:
    """Everything in the default file store, temporary files included."""
    path = _store_dir(tmp_path)
    return sorted(os.listdir(path)) if path.exists() else []


def _active_image(client, data: bytes = DATA, headers: dict[str, str] | None = None,  # noqa: ANN001
                  **fields: object) -> str:
    image_id = _create(client, headers, **fields)
    r = _put(client, image_id, data, headers)
    assert r.status_code == 204, r.text
    return image_id


# ---------------------------------------------------------------- upload: hashes, sizes


def test_upload_records_checksums_and_size(client, tmp_path):
    image_id = _active_image(client)
    image = _show(client, image_id)
    assert image["status"] == "active"
    assert image["size"] == len(DATA)
    assert image["virtual_size"] == len(DATA)  # raw: the data is the disk
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    assert _store_files(tmp_path) == [image_id]
    assert (_store_dir(tmp_path) / image_id).read_bytes() == DATA


def test_upload_response_is_204_without_body(client):
    image_id = _create(client)
    r = _put(client, image_id, DATA)
    assert r.status_code == 204
    assert r.content == b""


def test_hashing_algorithm_sha256(app_factory):
    client = app_factory(hashing_algorithm="sha256")
    image = _show(client, _active_image(client))
    assert image["os_hash_algo"] == "sha256"
    assert image["os_hash_value"] == hashlib.sha256(DATA).hexdigest()
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()


def test_unknown_hashing_algorithm_fails_the_upload_cleanly(app_factory, tmp_path):
    client = app_factory(hashing_algorithm="no-such-hash")
    image_id = _create(client)
    assert _put(client, image_id, DATA).status_code >= 400
    _assert_rolled_back(client, tmp_path, image_id)


def test_empty_upload_makes_an_active_empty_image(client):
    image = _show(client, _active_image(client, b""))
    assert image["status"] == "active" and image["size"] == 0
    assert image["checksum"] == hashlib.md5(b"").hexdigest()


# One test (one fresh database) for several cases: tests here run once per database.
def test_virtual_size_is_detected(client, tmp_path):
    for fmt in ("qcow2", "vmdk", "vhdx", "vdi"):
        path = make_disk(tmp_path, fmt, "5M")
        data = path.read_bytes()
        image = _show(client, _active_image(client, data, disk_format=fmt))
        assert image["size"] == len(data), fmt
        assert image["virtual_size"] == qemu_virtual_size(path) == 5 * 1024 * 1024, fmt
        assert image["checksum"] == hashlib.md5(data).hexdigest(), fmt


def test_chunked_upload_without_content_length(client):
    pieces = [os.urandom(70_000) for _ in range(5)]

    def body() -> Iterator[bytes]:
        yield from pieces

    image_id = _create(client)
    r = _put(client, image_id, body())
    assert r.status_code == 204, r.text
    data = b"".join(pieces)
    image = _show(client, image_id)
    assert image["size"] == len(data)
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert client.get(f"/v2/images/{image_id}/file").content == data


# ---------------------------------------------------------------- upload: refused data


def _assert_rolled_back(client, tmp_path: Path, image_id: str) -> None:  # noqa: ANN001
    image = _show(client, image_id)
    assert image["status"] == "queued"
    assert image["size"] is None and image["checksum"] is None
    assert _store_files(tmp_path) == []
    assert client.get(f"/v2/images/{image_id}/file").status_code == 204


def test_data_not_in_the_claimed_format_is_refused(client, tmp_path):
    for claimed in ("qcow2", "vmdk", "vhdx", "vdi", "vhd"):
        image_id = _create(client, disk_format=claimed)
        r = _put(client, image_id, os.urandom(200_000))
        assert r.status_code == 415, (claimed, r.text)
        assert "does not match" in r.text
        _assert_rolled_back(client, tmp_path, image_id)


def test_qcow2_claimed_as_raw_is_refused(client, tmp_path):
    data = make_disk(tmp_path, "qcow2").read_bytes()
    image_id = _create(client, disk_format="raw")
    # Stricter than Glance (which lets it through with a warning): docs/decisions/0001.
    r = _put(client, image_id, data)
    assert r.status_code == 415
    assert "does not match disk_format raw: it looks like qcow2" in r.json()["message"]
    _assert_rolled_back(client, tmp_path, image_id)


def test_refused_upload_can_be_retried(client, tmp_path):
    image_id = _create(client, disk_format="qcow2")
    assert _put(client, image_id, b"not a qcow2" * 100).status_code == 415
    good = make_disk(tmp_path, "qcow2").read_bytes()
    assert _put(client, image_id, good).status_code == 204
    assert _show(client, image_id)["status"] == "active"


def test_qcow2_with_backing_file_is_refused(client, tmp_path):
    base = make_disk(tmp_path, "qcow2", name="base.qcow2")
    top = make_disk(tmp_path, "qcow2", options=f"backing_file={base},backing_fmt=qcow2",
                    name="top.qcow2")
    image_id = _create(client, disk_format="qcow2")
    r = _put(client, image_id, top.read_bytes())
    assert r.status_code == 415
    assert "unsafe" in r.text
    _assert_rolled_back(client, tmp_path, image_id)


def test_upload_needs_both_formats(client, tmp_path):
    for missing in ("disk_format", "container_format"):
        image_id = _create(client, **{missing: None})
        r = _put(client, image_id, DATA)
        assert r.status_code == 400, missing
        assert missing in r.text
        _assert_rolled_back(client, tmp_path, image_id)


def test_upload_with_a_wrong_content_type_is_415(client, tmp_path):
    image_id = _create(client)
    r = client.put(f"/v2/images/{image_id}/file", content=DATA,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    _assert_rolled_back(client, tmp_path, image_id)


# ---------------------------------------------------------------- upload: status, access


def test_upload_to_active_image_is_409(client, tmp_path):
    image_id = _active_image(client)
    r = _put(client, image_id, b"other data")
    assert r.status_code == 409
    assert client.get(f"/v2/images/{image_id}/file").content == DATA
    assert _store_files(tmp_path) == [image_id]


def test_upload_to_deactivated_image_is_409(client):
    image_id = _active_image(client)
    assert client.post(f"/v2/images/{image_id}/actions/deactivate").status_code == 204
    assert _put(client, image_id, b"other").status_code == 409


def test_upload_to_unknown_image_is_404(client):
    assert _put(client, "3c6b4b5e-8a73-4a0e-b0b7-000000000000", DATA).status_code == 404


def test_upload_by_another_project_is_404(client, tmp_path):
    image_id = _create(client, as_project("p-owner"), visibility="private")
    r = _put(client, image_id, DATA, as_project("p-other"))
    assert r.status_code == 404
    _assert_rolled_back(client, tmp_path, image_id)


def test_upload_by_a_member_is_403(client, tmp_path):
    owner, member = as_project("p-owner"), as_project("p-member")
    image_id = _create(client, owner, visibility="shared")
    r = client.post(f"/v2/images/{image_id}/members", json={"member": "p-member"},
                    headers=owner)
    assert r.status_code == 200, r.text
    r = client.put(f"/v2/images/{image_id}/members/p-member", json={"status": "accepted"},
                   headers=member)
    assert r.status_code == 200, r.text
    assert client.get(f"/v2/images/{image_id}", headers=member).status_code == 200
    assert _put(client, image_id, DATA, member).status_code == 403
    _assert_rolled_back(client, tmp_path, image_id)
    assert _put(client, image_id, DATA, owner).status_code == 204


def test_reader_cannot_upload(client):
    image_id = _create(client, as_project("p-owner"))
    assert _put(client, image_id, DATA, as_project("p-owner", roles="reader")).status_code == 403


def test_image_deleted_during_upload_is_410_and_leaves_no_data(client, tmp_path):
    image_id = _create(client)
    started, release = threading.Event(), threading.Event()
    outcome: dict[str, int] = {}

    def slow_body() -> Iterator[bytes]:
        yield b"x" * 100_000
        started.set()
        release.wait(timeout=20)
        yield b"y" * 100_000

    def upload() -> None:
        outcome["status"] = _put(client, image_id, slow_body()).status_code

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert started.wait(timeout=20)
        assert client.delete(f"/v2/images/{image_id}").status_code == 204
    finally:
        release.set()
        thread.join(timeout=30)
    assert outcome["status"] == 410
    assert client.get(f"/v2/images/{image_id}").status_code == 404
    assert _store_files(tmp_path) == []


# ---------------------------------------------------------------- upload: size cap, quota


def test_image_size_cap(app_factory, tmp_path):
    client = app_factory(image_size_cap=10_000)
    image_id = _create(client)
    r = _put(client, image_id, os.urandom(10_001))
    assert r.status_code == 413
    _assert_rolled_back(client, tmp_path, image_id)
    assert _put(client, image_id, os.urandom(10_000)).status_code == 204


def test_image_size_cap_with_chunked_body(app_factory, tmp_path):
    client = app_factory(image_size_cap=100_000)
    image_id = _create(client)

    def body() -> Iterator[bytes]:
        for _ in range(30):
            yield os.urandom(10_000)

    assert _put(client, image_id, body()).status_code == 413
    _assert_rolled_back(client, tmp_path, image_id)


def test_user_storage_quota_across_images(app_factory, tmp_path):
    kept: list[str] = []
    for quota in ("1KB", "1024", "1024B"):
        client = app_factory(user_storage_quota=quota)
        project = as_project(f"p-quota-{quota}")
        first = _active_image(client, b"a" * 600, project)
        kept.append(first)
        second = _create(client, project)
        r = _put(client, second, b"b" * 600, project)
        assert r.status_code == 413, quota
        _assert_rolled_back_for(client, tmp_path, second, project, keep=kept)
        assert _put(client, second, b"b" * 424, project).status_code == 204
        kept.append(second)
    # Another project has its own quota.
    other = as_project("p-other")
    assert _put(client, _create(client, other), b"c" * 1000, other).status_code == 204


def test_user_storage_quota_frees_up_after_delete(app_factory):
    client = app_factory(user_storage_quota="1KB")
    project = as_project("p-quota")
    first = _active_image(client, b"a" * 1000, project)
    second = _create(client, project)
    assert _put(client, second, b"b" * 1000, project).status_code == 413
    assert client.delete(f"/v2/images/{first}", headers=project).status_code == 204
    assert _put(client, second, b"b" * 1000, project).status_code == 204


def _assert_rolled_back_for(client, tmp_path: Path, image_id: str, headers: dict[str, str],  # noqa: ANN001
                            keep: list[str]) -> None:
    image = client.get(f"/v2/images/{image_id}", headers=headers).json()
    assert image["status"] == "queued" and image["size"] is None
    assert _store_files(tmp_path) == sorted(keep)


# ---------------------------------------------------------------- download


def test_download_whole(client):
    image_id = _active_image(client)
    r = client.get(f"/v2/images/{image_id}/file")
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
    assert r.headers["content-length"] == str(len(DATA))
    assert "content-range" not in r.headers


def test_download_of_a_large_image_streams_identical_bytes(client):
    data = os.urandom(3 * 1024 * 1024 + 17)
    image_id = _active_image(client, data)
    with client.stream("GET", f"/v2/images/{image_id}/file") as r:
        assert r.status_code == 200
        pieces = list(r.iter_raw())
    assert b"".join(pieces) == data


def test_large_upload_in_odd_pieces_hashes_and_serves_ranges(client):
    """The large-chunk path: the body is regrouped into multi-MiB chunks hashed in
    parallel threads, and read back in chunks of the store's read size; digests,
    whole downloads and ranges across chunk boundaries must all be exact."""
    from glimpse.stores.file import READ_SIZE

    data = os.urandom(2 * READ_SIZE + 5 * 1024 * 1024 + 333)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 100_003):
            yield data[start:start + 100_003]

    image_id = _create(client)
    r = _put(client, image_id, pieces(), {"Content-Length": str(len(data))})
    assert r.status_code == 204, r.text
    image = _show(client, image_id)
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert client.get(f"/v2/images/{image_id}/file").content == data
    size = len(data)
    for start, end in [(READ_SIZE - 10, READ_SIZE + 10), (1, 2 * READ_SIZE + 1),
                       (size - 1, size - 1), (0, size - 1), (READ_SIZE, size - 1)]:
        r = client.get(f"/v2/images/{image_id}/file", headers={"Range": f"bytes={start}-{end}"})
        assert r.status_code == 206
        assert r.content == data[start:end + 1], (start, end)
        assert r.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert r.headers["content-md5"] == hashlib.md5(data).hexdigest()
    r = client.get(f"/v2/images/{image_id}/file", headers={"Range": f"bytes=-{READ_SIZE + 1}"})
    assert r.status_code == 206 and r.content == data[-(READ_SIZE + 1):]


def test_download_of_queued_image_is_204(client):
    image_id = _create(client)
    r = client.get(f"/v2/images/{image_id}/file")
    assert r.status_code == 204
    assert r.content == b""


def test_download_by_another_project_is_404(client):
    image_id = _active_image(client, headers=as_project("p-owner"), visibility="private")
    r = client.get(f"/v2/images/{image_id}/file", headers=as_project("p-other"))
    assert r.status_code == 404


def test_download_of_deactivated_image(client):
    owner = as_project("p-owner")
    image_id = _active_image(client, headers=owner)
    assert client.post(f"/v2/images/{image_id}/actions/deactivate").status_code == 204
    assert client.get(f"/v2/images/{image_id}/file", headers=owner).status_code == 403
    r = client.get(f"/v2/images/{image_id}/file")  # admin
    assert r.status_code == 200 and r.content == DATA
    assert client.post(f"/v2/images/{image_id}/actions/reactivate").status_code == 204
    assert client.get(f"/v2/images/{image_id}/file", headers=owner).content == DATA


RANGES = [
    ("bytes=0-9", 0, 9),
    ("bytes=10-", 10, len(DATA) - 1),
    ("bytes=-5", len(DATA) - 5, len(DATA) - 1),
    ("bytes=100-100", 100, 100),
    ("bytes=0-", 0, len(DATA) - 1),
    ("BYTES = 1-2", 1, 2),
    # Glance (webob) clamps an end beyond the data to the last byte.
    ("bytes=10200-99999", 10200, len(DATA) - 1),
    # A suffix longer than the data is the whole data.
    ("bytes=-99999", 0, len(DATA) - 1),
]

UNSATISFIABLE = [
    f"bytes={len(DATA)}-",          # starts at the end
    f"bytes={len(DATA) + 5}-{len(DATA) + 10}",
    "bytes=10-5",                   # end before start
    "bytes=-0",
    "bytes=abc",
    "bytes=",
    "bytes=-",
    "items=0-5",
    "0-5",
]


def test_range_download(client):
    image_id = _active_image(client)
    for header, start, end in RANGES:
        r = client.get(f"/v2/images/{image_id}/file", headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.content == DATA[start:end + 1], header
        assert r.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}", header
        assert r.headers["content-length"] == str(end - start + 1), header
        assert r.headers["content-type"] == "application/octet-stream"
        # Glance sends the whole image's checksum on partial responses too.
        assert r.headers["content-md5"] == hashlib.md5(DATA).hexdigest()


def test_unsatisfiable_range_is_416(client):
    image_id = _active_image(client)
    for header in UNSATISFIABLE:
        r = client.get(f"/v2/images/{image_id}/file", headers={"Range": header})
        assert r.status_code == 416, (header, r.text)
        assert r.headers["content-range"] == f"bytes */{len(DATA)}", header


def test_multiple_ranges_are_400(client):
    """Glance refuses multi-range requests with 400 (one range per request)."""
    image_id = _active_image(client)
    r = client.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 400


def test_range_on_queued_image_is_204(client):
    image_id = _create(client)
    r = client.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=0-9"})
    assert r.status_code == 204


def test_range_on_empty_image_is_416(client):
    image_id = _active_image(client, b"")
    r = client.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=0-9"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */0"


def test_legacy_content_range_request_header(client):
    """Glance still honours a Content-Range header on GET for old clients."""
    image_id = _active_image(client)
    r = client.get(f"/v2/images/{image_id}/file",
                   headers={"Content-Range": f"bytes 3-10/{len(DATA)}"})
    assert r.status_code == 206
    assert r.content == DATA[3:11]
    assert r.headers["content-range"] == f"bytes 3-10/{len(DATA)}"
    r = client.get(f"/v2/images/{image_id}/file",
                   headers={"Content-Range": f"bytes {len(DATA)}-{len(DATA) + 1}/*"})
    assert r.status_code == 416


# ---------------------------------------------------------------- live server: disconnects


def _live_files(server) -> list[str]:  # noqa: ANN001
    path = server.data_dir / "images"
    return sorted(os.listdir(path)) if path.exists() else []


def test_client_disconnect_mid_upload_leaves_nothing(tmp_path):
    """Runs once, on the server's embedded SQLite: what is under test is uvicorn's
    disconnect reaching the store and the rollback; the rollback's SQL is covered on
    every database by the refused-upload tests above."""
    server = start_server(tmp_path)
    # One client for every poll below (each new client loads the CA bundle).
    poller = httpx.Client(timeout=10, trust_env=False)
    try:
        r = poller.post(server.url + "/v2/images", json={
            "name": "cut", "disk_format": "raw", "container_format": "bare"})
        assert r.status_code == 201
        image_id = r.json()["id"]
        host, port = server.url.removeprefix("http://").split(":")
        sent = 3 * 1024 * 1024
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall((
                f"PUT /v2/images/{image_id}/file HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {100 * 1024 * 1024}\r\n"
                "\r\n").encode())
            sock.sendall(os.urandom(sent))
            # Give the server time to start writing, then vanish.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = poller.get(f"{server.url}/v2/images/{image_id}").json()["status"]
                if status == "saving":
                    break
                time.sleep(0.05)
            assert status == "saving"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            image = poller.get(f"{server.url}/v2/images/{image_id}").json()
            if image["status"] == "queued" and _live_files(server) == []:
                break
            time.sleep(0.1)
        assert image["status"] == "queued", image
        assert image["size"] is None and image["checksum"] is None
        assert _live_files(server) == []
        # The server is healthy and the image can be uploaded afterwards.
        r = poller.put(f"{server.url}/v2/images/{image_id}/file", content=DATA, headers=OCTET)
        assert r.status_code == 204
        assert _live_files(server) == [image_id]
    finally:
        poller.close()
        server.stop()
