"""The API-node image cache on GET /v2/images/{id}/file (issue 16).

Real parts only: a real file store under the test's directory, a real database
(SQLite, PostgreSQL, MariaDB), the ASGI app. The one instrument is a wrapper
counting the store's reads (tests/cache: "one back-end read"), which passes the
real store's data through unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from glimpse.cache import core as cache_core
from tests.conftest import as_project

MiB = 1024 * 1024
ADMIN = {"X-Roles": "admin,member,reader", "X-Project-Id": "admin-project",
         "X-User-Id": "admin-user", "X-Identity-Status": "Confirmed"}
DRIVERS = ["centralized_db", "sqlite", "xattr"]


def _cache_conf(tmp_path: Path, **extra: object) -> dict[str, object]:
    values: dict[str, object] = {"image_cache_dir": str(tmp_path / "cache"),
                                 "image_cache_min_free_space": "0"}
    values.update(extra)
    return values


def _image(client, data: bytes, **doc: object) -> str:  # noqa: ANN001
    body = {"name": "cached", "disk_format": "raw", "container_format": "bare", **doc}
    image_id = client.post("/v2/images", json=body, headers=ADMIN).json()["id"]
    resp = client.put(f"/v2/images/{image_id}/file", content=data,
                      headers={**ADMIN, "Content-Type": "application/octet-stream"})
    assert resp.status_code == 204, resp.text
    return image_id


def _store_file(tmp_path: Path, image_id: str) -> Path:
    found = [p for p in (tmp_path / "data").rglob(image_id) if p.is_file()]
    assert len(found) == 1, found
    return found[0]


def _runtime(client):  # noqa: ANN001, ANN202
    return client.app.state.runtime


class CountingReads:
    """Counts the store reads of one runtime (data passes through unchanged);
    ``delay`` slows each chunk so that concurrent requests overlap."""

    def __init__(self, rt, delay: float = 0.0):  # noqa: ANN001
        self.calls: list[tuple[int, int | None]] = []
        self.delay = delay
        self._lock = threading.Lock()
        registry = rt.stores
        real_for_url = registry.for_url

        def for_url(url: str):  # noqa: ANN202
            store = real_for_url(url)
            counter = self

            class Counted:
                def __getattr__(self, name: str):  # noqa: ANN204
                    return getattr(store, name)

                def get(self, url: str, offset: int = 0, length: int | None = None,
                        creds=None) -> Iterator[bytes]:  # noqa: ANN001
                    with counter._lock:
                        counter.calls.append((offset, length))
                    for chunk in store.get(url, offset, length, creds):
                        if counter.delay:
                            time.sleep(counter.delay)
                        yield chunk

            return Counted()

        registry.for_url = for_url


@pytest.fixture(params=DRIVERS)
def cached_client(request: pytest.FixtureRequest, app_factory, tmp_path: Path):  # noqa: ANN001, ANN201
    return app_factory(**_cache_conf(tmp_path, image_cache_driver=request.param))


# ---------------------------------------------------------------- hit / miss / tee


def test_miss_tees_into_the_cache_and_a_hit_needs_no_store(cached_client, tmp_path):
    client = cached_client
    data = os.urandom(5 * MiB + 123)
    image_id = _image(client, data)
    reads = CountingReads(_runtime(client))
    first = client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert first.status_code == 200 and first.content == data
    assert first.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert first.headers["content-length"] == str(len(data))
    cached = tmp_path / "cache" / image_id
    assert cached.read_bytes() == data
    assert not (tmp_path / "cache" / "incomplete" / image_id).exists()
    assert len(reads.calls) == 1

    # The store's object disappears: a hit is served from the local copy alone.
    _store_file(tmp_path, image_id).unlink()
    for _ in range(2):
        hit = client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
        assert hit.status_code == 200 and hit.content == data
        assert hit.headers["content-md5"] == hashlib.md5(data).hexdigest()
        assert hit.headers["content-length"] == str(len(data))
    assert len(reads.calls) == 1
    state = client.get("/v2/cache", headers=ADMIN).json()
    [entry] = state["cached_images"]
    assert entry["image_id"] == image_id and entry["size"] == len(data)
    assert entry["hits"] == 2 and entry["last_accessed"] >= entry["last_modified"]
    assert state["queued_images"] == []


def test_a_copy_is_on_disk_before_it_is_committed(app_factory, tmp_path, monkeypatch):
    """The fill's fdatasync comes before the rename that commits the copy, and it is of
    the file being committed (a power cut must not leave a committed copy with pages
    missing); the background flushes of a large fill all finish before either."""
    monkeypatch.setattr("glimpse.stores.file.FLUSH_EVERY", 1 * MiB)
    client = app_factory(**_cache_conf(tmp_path))
    data = os.urandom(3 * MiB + 5)
    image_id = _image(client, data)
    events: list[tuple[str, object]] = []
    real_sync, real_replace = os.fdatasync, os.replace
    partial = tmp_path / "cache" / "incomplete" / image_id

    def fdatasync(fd: int) -> None:
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(partial))
        except FileNotFoundError:
            same = False
        events.append(("sync", same))
        real_sync(fd)

    def replace(src, dst) -> None:  # noqa: ANN001
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(cache_core.os, "fdatasync", fdatasync)
    monkeypatch.setattr(cache_core.os, "replace", replace)
    import glimpse.stores.file as file_store
    monkeypatch.setattr(file_store.os, "fdatasync", fdatasync)
    got = client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert got.status_code == 200 and got.content == data
    for _ in range(100):
        if (tmp_path / "cache" / image_id).exists():
            break
        time.sleep(0.05)
    commit = events.index(("replace", str(tmp_path / "cache" / image_id)))
    syncs = [same for kind, same in events[:commit] if kind == "sync"]
    assert len(syncs) >= 2, events  # flushes behind, then the one before the rename
    assert all(syncs), events  # all of them of the copy being committed
    assert (tmp_path / "cache" / image_id).read_bytes() == data


def test_a_copy_committed_meanwhile_is_served_not_copied_again(app_factory, tmp_path):
    """A read that found no copy, then a fill that another worker commits before this
    one takes the fill's lock: the committed copy is served, the store is not read,
    and no empty partial file is left behind."""
    client = app_factory(**_cache_conf(tmp_path))
    data = os.urandom(1 * MiB + 7)
    image_id = _image(client, data)
    cache = _runtime(client).cache
    (tmp_path / "cache" / image_id).write_bytes(data)  # the other worker's commit
    opened: list[bool] = []

    def read() -> Iterator[bytes]:
        opened.append(True)
        yield data

    source = cache_core.FillSource(image_id, len(data), hashlib.md5(data).hexdigest(), read)
    assert cache._fill(source) is None
    assert opened == []
    assert not (tmp_path / "cache" / "incomplete" / image_id).exists()
    # The fill slot was given back: as many fills as allowed can still start.
    slots = cache._slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    for _ in range(taken):
        slots.release()
    assert taken == _runtime(client).conf.image_cache_max_concurrent_fills


def test_corrupted_store_object_is_never_committed_nor_served_as_good(
        cached_client, tmp_path, caplog):
    client = cached_client
    data = os.urandom(3 * MiB)
    image_id = _image(client, data)
    stored = _store_file(tmp_path, image_id)
    bad = bytearray(data)
    bad[-10] ^= 0xFF  # same size, one flipped byte near the end
    stored.write_bytes(bytes(bad))
    caplog.set_level(logging.WARNING, logger="glimpse.cache")
    received = bytearray()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the response breaks off
        with client.stream("GET", f"/v2/images/{image_id}/file", headers=ADMIN) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_bytes():
                received.extend(chunk)
    # The client never got the whole (bad) object.
    assert len(received) < len(data)
    assert not (tmp_path / "cache" / image_id).exists()
    assert (tmp_path / "cache" / "invalid" / image_id).exists()
    assert any("does not match the image record" in r.getMessage() for r in caplog.records)
    assert client.get("/v2/cache", headers=ADMIN).json()["cached_images"] == []
    # Cleaning removes the invalid copy.
    assert client.post("/v2/cache/clean", headers=ADMIN).status_code == 200
    assert not (tmp_path / "cache" / "invalid" / image_id).exists()


def test_fifty_concurrent_misses_read_the_store_once(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path))
    data = os.urandom(4 * MiB)
    image_id = _image(client, data)
    reads = CountingReads(_runtime(client), delay=0.05)  # 2 MiB chunks: ~0.1 s per fill
    barrier = threading.Barrier(50)

    def fetch(_n: int) -> bytes:
        barrier.wait()
        resp = client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
        assert resp.status_code == 200
        return resp.content

    with ThreadPoolExecutor(50) as pool:
        bodies = list(pool.map(fetch, range(50)))
    assert all(body == data for body in bodies)
    assert reads.calls == [(0, len(data))]  # the whole image, once
    assert (tmp_path / "cache" / image_id).read_bytes() == data


def test_a_range_is_served_from_a_copy_and_never_starts_a_fill(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path))
    data = os.urandom(MiB)
    image_id = _image(client, data)
    reads = CountingReads(_runtime(client))
    part = client.get(f"/v2/images/{image_id}/file",
                      headers={**ADMIN, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert not (tmp_path / "cache" / image_id).exists()
    assert reads.calls == [(100, 100)]
    client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert len(reads.calls) == 2
    part = client.get(f"/v2/images/{image_id}/file",
                      headers={**ADMIN, "Range": "bytes=-50"})
    assert part.status_code == 206 and part.content == data[-50:]
    assert part.headers["content-range"] == f"bytes {len(data) - 50}-{len(data) - 1}/{len(data)}"
    assert len(reads.calls) == 2  # from the copy


def test_deactivated_image_is_served_from_the_cache_to_admins_only(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path))
    data = os.urandom(MiB)
    owner = "owner-project"
    image_id = client.post("/v2/images", json={
        "name": "d", "disk_format": "raw", "container_format": "bare"},
        headers=as_project(owner)).json()["id"]
    client.put(f"/v2/images/{image_id}/file", content=data,
               headers={**as_project(owner), "Content-Type": "application/octet-stream"})
    assert client.get(f"/v2/images/{image_id}/file", headers=as_project(owner)).content == data
    assert (tmp_path / "cache" / image_id).exists()
    assert client.post(f"/v2/images/{image_id}/actions/deactivate",
                       headers=ADMIN).status_code == 204
    assert client.get(f"/v2/images/{image_id}/file",
                      headers=as_project(owner)).status_code == 403
    assert client.get(f"/v2/images/{image_id}/file", headers=ADMIN).content == data


def test_delete_evicts_the_copy(cached_client, tmp_path):
    client = cached_client
    data = os.urandom(MiB)
    image_id = _image(client, data)
    client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert (tmp_path / "cache" / image_id).exists()
    assert client.delete(f"/v2/images/{image_id}", headers=ADMIN).status_code == 204
    assert not (tmp_path / "cache" / image_id).exists()
    assert client.get("/v2/cache", headers=ADMIN).json()["cached_images"] == []
    assert client.get(f"/v2/images/{image_id}/file", headers=ADMIN).status_code == 404


def test_cleaner_drops_copies_of_images_deleted_through_another_node(app_factory, tmp_path):
    node_a = app_factory(**_cache_conf(tmp_path, worker_self_reference_url="http://a"))
    node_b = app_factory(**_cache_conf(tmp_path / "b", worker_self_reference_url="http://b"))
    data = os.urandom(MiB)
    image_id = _image(node_a, data)
    assert node_b.get(f"/v2/images/{image_id}/file", headers=ADMIN).content == data
    assert (tmp_path / "b" / "cache" / image_id).exists()
    node_a.delete(f"/v2/images/{image_id}", headers=ADMIN)
    # Node b never serves it (the image is gone) and its cleaner removes the copy.
    assert node_b.get(f"/v2/images/{image_id}/file", headers=ADMIN).status_code == 404
    node_b.post("/v2/cache/clean", headers=ADMIN)
    assert not (tmp_path / "b" / "cache" / image_id).exists()


# ---------------------------------------------------------------- limits


def test_pruning_keeps_the_cache_under_max_size_least_recently_used_first(
        cached_client, tmp_path):
    client = cached_client
    rt = _runtime(client)
    rt.cache.max_size = 5 * MiB  # room for two 2 MiB images, not three
    ids = [_image(client, os.urandom(2 * MiB)) for _ in range(3)]
    client.get(f"/v2/images/{ids[0]}/file", headers=ADMIN)
    time.sleep(0.01)
    client.get(f"/v2/images/{ids[1]}/file", headers=ADMIN)
    time.sleep(0.01)
    client.get(f"/v2/images/{ids[0]}/file", headers=ADMIN)  # a hit: 0 is now the newest
    time.sleep(0.01)
    client.get(f"/v2/images/{ids[2]}/file", headers=ADMIN)  # makes room: 1 goes
    cached = {e["image_id"] for e in client.get("/v2/cache", headers=ADMIN).json()
              ["cached_images"]}
    assert cached == {ids[0], ids[2]}
    assert not (tmp_path / "cache" / ids[1]).exists()
    # An explicit prune below the current size removes the oldest.
    rt.cache.max_size = 3 * MiB
    resp = client.post("/v2/cache/prune", headers=ADMIN)
    assert resp.status_code == 200
    assert resp.json() == {"total_files_pruned": 1, "total_bytes_pruned": 2 * MiB}
    cached = [e["image_id"] for e in client.get("/v2/cache", headers=ADMIN).json()
              ["cached_images"]]
    assert cached == [ids[2]]


def test_background_pruner_runs_without_any_request(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path, image_cache_prune_interval=1))
    rt = _runtime(client)
    ids = [_image(client, os.urandom(MiB)) for _ in range(2)]
    for image_id in ids:
        client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    rt.cache._pool.shutdown(wait=True)  # the fills are over: only the pruner can act
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(list(rt.cache.records.entries())) < 2:
        time.sleep(0.05)
    time.sleep(0.05)
    # A hit makes ids[1] the most recently used, whatever order the fills committed in.
    assert client.get(f"/v2/images/{ids[1]}/file", headers=ADMIN).status_code == 200
    rt.cache.start()
    rt.cache.max_size = MiB
    rt.cache.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
            (tmp_path / "cache" / ids[0]).exists() or len(rt.cache.records.entries()) > 1):
        time.sleep(0.1)
    left = [e.image_id for e in rt.cache.records.entries()]
    assert left == [ids[1]]
    assert not (tmp_path / "cache" / ids[0]).exists()


def test_no_fill_below_the_free_space_floor(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path, image_cache_min_free_space="100%"))
    data = os.urandom(MiB)
    image_id = _image(client, data)
    reads = CountingReads(_runtime(client))
    for _ in range(2):
        resp = client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
        assert resp.status_code == 200 and resp.content == data
    assert len(reads.calls) == 2  # each served from the store, nothing cached
    assert not (tmp_path / "cache" / image_id).exists()
    assert os.listdir(tmp_path / "cache" / "incomplete") == []


def test_floor_in_bytes_against_the_real_free_space(app_factory, tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    data = os.urandom(MiB)
    # A floor above what is free (with a margin: other processes share this disk).
    client = app_factory(**_cache_conf(tmp_path,
                                       image_cache_min_free_space=str(free + 4 * 1024**3)))
    image_id = _image(client, data)
    client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert not (tmp_path / "cache" / image_id).exists()
    # A floor well below it: cached.
    client = app_factory(**_cache_conf(tmp_path / "2", image_cache_min_free_space="1MB"))
    client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert (tmp_path / "2" / "cache" / image_id).exists()


def test_fills_at_once_are_limited(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path, image_cache_max_concurrent_fills=1))
    a, b = _image(client, os.urandom(4 * MiB)), _image(client, os.urandom(4 * MiB))
    reads = CountingReads(_runtime(client), delay=0.2)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(client.get, f"/v2/images/{i}/file", headers=ADMIN)
                   for i in (a, b)]
        assert all(f.result().status_code == 200 for f in futures)
    assert len(reads.calls) == 2
    cached = [i for i in (a, b) if (tmp_path / "cache" / i).exists()]
    assert len(cached) == 1  # the other was streamed from the store, uncached


def test_image_larger_than_the_cache_is_not_cached(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path, image_cache_max_size=MiB))
    image_id = _image(client, os.urandom(2 * MiB))
    assert client.get(f"/v2/images/{image_id}/file", headers=ADMIN).status_code == 200
    assert not (tmp_path / "cache" / image_id).exists()


def test_stalled_partial_copies_are_cleaned(app_factory, tmp_path):
    client = app_factory(**_cache_conf(tmp_path, image_cache_stall_time=60))
    stale = tmp_path / "cache" / "incomplete" / "0f0f0f0f-0000-4000-8000-000000000000"
    fresh = tmp_path / "cache" / "incomplete" / "0f0f0f0f-0000-4000-8000-000000000001"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 120
    os.utime(stale, (old, old))
    client.post("/v2/cache/clean", headers=ADMIN)
    assert not stale.exists() and fresh.exists()


def test_parse_floor() -> None:
    assert cache_core.parse_floor("5%", 1000) == 50
    assert cache_core.parse_floor("2GB", 0) == 2 * 1024**3
    assert cache_core.parse_floor("12345", 0) == 12345


def test_concurrent_hits_all_count(cached_client):
    client = cached_client
    data = os.urandom(256 * 1024)
    image_id = _image(client, data)
    client.get(f"/v2/images/{image_id}/file", headers=ADMIN)  # the fill

    def fetch(_n: int) -> bytes:
        return client.get(f"/v2/images/{image_id}/file", headers=ADMIN).content

    with ThreadPoolExecutor(20) as pool:
        assert all(body == data for body in pool.map(fetch, range(30)))
    [entry] = client.get("/v2/cache", headers=ADMIN).json()["cached_images"]
    assert entry["hits"] == 30


def _wait_filling(tmp_path: Path, image_id: str) -> None:
    """Until some worker's copy of the image is under way."""
    partial = tmp_path / "cache" / "incomplete" / image_id
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 0):
        assert time.monotonic() < deadline, "no fill started"
        time.sleep(0.005)


def test_two_workers_of_one_node_share_one_fill(app_factory, tmp_path):
    """Two runtimes on one cache directory stand for two worker processes of a node
    (the fill's lock is a flock, which two open files of one process contend for as
    two processes would): misses on both read the store once."""
    worker_a = app_factory(**_cache_conf(tmp_path))
    worker_b = app_factory(**_cache_conf(tmp_path))
    data = os.urandom(6 * MiB)
    image_id = _image(worker_a, data)
    # Slow enough that the followers, whose requests also wait on the database, find
    # the fill still running even on a loaded machine.
    reads_a = CountingReads(_runtime(worker_a), delay=0.4)
    reads_b = CountingReads(_runtime(worker_b), delay=0.4)
    started = threading.Event()

    def first() -> bytes:
        started.set()
        return worker_a.get(f"/v2/images/{image_id}/file", headers=ADMIN).content

    def later(client) -> bytes:  # noqa: ANN001
        started.wait()
        _wait_filling(tmp_path, image_id)
        return client.get(f"/v2/images/{image_id}/file", headers=ADMIN).content

    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(first)]
        futures += [pool.submit(later, c) for c in [worker_b] * 6 + [worker_a] * 2]
        assert all(f.result() == data for f in futures)
    assert len(reads_a.calls) + len(reads_b.calls) == 1
    assert (tmp_path / "cache" / image_id).read_bytes() == data


def test_a_worker_following_another_workers_failed_fill_never_completes(
        app_factory, tmp_path):
    worker_a = app_factory(**_cache_conf(tmp_path))
    worker_b = app_factory(**_cache_conf(tmp_path))
    data = os.urandom(4 * MiB)
    image_id = _image(worker_a, data)
    stored = _store_file(tmp_path, image_id)
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    CountingReads(_runtime(worker_a), delay=0.6)  # B must find A's fill running
    reads_b = CountingReads(_runtime(worker_b))
    started = threading.Event()

    def fetch(client, wait: bool) -> int:  # noqa: ANN001
        if wait:
            started.wait()
            _wait_filling(tmp_path, image_id)
        else:
            started.set()
        got = 0
        try:
            with client.stream("GET", f"/v2/images/{image_id}/file", headers=ADMIN) as resp:
                for chunk in resp.iter_bytes():
                    got += len(chunk)
        except Exception:  # noqa: BLE001 - the broken response is the point
            pass
        return got

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(fetch, worker_a, False)
        b = pool.submit(fetch, worker_b, True)
        assert a.result() < len(data) and b.result() < len(data)
    assert reads_b.calls == []
    assert not (tmp_path / "cache" / image_id).exists()
