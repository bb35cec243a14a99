"""The conformance suite every store driver passes (DESIGN.md rule 5).

One suite, parametrized by driver name through the ``store`` fixture. To add a
driver (s3, swift, rbd, ...), add a ``StoreDriver`` to ``DRIVERS`` whose
``make`` builds a fresh, empty store (skipping with a reason when its back end
is not reachable) and whose ``leftovers`` lists everything the store holds
(finished or partial), so the suite can prove nothing is left behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from glimpse.stores.base import DataNotFound, Store, StoreError
from glimpse.stores.file import READ_SIZE, FileStore
from tests.stores import swift_s3_backends as swift_s3

MIB = 1024 * 1024


@dataclass
class StoreDriver:
    make: Callable[[Path], Store]
    leftovers: Callable[[Store], list[str]]
    # URLs of the driver's own scheme that name things outside the store.
    foreign_urls: tuple[str, ...] = ()


def _file_leftovers(store: Store) -> list[str]:
    assert isinstance(store, FileStore)
    return sorted(os.listdir(store.datadir))


DRIVERS: dict[str, StoreDriver] = {
    "file": StoreDriver(
        make=lambda tmp: FileStore("file", str(tmp / "store"), "conformance"),
        leftovers=_file_leftovers,
        foreign_urls=("file:///etc/passwd", "file:///etc/", "file:///", "file://"),
    ),
    "s3": StoreDriver(make=swift_s3.make_s3, leftovers=swift_s3.s3_leftovers,
                      foreign_urls=swift_s3.S3_FOREIGN_URLS),
    "swift": StoreDriver(make=swift_s3.make_swift, leftovers=swift_s3.swift_leftovers,
                         foreign_urls=swift_s3.SWIFT_FOREIGN_URLS),
    "swift-keystone": StoreDriver(make=swift_s3.make_swift_keystone,
                                  leftovers=swift_s3.swift_keystone_leftovers,
                                  foreign_urls=swift_s3.SWIFT_FOREIGN_URLS),
}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest) -> StoreDriver:
    return DRIVERS[request.param]


@pytest.fixture
def store(driver: StoreDriver, tmp_path: Path) -> Store:
    return driver.make(tmp_path)


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _read(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


def _add(store: Store, image_id: str, data: bytes) -> str:
    stored = store.add(image_id, _chunks(data))
    assert stored.size == len(data)
    return stored.url


# ---------------------------------------------------------------- add / get / size


def test_add_then_get_whole(store):
    data = os.urandom(300_000)
    url = _add(store, "img-1", data)
    assert store.owns(url)
    assert store.size(url) == len(data)
    assert _read(store.get(url)) == data


def test_add_empty_data(store):
    url = _add(store, "img-empty", b"")
    assert store.size(url) == 0
    assert _read(store.get(url)) == b""


def test_add_accepts_bytes_like_chunks(store):
    stored = store.add("img-views", iter([b"ab", bytearray(b"cd"), memoryview(b"ef")]))
    assert stored.size == 6
    assert _read(store.get(stored.url)) == b"abcdef"


@pytest.mark.parametrize(("offset", "length"), [
    (0, None), (0, 1), (1, 10), (99_990, None), (99_990, 10), (99_999, 1), (0, 100_000),
    (100_000, None), (50_000, 0),
])
def test_get_offset_and_length(store, offset, length):
    data = os.urandom(100_000)
    url = _add(store, "img-range", data)
    end = None if length is None else offset + length
    assert _read(store.get(url, offset, length)) == data[offset:end]


def test_get_length_past_the_end_stops_at_the_end(store):
    data = os.urandom(1000)
    url = _add(store, "img-short", data)
    assert _read(store.get(url, 900, 500)) == data[900:]


def test_distinct_images_do_not_collide(store):
    a, b = os.urandom(5000), os.urandom(7000)
    url_a, url_b = _add(store, "img-a", a), _add(store, "img-b", b)
    assert url_a != url_b
    assert _read(store.get(url_a)) == a
    assert _read(store.get(url_b)) == b


# ---------------------------------------------------------------- delete


def test_delete_removes_data(store, driver):
    url = _add(store, "img-del", b"x" * 1000)
    store.delete(url)
    with pytest.raises(DataNotFound):
        store.size(url)
    with pytest.raises(DataNotFound):
        _read(store.get(url))
    assert driver.leftovers(store) == []


def test_delete_missing_raises_data_not_found(store):
    url = _add(store, "img-twice", b"x")
    store.delete(url)
    with pytest.raises(DataNotFound):
        store.delete(url)


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
def test_add_whose_iterator_raises_leaves_nothing(store, driver, after):
    with pytest.raises(Boom):
        store.add("img-fail", _failing(after))
    assert driver.leftovers(store) == []


def test_failed_add_does_not_disturb_other_data(store, driver):
    data = os.urandom(4096)
    url = _add(store, "img-keep", data)
    with pytest.raises(Boom):
        store.add("img-fail", _failing(2))
    assert _read(store.get(url)) == data
    assert len(driver.leftovers(store)) == 1


def test_add_interrupted_by_generator_close_leaves_nothing(store, driver):
    """A BaseException (GeneratorExit, KeyboardInterrupt) must clean up too."""
    def interrupted() -> Iterator[bytes]:
        yield b"a" * 1000
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.add("img-interrupted", interrupted())
    assert driver.leftovers(store) == []


# ---------------------------------------------------------------- URLs it must refuse


def test_urls_outside_the_store_are_refused(store, driver, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    url = _add(store, "img-inside", b"inside")
    foreign = [
        *driver.foreign_urls,
        "file://" + str(outside),
        url + "/../../outside",
        url.rsplit("/", 1)[0] + "/../outside",
        url.rsplit("/", 1)[0] + "/%2e%2e/outside",
        "http://example.com/img-inside",
        "swift+https://example.com/v1/c/img-inside",
        "not a url",
        "",
    ]
    for bad in foreign:
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
def test_add_refuses_image_ids_that_are_not_plain_names(store, driver, image_id, tmp_path):
    with pytest.raises(StoreError):
        store.add(image_id, iter([b"data"]))
    assert driver.leftovers(store) == []
    assert not (tmp_path / "escape").exists()


def test_owns_its_own_urls_only(store, driver, tmp_path):
    url = _add(store, "img-own", b"1")
    assert store.owns(url)
    other = driver.make(tmp_path / "other")
    assert not other.owns(url)
    assert not store.owns(_add(other, "img-own", b"2"))


# ---------------------------------------------------------------- streaming


def test_large_data_streams_in_chunks(store):
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

    stored = store.add("img-big", source())
    assert produced == count and stored.size == count * MIB
    expected = hashlib.sha256(chunk * count).hexdigest()
    digest = hashlib.sha256()
    sizes = []
    for piece in store.get(stored.url):
        sizes.append(len(piece))
        digest.update(piece)
    assert digest.hexdigest() == expected
    assert len(sizes) > 1
    assert max(sizes) <= 4 * MIB
    assert sum(sizes) == count * MIB


def test_get_is_lazy(store):
    """get returns an iterator that reads as it is consumed; closing it early is fine."""
    url = _add(store, "img-lazy", os.urandom(3 * MIB))
    chunks = store.get(url)
    first = next(iter(chunks))
    assert 0 < len(first) < 3 * MIB
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def test_add_consumes_chunks_one_at_a_time(store):
    """The iterator is pulled lazily: add must not list() it first."""
    seen: list[int] = []

    def source() -> Iterator[bytes]:
        for i in range(4):
            seen.append(i)
            yield bytes([i]) * 1000

    stored = store.add("img-lazy-add", source())
    assert seen == [0, 1, 2, 3]
    assert _read(store.get(stored.url)) == b"".join(bytes([i]) * 1000 for i in range(4))


# ---------------------------------------------------------------- file-store specifics


def test_file_store_local_path(tmp_path):
    store = DRIVERS["file"].make(tmp_path)
    url = _add(store, "img-local", b"abc")
    path = store.local_path(url)
    assert path is not None and Path(path).read_bytes() == b"abc"
    store.delete(url)
    assert store.local_path(url) is None


def test_file_store_refuses_symlink_escaping_the_directory(tmp_path):
    store = DRIVERS["file"].make(tmp_path)
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
    store = DRIVERS["file"].make(tmp_path)
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
    store = DRIVERS["file"].make(tmp_path)
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
    assert _file_leftovers(store) == []


def test_file_store_add_file_across_filesystems_declines(tmp_path, monkeypatch):
    """Where a link is impossible the store declines (None) and leaves nothing."""
    import errno

    store = DRIVERS["file"].make(tmp_path)
    source = tmp_path / "elsewhere"
    source.write_bytes(b"data")

    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    assert store.add_file("img-x", str(source)) is None
    assert _file_leftovers(store) == []


def test_file_store_add_file_refuses_bad_ids(tmp_path):
    store = DRIVERS["file"].make(tmp_path)
    source = tmp_path / "staged"
    source.write_bytes(b"data")
    with pytest.raises(StoreError):
        store.add_file("../escape", str(source))
    assert _file_leftovers(store) == []


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
    store = DRIVERS["file"].make(tmp_path)
    data = os.urandom(5 * MIB)
    stored = store.add("img-flushed", _chunks(data, 256 * 1024))
    assert _read(store.get(stored.url)) == data
    assert len(synced) >= 2  # in the background as it went, then at the end
    assert synced[-1] == len(data)
