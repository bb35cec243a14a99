"""copy-image between every pair of writable store kinds, driven by the real
``glance image-import --import-method copy-image --stores ...``, against the real
servers (Ceph RBD, S3 on Ceph RGW, S3 on SeaweedFS, Swift with tempauth) and a
file store, all enabled at once in one multi-store ``glimpse serve``.

For each kind one image is uploaded to that store only, then copied by the glance
CLI to the four others: 5 x 4 copies cover every ordered pair (a copy reads the
image's first location, the source store). Every copy is then read back with the
store's own driver, from its location, and hashed: md5 and sha512 must equal the
image's checksum / os_hash_value, which are those of the uploaded bytes.

``test_round_trip_per_driver`` sends one large image (1 GiB by default,
GLIMPSE_ROUND_TRIP_MIB to change it) through each writable driver: upload through
the API to that store, download through the API, same hashes. The data is made on
the fly (a random MiB, stamped with its index), never held whole in memory.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from glimpse.config import load_config
from glimpse.stores import registry
from tests.clients.conftest import GlanceCLI, find_program
from tests.conftest import LiveServer, start_server
from tests.stores.backends import BackendMissing, backend_env, get_driver, unavailable
from tests.stores.swift_s3_backends import remove_stale_test_data, unique_name

pytestmark = pytest.mark.clients

MIB = 1024 * 1024
STORES = ("local", "ceph", "rgw", "weed", "swift")
# Above every driver's part size below (rbd 1 MiB objects, s3 5 MiB parts, Swift
# segments from 8 MiB): every copy is written in parts (a 1 GiB one in 11 Swift
# segments: this Swift serves a DLO of many small segments at a few MiB/s).
DATA = os.urandom(9 * MIB + 12_345)
BLOCK = os.urandom(MIB)
ROUND_TRIP = int(os.environ.get("GLIMPSE_ROUND_TRIP_MIB", "1024")) * MIB


def _config(root: Path, env: dict[str, str], suffix: str) -> str:
    return f"""
enabled_backends = local:file, ceph:rbd, rgw:s3, weed:s3, swift:swift
show_multiple_locations = true
[glance_store]
default_backend = local
[local]
filesystem_store_datadir = {root / "local"}
[ceph]
rbd_store_pool = {env["CEPH_POOL"]}
rbd_store_user = {env["CEPH_USER"]}
rbd_store_ceph_conf = {env["CEPH_CONF"]}
rbd_store_chunk_size = 1
rados_connect_timeout = 30
[rgw]
s3_store_host = {env["S3_RGW_ENDPOINT"]}
s3_store_access_key = {env["S3_RGW_ACCESS_KEY"]}
s3_store_secret_key = {env["S3_RGW_SECRET_KEY"]}
s3_store_bucket = glimpse-copy-rgw-{suffix}
s3_store_create_bucket_on_put = true
s3_store_bucket_url_format = path
s3_store_large_object_size = 5
s3_store_large_object_chunk_size = 5
[weed]
s3_store_host = {env["S3_SEAWEEDFS_ENDPOINT"]}
s3_store_access_key = {env["S3_ACCESS_KEY"]}
s3_store_secret_key = {env["S3_SECRET_KEY"]}
s3_store_bucket = glimpse-copy-weed-{suffix}
s3_store_create_bucket_on_put = true
s3_store_bucket_url_format = path
s3_store_large_object_size = 5
s3_store_large_object_chunk_size = 5
[swift]
swift_store_auth_address = {env["SWIFT_AUTH_URL"]}
swift_store_user = {env["SWIFT_USER"]}
swift_store_key = {env["SWIFT_KEY"]}
swift_store_auth_version = 1
swift_store_container = glimpse-copy-{suffix}
swift_store_create_container_on_put = true
swift_store_large_object_chunk_size = 100
[os_glance_staging_store]
filesystem_store_datadir = {root / "staging"}
[os_glance_tasks_store]
filesystem_store_datadir = {root / "tasks"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with a store of every writable kind, each on its real server."""
    get_driver("rbd")  # Ceph up and its bindings importable in this venv
    env: dict[str, str] = {}
    for name in ("ceph", "s3-rgw", "s3-seaweedfs", "swift"):
        try:
            env.update(backend_env(name))
        except BackendMissing as exc:
            unavailable(str(exc))
    remove_stale_test_data()  # SeaweedFS has room for a bounded number of buckets
    root = tmp_path_factory.mktemp("copy-every-kind")
    suffix = unique_name("x", root).removeprefix("x-")
    live = start_server(root, f"sqlite:///{root / 'glimpse.sqlite'}", _config(root, env, suffix))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=600) as client:
        yield client


@pytest.fixture(scope="module")
def stores(server: LiveServer) -> registry.StoreRegistry:
    """The server's stores, built from its own configuration file, to read each copy
    directly from its back end."""
    conf = load_config(
        [str(server.data_dir / "glance-api.conf")], {"data_dir": str(server.data_dir)}
    )
    return registry.from_conf(conf)


def _new_image(api: httpx.Client, **extra: str) -> str:
    r = api.post("/v2/images", json={"disk_format": "raw", "container_format": "bare", **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _wait_copies(api: httpx.Client, image_id: str, want: set[str], timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        image = api.get(f"/v2/images/{image_id}").json()
        have = set(filter(None, image.get("stores", "").split(",")))
        if have == want and not image.get("os_glance_importing_to_stores"):
            return image
        assert not image.get("os_glance_failed_import"), image
        assert time.monotonic() < deadline, f"copies of {image_id} stopped at {image}"
        time.sleep(0.3)


def _hashes(chunks: Iterator[bytes]) -> tuple[str, str, int]:
    md5, sha512, size = hashlib.md5(), hashlib.sha512(), 0  # noqa: S324 - Glance's checksum
    for chunk in chunks:
        md5.update(chunk)
        sha512.update(chunk)
        size += len(chunk)
    return md5.hexdigest(), sha512.hexdigest(), size


@pytest.mark.parametrize("source", STORES)
def test_copy_image_from_each_kind_to_every_other(server, api, stores, source):
    glance = GlanceCLI(find_program("glance"), server.url)
    image_id = _new_image(api, name=f"copy-from-{source}")
    r = api.put(
        f"/v2/images/{image_id}/file",
        content=DATA,
        headers={"Content-Type": "application/octet-stream", "X-Image-Meta-Store": source},
    )
    assert r.status_code == 204, r.text
    assert api.get(f"/v2/images/{image_id}").json()["stores"] == source
    targets = [s for s in STORES if s != source]

    glance.run(
        "image-import", image_id, "--import-method", "copy-image", "--stores", ",".join(targets)
    )
    image = _wait_copies(api, image_id, set(STORES))
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()  # noqa: S324
    assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    tasks = api.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
    assert [t["status"] for t in tasks] == ["success"], tasks

    by_store = {loc["metadata"]["store"]: loc["url"] for loc in image["locations"]}
    assert set(by_store) == set(STORES)
    assert image["locations"][0]["metadata"]["store"] == source  # what the copies read
    for name, url in by_store.items():
        md5, sha512, size = _hashes(stores.get(name).get(url))
        assert (md5, sha512, size) == (image["checksum"], image["os_hash_value"], len(DATA)), (
            f"copy in {name} differs"
        )

    assert api.delete(f"/v2/images/{image_id}").status_code == 204
    for name, url in by_store.items():
        left = [e.url for e in stores.get(name).list_data()]
        assert url not in left, f"{name} still holds {url}"


def _generated(size: int) -> Iterator[bytes]:
    """``size`` bytes: one random MiB, each MiB stamped with its index (no two alike)."""
    block = bytearray(BLOCK)
    sent = 0
    while sent < size:
        block[:8] = (sent // MIB).to_bytes(8, "big")
        piece = bytes(block[: min(MIB, size - sent)])
        sent += len(piece)
        yield piece


@pytest.fixture(scope="module")
def round_trip_hashes() -> tuple[str, str]:
    md5, sha512, _ = _hashes(_generated(ROUND_TRIP))
    return md5, sha512


@pytest.mark.parametrize("store", STORES)
def test_round_trip_per_driver(api, store, round_trip_hashes, capsys):
    md5, sha512 = round_trip_hashes
    image_id = _new_image(api, name=f"round-trip-{store}")
    start = time.monotonic()
    r = api.put(
        f"/v2/images/{image_id}/file",
        content=_generated(ROUND_TRIP),
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(ROUND_TRIP),
            "X-Image-Meta-Store": store,
        },
    )
    up = time.monotonic() - start
    assert r.status_code == 204, r.text
    image = api.get(f"/v2/images/{image_id}").json()
    assert image["stores"] == store
    assert (image["checksum"], image["os_hash_value"], image["size"]) == (md5, sha512, ROUND_TRIP)
    start = time.monotonic()
    with api.stream("GET", f"/v2/images/{image_id}/file") as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-MD5"] == md5
        got = _hashes(resp.iter_raw(4 * MIB))
    down = time.monotonic() - start
    assert got == (md5, sha512, ROUND_TRIP)
    assert api.delete(f"/v2/images/{image_id}").status_code == 204
    with capsys.disabled():
        print(f"\n{store}: {ROUND_TRIP // MIB} MiB up {up:.1f} s, down {down:.1f} s")
