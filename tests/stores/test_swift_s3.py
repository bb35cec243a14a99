"""What the swift and s3 drivers do beyond the conformance suite, against the real
servers (Swift with tempauth, SeaweedFS S3) that scripts/backends/*.sh start."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from oslo_config import cfg

from glimpse.config import load_config
from glimpse.stores import registry
from glimpse.stores.base import DataNotFound, StoreError, StoreForbidden, StoreUnavailable
from glimpse.stores.s3 import S3Store
from glimpse.stores.swift import SwiftStore
from tests.conftest import free_port
from tests.stores import swift_s3_backends as backends

MIB = 1024 * 1024


def _chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _read(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


class Boom(Exception):
    pass


def _failing(data: bytes) -> Iterator[bytes]:
    yield from _chunks(data)
    raise Boom("client went away")


def _conf(tmp_path: Path, text: str) -> cfg.ConfigOpts:
    path = tmp_path / "glance-api.conf"
    path.write_text(text)
    return load_config([str(path)], {"data_dir": str(tmp_path / "data")})


# ================================================================ S3


def test_s3_multipart_above_the_part_size_and_ranges_across_parts(tmp_path):
    store = backends.make_s3(tmp_path)
    data = os.urandom(12 * MIB + 7)
    stored = store.add("img-multi", _chunks(data))
    assert stored.size == len(data)
    head = backends.s3_client().head_object(Bucket=store.bucket, Key="img-multi")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert _read(store.get(stored.url)) == data
    boundary = 5 * MIB
    for offset, length in [(boundary - 3, 6), (boundary, 1), (2 * boundary - 1, MIB),
                           (len(data) - 5, None)]:
        end = None if length is None else offset + length
        assert _read(store.get(stored.url, offset, length)) == data[offset:end]


def test_s3_small_data_is_one_put(tmp_path):
    store = backends.make_s3(tmp_path)
    stored = store.add("img-small", _chunks(b"x" * 1000))
    head = backends.s3_client().head_object(Bucket=store.bucket, Key="img-small")
    assert "-" not in head["ETag"].strip('"')
    assert store.size(stored.url) == 1000


def test_s3_failed_multipart_is_aborted_and_leaves_nothing(tmp_path):
    store = backends.make_s3(tmp_path)
    started = []
    real = store.client.create_multipart_upload

    def counting(**kwargs):  # noqa: ANN003, ANN202 - the real call, counted
        answer = real(**kwargs)
        started.append(answer["UploadId"])
        return answer

    store.client.create_multipart_upload = counting
    with pytest.raises(Boom):
        store.add("img-broken", _failing(os.urandom(11 * MIB)))
    assert len(started) == 1  # a multipart upload was under way ...
    client = backends.s3_client()
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=store.bucket).get("Contents", []) == []


def test_s3_parts_in_flight_are_bounded_by_thread_pools(tmp_path):
    store = backends.make_s3(tmp_path, thread_pools=2)
    lock, state = threading.Lock(), {"now": 0, "most": 0}
    real = store.client.upload_part

    def tracking(**kwargs):  # noqa: ANN003, ANN202
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            return real(**kwargs)
        finally:
            with lock:
                state["now"] -= 1

    store.client.upload_part = tracking
    data = os.urandom(26 * MIB)
    stored = store.add("img-pools", _chunks(data, MIB))
    assert 1 <= state["most"] <= 2
    assert hashlib.sha256(_read(store.get(stored.url))).digest() == \
        hashlib.sha256(data).digest()


def test_s3_upload_memory_is_bounded_whatever_thread_pools_says(tmp_path):
    """Glance's defaults (10 MB parts, s3_store_thread_pools = 10) would hold 100 MB per
    upload; the driver holds at most BYTES_IN_FLIGHT of parts (2 of 10 MiB), each one
    copy. 256 MiB through it: the process grows by well under what it moves (before
    the bound it grew by about 190 MiB for 512 MiB, 140 MiB with single-copy parts)."""
    from glimpse.stores.s3 import BYTES_IN_FLIGHT
    from tests.stores.memory import PeakRss

    store = backends.make_s3(tmp_path, large_object_size=100 * MIB,
                             large_object_chunk_size=10 * MIB, thread_pools=10)
    assert store.parts_in_flight == 2 == BYTES_IN_FLIGHT // (10 * MIB)
    block = os.urandom(MIB)
    with PeakRss() as write:
        stored = store.add("img-memory", (bytes(block) for _ in range(256)))
    assert stored.size == 256 * MIB
    with PeakRss() as read:
        got = sum(len(piece) for piece in store.get(stored.url))
    assert got == stored.size
    store.delete(stored.url)
    assert write.growth < 50, f"uploading grew RSS by {write.growth:.0f} MiB"
    assert read.growth < 40, f"downloading grew RSS by {read.growth:.0f} MiB"


def test_s3_upload_left_by_a_crashed_worker_is_listed_and_removable(tmp_path):
    store = backends.make_s3(tmp_path)
    kept = store.add("img-kept", _chunks(b"k" * 100))
    client = backends.s3_client()
    # What a worker that died mid-upload leaves: an unfinished multipart upload.
    upload = client.create_multipart_upload(Bucket=store.bucket, Key="img-crashed")
    client.upload_part(Bucket=store.bucket, Key="img-crashed", UploadId=upload["UploadId"],
                       PartNumber=1, Body=b"p" * (5 * MIB))
    entries = {e.url: e for e in store.list_data()}
    assert entries[kept.url].complete and entries[kept.url].size == 100
    unfinished = [e for e in entries.values() if not e.complete]
    assert len(unfinished) == 1 and "img-crashed" in unfinished[0].url
    assert unfinished[0].modified > 0
    assert store.owns(unfinished[0].url)
    with pytest.raises(DataNotFound):
        store.size(unfinished[0].url)
    store.delete(unfinished[0].url)
    assert backends.s3_leftovers(store) == ["img-kept"]
    assert [e.url for e in store.list_data()] == [kept.url]


def test_s3_locations_carry_no_credentials_and_legacy_ones_are_read(tmp_path):
    env = backends.backend_env("seaweedfs")
    store = backends.make_s3(tmp_path)
    stored = store.add("img-creds", _chunks(b"secret-free"))
    assert env["S3_SECRET_KEY"] not in stored.url and env["S3_ACCESS_KEY"] not in stored.url
    assert stored.url == (f"s3://{env['S3_SEAWEEDFS_ENDPOINT'].split('://')[1]}/"
                          f"{store.bucket}/img-creds")
    # Glance wrote s3://access:secret@host/bucket/key; such locations still work.
    legacy = stored.url.replace("s3://", f"s3://{env['S3_ACCESS_KEY']}:x@")
    assert store.owns(legacy)
    assert _read(store.get(legacy)) == b"secret-free"


def test_s3_wrong_secret_is_forbidden_and_not_shown(tmp_path):
    store = backends.make_s3(tmp_path)
    wrong = S3Store("bad", host=store.endpoint, access_key="glimpse",
                    secret_key="not-the-secret-" + secrets.token_hex(4), bucket=store.bucket,
                    create_bucket_on_put=True)
    with pytest.raises(StoreForbidden) as caught:
        wrong.add("img-x", _chunks(b"data"))
    assert "not-the-secret" not in str(caught.value)


def test_s3_unreachable_server_is_unavailable():
    store = S3Store("gone", host=f"http://127.0.0.1:{free_port()}", access_key="a",
                    secret_key="b", bucket="glimpse-gone", retries=1, connect_timeout=2)
    with pytest.raises(StoreUnavailable):
        store.add("img-x", _chunks(b"data"))
    with pytest.raises(StoreUnavailable):
        store.size(store._url("img-x"))


def test_s3_missing_bucket_is_not_created_unless_configured(tmp_path):
    store = backends.make_s3(tmp_path, create_bucket_on_put=False)
    with pytest.raises(StoreError, match="does not exist"):
        store.add("img-x", _chunks(b"data"))
    client = backends.s3_client()
    names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    assert store.bucket not in names


def test_s3_bucket_url_format_virtual_puts_the_bucket_in_the_host():
    """Checked on the request botocore prepares; it is answered before any connection
    is opened (a bucket host name would need DNS)."""
    from botocore.awsrequest import AWSResponse

    seen = []
    store = S3Store("virtual", host="http://localhost:1", access_key="a", secret_key="b",
                    bucket="imagesbucket", bucket_url_format="virtual")

    class Raw:
        def stream(self) -> Iterator[bytes]:
            yield b""

    def answer(request, **_):  # noqa: ANN001, ANN003, ANN202
        seen.append(request.url)
        return AWSResponse(request.url, 200, {"Content-Length": "4"}, Raw())

    store.client.meta.events.register_first("before-send.s3.HeadObject", answer)
    assert store.size(store._url("img-1")) == 4
    assert seen == ["http://imagesbucket.localhost:1/img-1"]


def test_s3_store_from_glance_options(tmp_path):
    env = backends.backend_env("seaweedfs")
    bucket = backends.unique_name("glimpse", tmp_path)
    conf = _conf(tmp_path, f"""[DEFAULT]
enabled_backends = objects:s3, local:file
[glance_store]
default_backend = objects
[objects]
s3_store_host = {env['S3_SEAWEEDFS_ENDPOINT']}
s3_store_access_key = {env['S3_ACCESS_KEY']}
s3_store_secret_key = {env['S3_SECRET_KEY']}
s3_store_bucket = {bucket}
s3_store_create_bucket_on_put = true
s3_store_bucket_url_format = path
s3_store_large_object_size = 6
s3_store_large_object_chunk_size = 5
s3_store_thread_pools = 2
""")
    stores = registry.from_conf(conf)
    store = stores.default
    assert isinstance(store.driver, S3Store) and store.name == "objects"
    assert (store.large_object_size, store.part_size, store.thread_pools) == \
        (6 * MIB, 5 * MIB, 2)
    data = os.urandom(11 * MIB)
    assert _read(store.get(store.add("img-conf", _chunks(data)).url)) == data


def test_s3_part_size_below_five_mb_is_refused():
    with pytest.raises(ValueError, match="at least 5 MB"):
        S3Store("s", host="http://127.0.0.1:1", access_key="a", secret_key="b", bucket="b",
                large_object_chunk_size=MIB)


# ================================================================ Swift


def _swift_objects(store: SwiftStore) -> dict[str, dict]:
    _, objects = backends.swift_connection().get_container(store.container, full_listing=True)
    return {o["name"]: o for o in objects}


def test_swift_large_image_is_segments_plus_a_manifest(tmp_path):
    store = backends.make_swift(tmp_path)  # 4 MiB large object size, 2 MiB segments
    data = os.urandom(9 * MIB + 5)
    stored = store.add("img-seg", _chunks(data))
    assert stored.size == len(data)
    objects = _swift_objects(store)
    segments = sorted(n for n in objects if n.startswith("img-seg-"))
    assert len(segments) == 5  # 2+2+2+2+1 MiB and 5 bytes
    assert [objects[n]["bytes"] for n in segments] == [2 * MIB] * 4 + [MIB + 5]
    head = backends.swift_connection().head_object(store.container, "img-seg")
    prefix = head["x-object-manifest"].split("/", 1)[1]
    assert all(n.startswith(prefix) for n in segments)
    assert store.size(stored.url) == len(data)
    assert _read(store.get(stored.url)) == data
    for offset, length in [(2 * MIB - 2, 4), (4 * MIB, 2 * MIB + 1), (len(data) - 3, None)]:
        end = None if length is None else offset + length
        assert _read(store.get(stored.url, offset, length)) == data[offset:end]
    store.delete(stored.url)
    assert backends.swift_leftovers(store) == []


def test_swift_small_image_is_one_plain_object(tmp_path):
    store = backends.make_swift(tmp_path)
    stored = store.add("img-plain", _chunks(b"p" * 5000))
    assert list(_swift_objects(store)) == ["img-plain"]
    head = backends.swift_connection().head_object(store.container, "img-plain")
    assert "x-object-manifest" not in head
    assert store.size(stored.url) == 5000


def test_swift_failed_segmented_upload_leaves_no_segment(tmp_path):
    store = backends.make_swift(tmp_path)
    with pytest.raises(Boom):
        store.add("img-broken", _failing(os.urandom(7 * MIB)))
    assert backends.swift_leftovers(store) == []


def test_swift_segments_without_manifest_are_in_progress_and_removable(tmp_path):
    store = backends.make_swift(tmp_path)
    kept = store.add("img-kept", _chunks(os.urandom(5 * MIB)))  # segmented and committed
    conn = backends.swift_connection()
    # What a worker that died before writing the manifest leaves behind.
    for number in (1, 2):
        conn.put_object(store.container, f"img-crashed-0123456789ab-{number:05d}", b"s" * 1000)
    entries = list(store.list_data())
    done = [e for e in entries if e.complete]
    unfinished = [e for e in entries if not e.complete]
    assert [e.url for e in done] == [kept.url] and done[0].size == 5 * MIB
    assert len(unfinished) == 1
    assert unfinished[0].url.endswith("/img-crashed?in_progress=0123456789ab")
    assert unfinished[0].size == 2000
    with pytest.raises(DataNotFound):
        _read(store.get(unfinished[0].url))
    store.delete(unfinished[0].url)
    assert not any(n.startswith("img-crashed") for n in backends.swift_leftovers(store))
    assert _read(store.get(kept.url))[:10]  # the committed image is untouched
    with pytest.raises(DataNotFound):
        store.delete(unfinished[0].url)


class CuttingProxy:
    """A TCP relay to the Swift proxy that can break one response in the middle: the
    'IncompleteRead' Glance users see when a connection drops during a download."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.cut_after: int | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                sent += len(data)
                if downstream and self.cut_after is not None and sent > self.cut_after:
                    with self._lock:
                        if self.cut_after is None:
                            continue
                        self.cut_after = None
                        self.cuts += 1
                    break
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cutting_proxy() -> Iterator[CuttingProxy]:
    env = backends.backend_env("swift")
    port = int(env["SWIFT_AUTH_URL"].split(":")[2].split("/")[0])
    proxy = CuttingProxy(("127.0.0.1", port))
    yield proxy
    proxy.close()


def _through(proxy: CuttingProxy, tmp_path: Path, **options) -> SwiftStore:  # noqa: ANN003
    env = backends.backend_env("swift")
    # tempauth hands out a storage URL on the host the client asked: the relay.
    return SwiftStore("swift", auth_address=f"http://127.0.0.1:{proxy.port}/auth/v1.0",
                      user=env["SWIFT_USER"], key=env["SWIFT_KEY"], auth_version="1",
                      container=backends.unique_name("glimpse", tmp_path),
                      create_container_on_put=True, large_object_size=4 * MIB,
                      large_object_chunk_size=2 * MIB, **options)


def test_swift_broken_download_is_resumed_from_the_last_byte(tmp_path, cutting_proxy):
    store = _through(cutting_proxy, tmp_path, retry_get_count=2)
    data = os.urandom(6 * MIB)
    stored = store.add("img-resume", _chunks(data))
    cutting_proxy.cut_after = 3 * MIB
    assert hashlib.sha256(_read(store.get(stored.url))).digest() == \
        hashlib.sha256(data).digest()
    assert cutting_proxy.cuts == 1
    cutting_proxy.cut_after = MIB  # a range read resumes within its range too
    assert _read(store.get(stored.url, 100, 4 * MIB)) == data[100:100 + 4 * MIB]
    assert cutting_proxy.cuts == 2


def test_swift_broken_download_without_retries_fails_cleanly(tmp_path, cutting_proxy):
    store = _through(cutting_proxy, tmp_path, retry_get_count=0)
    stored = store.add("img-noretry", _chunks(os.urandom(6 * MIB)))
    cutting_proxy.cut_after = 2 * MIB
    with pytest.raises(StoreUnavailable, match="broke off"):
        _read(store.get(stored.url))
    assert cutting_proxy.cuts == 1


def test_swift_wrong_key_is_forbidden_and_not_shown(tmp_path):
    env = backends.backend_env("swift")
    store = SwiftStore("bad", auth_address=env["SWIFT_AUTH_URL"], user=env["SWIFT_USER"],
                       key="not-the-key-" + secrets.token_hex(4), auth_version="1",
                       container="glimpse-bad", create_container_on_put=True, retries=0)
    with pytest.raises(StoreForbidden) as caught:
        store.add("img-x", _chunks(b"data"))
    assert "not-the-key" not in str(caught.value)


def test_swift_unreachable_server_is_unavailable():
    store = SwiftStore("gone", auth_address=f"http://127.0.0.1:{free_port()}/auth/v1.0",
                       user="a:b", key="c", auth_version="1", retries=0)
    with pytest.raises(StoreUnavailable):
        store.add("img-x", _chunks(b"data"))


def test_swift_missing_container_is_not_created_unless_configured(tmp_path):
    store = backends.make_swift(tmp_path, create_container_on_put=False)
    with pytest.raises(StoreError, match="does not exist"):
        store.add("img-x", _chunks(b"data"))
    assert backends.swift_leftovers(store) == []


def test_swift_locations_carry_no_credentials(tmp_path):
    env = backends.backend_env("swift")
    store = backends.make_swift(tmp_path)
    stored = store.add("img-url", _chunks(b"u"))
    address = env["SWIFT_AUTH_URL"].split("://", 1)[1]
    assert stored.url == f"swift+http://{address}/{store.container}/img-url"
    assert env["SWIFT_KEY"] not in stored.url
    legacy = stored.url.replace("swift+http://", f"swift+http://{env['SWIFT_USER']}:k@")
    assert store.owns(legacy) and _read(store.get(legacy)) == b"u"


def test_swift_multiple_containers_seed(tmp_path):
    store = backends.make_swift(tmp_path, multiple_containers_seed=3)
    image_id = "ab-c1234-5678"
    stored = store.add(image_id, _chunks(b"seeded"))
    assert f"/{store.container}_ab-c/{image_id}" in stored.url  # dashes do not count
    assert [e.url for e in store.list_data()] == [stored.url]
    store.delete(stored.url)
    assert list(store.list_data()) == []


def test_swift_config_file_references(tmp_path):
    env = backends.backend_env("swift")
    container = backends.unique_name("glimpse", tmp_path)
    refs = tmp_path / "glance-swift.conf"
    refs.write_text(f"[other]\nauth_address = http://127.0.0.1:1/auth/v1.0\nuser = x:y\n"
                    f"key = z\nauth_version = 1\n\n"
                    f"[ref2]\nauth_address = \"{env['SWIFT_AUTH_URL']}\"\n"
                    f"user = {env['SWIFT_USER']}\nkey = '{env['SWIFT_KEY']}'\n"
                    "auth_version = 1\n")
    conf = _conf(tmp_path, f"""[DEFAULT]
enabled_backends = objects:swift
[glance_store]
default_backend = objects
[objects]
swift_store_config_file = {refs}
default_swift_reference = ref2
swift_store_container = {container}
swift_store_create_container_on_put = true
swift_store_large_object_size = 1
swift_store_large_object_chunk_size = 1
swift_store_retry_get_count = 3
""")
    store = registry.from_conf(conf).get("objects")
    assert isinstance(store.driver, SwiftStore) and store.retry_get_count == 3
    data = os.urandom(3 * MIB)
    stored = store.add("img-ref", _chunks(data))
    assert stored.url == f"swift+config://ref2/{container}/img-ref"
    assert env["SWIFT_KEY"] not in stored.url
    assert _read(store.get(stored.url)) == data
    assert store.owns(f"swift+config://other/{container}/img-ref")
    assert not store.owns(f"swift+config://ref9/{container}/img-ref")


def test_swift_legacy_default_section_is_read_with_a_warning(tmp_path, caplog):
    env = backends.backend_env("swift")
    container = backends.unique_name("glimpse", tmp_path)
    conf = _conf(tmp_path, f"""[DEFAULT]
default_store = swift
swift_store_auth_address = {env['SWIFT_AUTH_URL']}
swift_store_user = {env['SWIFT_USER']}
swift_store_key = {env['SWIFT_KEY']}
swift_store_auth_version = 1
swift_store_container = {container}
swift_store_create_container_on_put = true
""")
    with caplog.at_level(logging.WARNING):
        stores = registry.from_conf(conf)
    store = stores.default
    assert isinstance(store.driver, SwiftStore) and store.container == container
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert 'Option "swift_store_auth_address" from group "DEFAULT" is deprecated' in warned
    assert 'group "glance_store"' in warned
    stored = store.add("img-legacy", _chunks(b"legacy"))
    assert _read(store.get(stored.url)) == b"legacy"


def test_swift_multi_tenant_with_a_config_file_is_refused_at_start_up(tmp_path):
    """As Glance: the per-project accounts and swift_store_config_file exclude each other
    (multi-tenant itself: tests/stores/test_swift_multi_tenant*.py)."""
    accounts = tmp_path / "swift.conf"
    accounts.write_text("[ref1]\nauth_address = http://127.0.0.1:1/v3\nuser = a:b\nkey = c\n")
    conf = _conf(tmp_path, f"""[DEFAULT]
enabled_backends = objects:swift
[objects]
swift_store_multi_tenant = true
swift_store_config_file = {accounts}
""")
    with pytest.raises(ValueError, match="mutually exclusive"):
        registry.from_conf(conf)


def test_swift_keystone_wrong_password_is_forbidden(tmp_path):
    env = backends.backend_env("swift", keystone=True)
    store = SwiftStore("bad", auth_address=env["SWIFT_KEYSTONE_AUTH_URL"],
                       user=env["SWIFT_KEYSTONE_USER"], key="wrong-" + secrets.token_hex(4),
                       auth_version="3", endpoint=env["SWIFT_KEYSTONE_ENDPOINT"],
                       container="glimpse-bad", create_container_on_put=True)
    with pytest.raises(StoreForbidden) as caught:
        store.add("img-x", _chunks(b"data"))
    assert "wrong-" not in str(caught.value)


def test_swift_keystone_reference_with_an_endpoint(tmp_path):
    """A swift_store_config_file reference with auth_version 3 (Keystone's domains
    given in the file) and swift_store_endpoint for the account URL."""
    env = backends.backend_env("swift", keystone=True)
    container = backends.unique_name("glimpse", tmp_path)
    refs = tmp_path / "glance-swift.conf"
    refs.write_text(f"[ks]\nauth_address = {env['SWIFT_KEYSTONE_AUTH_URL']}\n"
                    f"auth_version = 3\nuser = {env['SWIFT_KEYSTONE_USER']}\n"
                    f"key = {env['SWIFT_KEYSTONE_KEY']}\nuser_domain_id = default\n"
                    "project_domain_id = default\n")
    conf = _conf(tmp_path, f"""[DEFAULT]
enabled_backends = objects:swift
[objects]
swift_store_config_file = {refs}
default_swift_reference = ks
swift_store_endpoint = {env['SWIFT_KEYSTONE_ENDPOINT']}
swift_store_container = {container}
swift_store_create_container_on_put = true
""")
    store = registry.from_conf(conf).get("objects")
    data = os.urandom(MIB)
    stored = store.add("img-ks", _chunks(data))
    assert stored.url == f"swift+config://ks/{container}/img-ks"
    assert _read(store.get(stored.url)) == data
    store.delete(stored.url)
    assert list(store.list_data()) == []
