"""The swift and s3 stores through the API of a live ``glimpse serve``, against the
real servers scripts/backends/*.sh start: a 1 GiB round trip with identical hashes,
locations without credentials, and a store that cannot be reached answering 503."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import as_project, free_port, start_server
from tests.stores import swift_s3_backends as backends

MIB = 1024 * 1024
# The round trip's size; CI runs the full 1 GiB (GLIMPSE_TEST_BIG_MIB makes it smaller
# for a quick local run).
BIG_MIB = int(os.environ.get("GLIMPSE_TEST_BIG_MIB", "1024"))
BIG_DEADLINE = 600  # seconds for upload plus download, far above what either takes


def _section(kind: str, tmp_path, **extra: object) -> str:  # noqa: ANN001
    if kind == "s3":
        env = backends.backend_env("seaweedfs")
        options = {"s3_store_host": env["S3_SEAWEEDFS_ENDPOINT"],
                   "s3_store_access_key": env["S3_ACCESS_KEY"],
                   "s3_store_secret_key": env["S3_SECRET_KEY"],
                   "s3_store_bucket": backends.unique_name("glimpse", tmp_path),
                   "s3_store_create_bucket_on_put": True,
                   "s3_store_bucket_url_format": "path"}
    else:
        env = backends.backend_env("swift")
        options = {"swift_store_auth_address": env["SWIFT_AUTH_URL"],
                   "swift_store_user": env["SWIFT_USER"], "swift_store_key": env["SWIFT_KEY"],
                   "swift_store_auth_version": 1,
                   "swift_store_container": backends.unique_name("glimpse", tmp_path),
                   "swift_store_create_container_on_put": True}
    options.update(extra)
    body = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
                     for k, v in options.items())
    return (f"enabled_backends = objects:{kind}\nshow_multiple_locations = true\n"
            f"show_image_direct_url = true\n[glance_store]\ndefault_backend = objects\n"
            f"[objects]\n{body}\n")


def _secrets(kind: str) -> list[str]:
    if kind == "s3":
        env = backends.backend_env("seaweedfs")
        return [env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]]
    return [backends.backend_env("swift")["SWIFT_KEY"]]


def _create(api: httpx.Client) -> str:
    r = api.post("/v2/images", json={"name": "big", "disk_format": "raw",
                                     "container_format": "bare"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("kind", ["s3", "swift"])
def test_big_image_round_trip_keeps_its_hashes(kind, tmp_path):
    """Glance's default part and segment sizes (s3: 10 MB parts above 100 MB; swift:
    200 MB segments), 1 GiB of data, through PUT and GET /v2/images/{id}/file."""
    server = start_server(tmp_path, config_text=_section(kind, tmp_path))
    try:
        api = httpx.Client(base_url=server.url, timeout=120,
                           headers={"Accept": "application/json"})
        image_id = _create(api)
        md5, sha512 = hashlib.md5(), hashlib.sha512()
        block = os.urandom(MIB)

        def data() -> Iterator[bytes]:
            for i in range(BIG_MIB):
                piece = block[i % 251:] + block[:i % 251]  # every MiB different
                md5.update(piece)
                sha512.update(piece)
                yield piece

        started = time.monotonic()
        r = api.put(f"/v2/images/{image_id}/file", content=data(),
                    headers={"Content-Type": "application/octet-stream"})
        uploaded = time.monotonic()
        assert r.status_code == 204, r.text
        image = api.get(f"/v2/images/{image_id}").json()
        assert image["status"] == "active" and image["size"] == BIG_MIB * MIB
        assert image["checksum"] == md5.hexdigest()
        assert image["os_hash_algo"] == "sha512"
        assert image["os_hash_value"] == sha512.hexdigest()
        assert image["stores"] == "objects"

        down_md5, down_sha512, size = hashlib.md5(), hashlib.sha512(), 0
        with api.stream("GET", f"/v2/images/{image_id}/file") as r:
            assert r.status_code == 200
            assert r.headers["content-md5"] == md5.hexdigest()
            for piece in r.iter_bytes():
                size += len(piece)
                down_md5.update(piece)
                down_sha512.update(piece)
        done = time.monotonic()
        assert size == BIG_MIB * MIB
        assert down_md5.hexdigest() == md5.hexdigest()
        assert down_sha512.hexdigest() == sha512.hexdigest()
        assert done - started < BIG_DEADLINE
        print(f"\n{kind}: {BIG_MIB} MiB up {BIG_MIB / (uploaded - started):.0f} MiB/s, "
              f"down {BIG_MIB / (done - uploaded):.0f} MiB/s")

        url = image["direct_url"]
        assert all(secret not in url for secret in _secrets(kind))
        if kind == "s3":
            store = backends.make_s3(tmp_path)
            assert backends.s3_client().head_object(
                Bucket=store.bucket, Key=image_id)["ETag"].strip('"').endswith(
                f"-{-(-BIG_MIB // 10)}")  # multipart, in 10 MiB parts
        else:
            store = backends.make_swift(tmp_path)
            segments = [n for n in backends.swift_leftovers(store) if n != image_id]
            assert len(segments) == -(-BIG_MIB // 200)  # 200 MiB segments and a manifest
        assert api.delete(f"/v2/images/{image_id}").status_code == 204
        assert backends.s3_leftovers(store) == [] if kind == "s3" else \
            backends.swift_leftovers(store) == []
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["s3", "swift"])
def test_api_shows_locations_without_credentials(kind, tmp_path, db_url):
    server = start_server(tmp_path, db_url, config_text=_section(kind, tmp_path))
    try:
        api = httpx.Client(base_url=server.url, timeout=60,
                           headers={"Accept": "application/json"})
        image_id = _create(api)
        r = api.put(f"/v2/images/{image_id}/file", content=b"x" * 4096,
                    headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 204, r.text
        shown = api.get(f"/v2/images/{image_id}")
        image = shown.json()
        assert image["locations"][0]["url"] == image["direct_url"]
        assert image["direct_url"].startswith("s3://" if kind == "s3" else "swift+http://")
        for secret in _secrets(kind):
            assert secret not in shown.text
        assert api.get(f"/v2/images/{image_id}/file").content == b"x" * 4096
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["s3", "swift"])
def test_upload_to_an_unreachable_store_is_503_and_the_image_stays_queued(kind, tmp_path,
                                                                         db_url):
    dead = f"http://127.0.0.1:{free_port()}"
    extra = ({"s3_store_host": dead} if kind == "s3"
             else {"swift_store_auth_address": dead + "/auth/v1.0"})
    server = start_server(tmp_path, db_url, config_text=_section(kind, tmp_path, **extra))
    try:
        api = httpx.Client(base_url=server.url, timeout=120,
                           headers={"Accept": "application/json"})
        image_id = _create(api)
        r = api.put(f"/v2/images/{image_id}/file", content=b"x" * 4096,
                    headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 503, r.text
        assert api.get(f"/v2/images/{image_id}").json()["status"] == "queued"
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["s3", "swift"])
def test_stores_detail_shows_glances_properties(kind, tmp_path, db_url):
    extra = ({"s3_store_large_object_size": 50, "s3_store_large_object_chunk_size": 8,
              "s3_store_thread_pools": 4} if kind == "s3" else
             {"swift_store_large_object_size": 300, "swift_store_large_object_chunk_size": 30})
    server = start_server(tmp_path, db_url, config_text=_section(kind, tmp_path, **extra))
    try:
        r = httpx.get(server.url + "/v2/info/stores/detail", timeout=30,
                      headers={"Accept": "application/json",
                               **as_project("admin-project", roles="admin,member,reader")})
        assert r.status_code == 200, r.text
        (store,) = r.json()["stores"]
        assert store["id"] == "objects" and store["type"] == kind
        if kind == "s3":
            assert store["properties"] == {"s3_store_large_object_size": 50 * MIB,
                                           "s3_store_large_object_chunk_size": 8 * MIB,
                                           "s3_store_thread_pools": 4}
        else:
            assert store["properties"] == {
                "container": backends.unique_name("glimpse", tmp_path),
                "large_object_size": 300 * MIB, "large_object_chunk_size": 30 * MIB}
        for secret in _secrets(kind):
            assert secret not in r.text
    finally:
        server.stop()
