"""The conformance suite every store driver passes (DESIGN.md rule 5).

One suite, parametrized by driver name. Each driver is a fixture factory in
tests/stores/backends.py (``@driver("name")``) that starts its real server once
per session and says how to make a fresh store and list what its back end holds,
so the suite can prove nothing is left behind. Stores are used as the registry
builds them: wrapped once in WrappedStore, and called as the services call them:
with the caller's credentials (``StoreDriver.creds``: a real Keystone token and catalog
for multi-tenant swift, None for the others). Read-only drivers (http) run the read
tests on data ``seed`` put on their server.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from glimpse.stores.base import (
    Credentials,
    DataEntry,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreUnavailable,
)
from glimpse.stores.file import READ_SIZE, FileStore
from glimpse.stores.wrapped import WrappedStore
from tests.stores.backends import FACTORIES, READ_ONLY, SERVERLESS, StoreDriver, get_driver

MIB = 1024 * 1024
ALL = sorted(FACTORIES)
WRITABLE = [name for name in ALL if name not in READ_ONLY]
WITH_SERVER = [name for name in ALL if name not in SERVERLESS]


@pytest.fixture(params=ALL)
def driver(request: pytest.FixtureRequest) -> StoreDriver:
    return get_driver(request.param)


@pytest.fixture(params=WRITABLE)
def wdriver(request: pytest.FixtureRequest) -> StoreDriver:
    return get_driver(request.param)


class AsCaller(Store):
    """A store as the services use it: wrapped, every data call carrying the caller's
    credentials."""

    def __init__(self, store: Store, creds: Credentials | None):
        super().__init__(store.name, store.description)
        self.store, self.creds = store, creds
        self.type, self.read_only = store.type, store.read_only
        self.access_lists = store.access_lists

    def add(self, image_id: str, chunks: Iterator[bytes],  # type: ignore[override]
            creds: Credentials | None = None) -> StoredData:
        return self.store.add(image_id, chunks, creds or self.creds)

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        return self.store.get(url, offset, length, creds or self.creds)

    def size(self, url: str, creds: Credentials | None = None) -> int:
        return self.store.size(url, creds or self.creds)

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        self.store.delete(url, creds or self.creds)

    def set_acls(self, url: str, public: bool = False, read_projects=(),  # noqa: ANN001
                 write_projects=(), creds: Credentials | None = None) -> None:
        self.store.set_acls(url, public, read_projects, write_projects, creds or self.creds)

    def owns(self, url: str) -> bool:
        return self.store.owns(url)

    def list_data(self) -> Iterator[DataEntry]:
        return self.store.list_data()

    def __getattr__(self, name: str):  # noqa: ANN204 - the driver's own attributes
        return getattr(self.store, name)


def as_caller(driver: StoreDriver, raw: Store) -> Store:
    return AsCaller(WrappedStore(raw), driver.creds)


@contextmanager
def _made(driver: StoreDriver, raw: Store) -> Iterator[Store]:
    """The store for a test, and at teardown what it wrote removed from its server."""
    try:
        yield as_caller(driver, raw)
    finally:
        if driver.discard is not None:
            driver.discard(raw)


@pytest.fixture
def store(driver: StoreDriver, tmp_path: Path) -> Iterator[Store]:
    with _made(driver, driver.make(tmp_path)) as made:
        yield made


@pytest.fixture
def wstore(wdriver: StoreDriver, tmp_path: Path) -> Iterator[Store]:
    with _made(wdriver, wdriver.make(tmp_path)) as made:
        yield made


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _read(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


def _add(store: Store, image_id: str, data: bytes) -> str:
    stored = store.add(image_id, _chunks(data))
    assert stored.size == len(data)
    return stored.url


def _put(driver: StoreDriver, store: Store, image_id: str, data: bytes) -> str:
    """Data the store can read: added through it, or seeded on a read-only store's server."""
    if driver.seed is not None:
        return driver.seed(store, image_id, data)
    return _add(store, image_id, data)


# ---------------------------------------------------------------- add / get / size


@pytest.mark.parametrize("size", [0, 1, 12_345])
def test_small_sizes_round_trip(store, driver, size):
    data = os.urandom(size)
    url = _put(driver, store, f"img-{size}", data)
    assert store.owns(url)
    assert store.size(url) == size
    assert _read(store.get(url)) == data


def test_data_above_the_chunk_size_round_trips(store, driver):
    data = os.urandom(2 * driver.chunk_size + 17)
    url = _put(driver, store, "img-big", data)
    assert store.size(url) == len(data)
    assert hashlib.sha256(_read(store.get(url))).digest() == hashlib.sha256(data).digest()


def test_add_accepts_bytes_like_chunks(wstore):
    stored = wstore.add("img-views", iter([b"ab", bytearray(b"cd"), memoryview(b"ef")]))
    assert stored.size == 6
    assert _read(wstore.get(stored.url)) == b"abcdef"


@pytest.mark.parametrize(("offset", "length"), [
    (0, None), (0, 1), (1, 10), (99_990, None), (99_990, 10), (99_999, 1), (0, 100_000),
    (100_000, None), (50_000, 0),
])
def test_get_offset_and_length(store, driver, offset, length):
    data = os.urandom(100_000)
    url = _put(driver, store, "img-range", data)
    end = None if length is None else offset + length
    assert _read(store.get(url, offset, length)) == data[offset:end]


@pytest.mark.parametrize(("at", "length"), [
    (-1, 1), (-1, 2), (0, 1), (-10, 20), (-1, None), (1, 1), (0, "chunk"), (-5, "chunk+10"),
])
def test_range_reads_at_and_across_chunk_boundaries(store, driver, at, length):
    chunk = driver.chunk_size
    data = os.urandom(3 * chunk + 101)
    url = _put(driver, store, "img-boundary", data)
    for boundary in (chunk, 2 * chunk):
        offset = boundary + at
        size = {"chunk": chunk, "chunk+10": chunk + 10}.get(length, length)  # type: ignore[arg-type]
        end = None if size is None else offset + size
        assert _read(store.get(url, offset, size)) == data[offset:end], (offset, size)


def test_get_length_past_the_end_stops_at_the_end(store, driver):
    data = os.urandom(1000)
    url = _put(driver, store, "img-short", data)
    assert _read(store.get(url, 900, 500)) == data[900:]


def test_distinct_images_do_not_collide(store, driver):
    a, b = os.urandom(5000), os.urandom(7000)
    url_a, url_b = _put(driver, store, "img-a", a), _put(driver, store, "img-b", b)
    assert url_a != url_b
    assert _read(store.get(url_a)) == a
    assert _read(store.get(url_b)) == b


def test_concurrent_writes_of_different_images(wstore, wdriver):
    blobs = {f"img-c{i}": os.urandom(wdriver.chunk_size + 1000 * i) for i in range(4)}
    with ThreadPoolExecutor(4) as pool:
        urls = dict(zip(blobs, pool.map(lambda i: _add(wstore, i, blobs[i]), blobs),
                        strict=True))
    assert len(set(urls.values())) == 4
    for image_id, data in blobs.items():
        assert _read(wstore.get(urls[image_id])) == data
    # Each image's data is there (a driver may keep one image in several objects,
    # e.g. Swift's segments), and nothing remains once the four are deleted.
    held = wdriver.leftovers(wstore)
    assert all(any(image_id in name for name in held) for image_id in blobs)
    for url in urls.values():
        wstore.delete(url)
    assert wdriver.leftovers(wstore) == []


# ---------------------------------------------------------------- access lists


def test_access_lists_keep_the_data_the_callers(wstore, wdriver):
    """set_acls, whatever it is asked (a driver without access lists has nothing to
    do): the caller still reads the data, and deleting it leaves nothing."""
    data = os.urandom(2 * wdriver.chunk_size + 3)  # segments / parts / chunks too
    url = _add(wstore, "img-acl", data)
    caller = wdriver.creds.project_id if wdriver.creds else "p"
    for public, readers in ((True, ()), (False, (caller, "other")), (False, ())):
        wstore.set_acls(url, public, readers, ())
        assert _read(wstore.get(url)) == data
    wstore.delete(url)
    assert wdriver.leftovers(wstore) == []


# ---------------------------------------------------------------- delete


def test_delete_removes_data(wstore, wdriver):
    url = _add(wstore, "img-del", b"x" * 1000)
    wstore.delete(url)
    with pytest.raises(DataNotFound):
        wstore.size(url)
    with pytest.raises(DataNotFound):
        _read(wstore.get(url))
    assert wdriver.leftovers(wstore) == []


def test_delete_missing_raises_data_not_found(wstore):
    url = _add(wstore, "img-twice", b"x")
    wstore.delete(url)
    with pytest.raises(DataNotFound):
        wstore.delete(url)


def test_missing_data_is_data_not_found(store, driver):
    url = _put(driver, store, "img-there", b"x")
    gone = url.replace("img-there", "img-never-written")
    with pytest.raises(DataNotFound):
        store.size(gone)
    with pytest.raises(DataNotFound):
        _read(store.get(gone))


def test_data_not_found_is_a_store_error():
    assert issubclass(DataNotFound, StoreError)


# ---------------------------------------------------------------- failures leave nothing


class Boom(Exception):
    pass


def _failing(after: int) -> Iterator[bytes]:
    for _ in range(after):
        yield b"z" * READ_SIZE
    raise Boom("client went away")


@pytest.mark.parametrize("after", [0, 1, 3])
def test_add_whose_iterator_raises_leaves_nothing(wstore, wdriver, after):
    with pytest.raises(Boom):
        wstore.add("img-fail", _failing(after))
    assert wdriver.leftovers(wstore) == []


def test_failed_add_does_not_disturb_other_data(wstore, wdriver):
    data = os.urandom(4096)
    url = _add(wstore, "img-keep", data)
    with pytest.raises(Boom):
        wstore.add("img-fail", _failing(2))
    assert _read(wstore.get(url)) == data
    assert len(wdriver.leftovers(wstore)) == 1


def test_add_interrupted_by_generator_close_leaves_nothing(wstore, wdriver):
    """A BaseException (GeneratorExit, KeyboardInterrupt) must clean up too."""
    def interrupted() -> Iterator[bytes]:
        yield b"a" * 1000
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wstore.add("img-interrupted", interrupted())
    assert wdriver.leftovers(wstore) == []


# ---------------------------------------------------------------- URLs it must refuse

# One URL of each kind; a driver's own schemes are left out (its foreign_urls cover them).
OTHER_STORES_URLS = {
    "file": ("file:///etc/passwd",),
    "http": ("http://127.0.0.1:9/img-inside", "https://127.0.0.1:9/img-inside"),
    "rbd": ("rbd://00000000-0000-0000-0000-000000000000/images/img-inside/snap",),
    "swift": ("swift+https://127.0.0.1:9/v1/c/img-inside", "swift://a:b@127.0.0.1/c/img"),
    "s3": ("s3://key:secret@127.0.0.1:9/bucket/img-inside",
           "s3+https://127.0.0.1:9/bucket/img-inside"),
    "cinder": ("cinder://00000000-0000-0000-0000-000000000000",),
    "vsphere": ("vsphere://127.0.0.1:9/folder/img-inside?dsName=d",),
}


def test_urls_outside_the_store_are_refused(store, driver, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    url = _put(driver, store, "img-inside", b"inside")
    foreign = [
        *driver.foreign_urls,
        *(u for urls in OTHER_STORES_URLS.values() for u in urls
          if u.split(":", 1)[0].split("+")[0] not in driver.schemes),
        url + "/../../outside",
        url.rsplit("/", 1)[0] + "/../outside",
        url.rsplit("/", 1)[0] + "/%2e%2e/outside",
        "not a url",
        "",
    ]
    if driver.writable:
        foreign.append("file://" + str(outside))
    for bad in foreign:
        if driver.seed is not None and store.owns(bad):
            continue  # a read-only http store owns every http URL: only scheme matters
        assert not store.owns(bad), bad
        with pytest.raises(StoreError):
            _read(store.get(bad))
        with pytest.raises(StoreError):
            store.size(bad)
        with pytest.raises(StoreError):
            store.delete(bad)
    assert outside.read_bytes() == b"secret"
    assert _read(store.get(url)) == b"inside"


@pytest.mark.parametrize("image_id", ["../escape", "a/b", "", ".", ".."])
def test_add_refuses_image_ids_that_are_not_plain_names(wstore, wdriver, image_id, tmp_path):
    with pytest.raises(StoreError):
        wstore.add(image_id, iter([b"data"]))
    assert wdriver.leftovers(wstore) == []
    assert not (tmp_path / "escape").exists()


def test_owns_its_own_urls_only(wstore, wdriver, tmp_path):
    url = _add(wstore, "img-own", b"1")
    assert wstore.owns(url)
    make_other = wdriver.make_other or (lambda tmp: wdriver.make(tmp / "other"))
    with _made(wdriver, make_other(tmp_path)) as other:
        assert not other.owns(url)
        assert not wstore.owns(_add(other, "img-own", b"2"))


def test_read_only_store_refuses_writes(store, driver):
    if driver.writable:
        assert not store.read_only
        return
    assert store.read_only
    with pytest.raises(StoreError):
        store.add("img-ro", iter([b"data"]))


# ---------------------------------------------------------------- the server is gone


@pytest.mark.parametrize("name", WITH_SERVER)
def test_stopped_server_is_store_unavailable(name, tmp_path):
    """A server that is not there is StoreUnavailable (503), not a hang or a 500. A
    throw-away address nobody listens on stands in: the shared server keeps running."""
    driver = get_driver(name)
    assert driver.make_unreachable is not None
    raw, url = driver.make_unreachable(tmp_path)
    store = as_caller(driver, raw)
    with pytest.raises(StoreUnavailable) as raised:
        _read(store.get(url))
    assert store.name in str(raised.value)
    with pytest.raises(StoreUnavailable):
        store.size(url)
    if driver.writable:
        with pytest.raises(StoreUnavailable):
            store.add("img-unreachable", iter([b"data"]))
        with pytest.raises(StoreUnavailable):
            store.delete(url)


# ---------------------------------------------------------------- streaming


def test_large_data_streams_in_chunks(wstore):
    """Neither add nor get holds the data whole: add consumes a lazy iterator,
    get yields several bounded chunks."""
    chunk = os.urandom(MIB)
    count = 6
    produced = 0

    def source() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(count):
            produced += 1
            yield chunk

    stored = wstore.add("img-big", source())
    assert produced == count and stored.size == count * MIB
    expected = hashlib.sha256(chunk * count).hexdigest()
    digest = hashlib.sha256()
    sizes = []
    for piece in wstore.get(stored.url):
        sizes.append(len(piece))
        digest.update(piece)
    assert digest.hexdigest() == expected
    assert len(sizes) > 1
    assert max(sizes) <= 4 * MIB
    assert sum(sizes) == count * MIB


def test_get_is_lazy(store, driver):
    """get returns an iterator that reads as it is consumed; closing it early is fine."""
    url = _put(driver, store, "img-lazy", os.urandom(3 * MIB))
    chunks = store.get(url)
    first = next(iter(chunks))
    assert 0 < len(first) < 3 * MIB
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def test_add_consumes_chunks_one_at_a_time(wstore):
    """The iterator is pulled lazily: add must not list() it first."""
    seen: list[int] = []

    def source() -> Iterator[bytes]:
        for i in range(4):
            seen.append(i)
            yield bytes([i]) * 1000

    stored = wstore.add("img-lazy-add", source())
    assert seen == [0, 1, 2, 3]
    assert _read(wstore.get(stored.url)) == b"".join(bytes([i]) * 1000 for i in range(4))


# ---------------------------------------------------------------- file-store specifics


def test_file_store_local_path(tmp_path):
    store = get_driver("file").make(tmp_path)
    url = _add(store, "img-local", b"abc")
    path = store.local_path(url)
    assert path is not None and Path(path).read_bytes() == b"abc"
    store.delete(url)
    assert store.local_path(url) is None


def test_file_store_refuses_symlink_escaping_the_directory(tmp_path):
    store = get_driver("file").make(tmp_path)
    assert isinstance(store, FileStore)
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    os.symlink(secret, os.path.join(store.datadir, "img-link"))
    url = "file://" + os.path.join(store.datadir, "img-link")
    assert not store.owns(url)
    with pytest.raises(StoreError):
        _read(store.get(url))
    with pytest.raises(StoreError):
        store.delete(url)
    assert secret.exists()


def test_file_store_os_errors_are_store_errors(tmp_path):
    """Anything the OS refuses becomes a StoreError callers handle, never a bare OSError."""
    store = get_driver("file").make(tmp_path)
    assert isinstance(store, FileStore)
    blocker = Path(store.datadir) / "img-dir"
    blocker.mkdir()
    url = "file://" + str(blocker)
    with pytest.raises(StoreError) as deleting:
        store.delete(url)
    assert not isinstance(deleting.value, DataNotFound)
    with pytest.raises(StoreError) as reading:
        _read(store.get(url))
    assert not isinstance(reading.value, DataNotFound)
    assert blocker.is_dir()


def test_file_store_add_file_links_without_copying(tmp_path):
    store = get_driver("file").make(tmp_path)
    assert isinstance(store, FileStore)
    source = tmp_path / "staged"
    data = os.urandom(300_000)
    source.write_bytes(data)
    stored = store.add_file("img-linked", str(source))
    assert stored is not None and stored.size == len(data)
    assert _read(store.get(stored.url)) == data
    # The same inode: no byte was copied. The source keeps its own name.
    assert os.stat(store.local_path(stored.url)).st_ino == source.stat().st_ino
    source.unlink()
    assert _read(store.get(stored.url)) == data
    store.delete(stored.url)
    assert get_driver("file").leftovers(store) == []


def test_file_store_add_file_across_filesystems_declines(tmp_path, monkeypatch):
    """Where a link is impossible the store declines (None) and leaves nothing."""
    import errno

    store = get_driver("file").make(tmp_path)
    source = tmp_path / "elsewhere"
    source.write_bytes(b"data")

    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    assert store.add_file("img-x", str(source)) is None
    assert get_driver("file").leftovers(store) == []


def test_file_store_add_file_refuses_bad_ids(tmp_path):
    store = get_driver("file").make(tmp_path)
    source = tmp_path / "staged"
    source.write_bytes(b"data")
    with pytest.raises(StoreError):
        store.add_file("../escape", str(source))
    assert get_driver("file").leftovers(store) == []


def test_file_store_flushes_large_writes_as_it_goes(tmp_path, monkeypatch):
    """Data reaches the disk while it streams in, not all in the final sync."""
    from glimpse.stores import file as file_mod

    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(file_mod, "FLUSH_EVERY", MIB)
    monkeypatch.setattr(os, "fdatasync", counting)
    store = get_driver("file").make(tmp_path)
    data = os.urandom(5 * MIB)
    stored = store.add("img-flushed", _chunks(data, 256 * 1024))
    assert _read(store.get(stored.url)) == data
    assert len(synced) >= 2  # in the background as it went, then at the end
    assert synced[-1] == len(data)
