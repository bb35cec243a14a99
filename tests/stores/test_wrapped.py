"""WrappedStore: the one place errors get the store's name and timings are logged."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import pytest

from glimpse.stores.base import Credentials, Store, StoredData, StoreFull, StoreUnavailable
from glimpse.stores.file import FileStore
from glimpse.stores.wrapped import WrappedStore


class Flaky(Store):
    """A driver whose back end fails in the ways the wrapper must handle."""

    type = "flaky"

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        for _ in chunks:
            pass
        raise StoreFull("pool is full")

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        yield b"first"
        raise StoreUnavailable("connection reset")

    def size(self, url: str, creds: Credentials | None = None) -> int:
        raise KeyError("driver bug")

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        return None


def test_errors_keep_their_type_and_gain_the_store_name():
    store = WrappedStore(Flaky("ceph-a"))
    with pytest.raises(StoreFull, match="Store 'ceph-a': pool is full"):
        store.add("img", iter([b"x"]))
    chunks = store.get("x")
    assert next(chunks) == b"first"
    with pytest.raises(StoreUnavailable, match="Store 'ceph-a': connection reset"):
        next(chunks)


def test_a_driver_bug_is_a_store_error_not_a_bare_exception():
    from glimpse.stores.base import StoreError

    with pytest.raises(StoreError, match="Store 'ceph-a': size failed"):
        WrappedStore(Flaky("ceph-a")).size("x")


def test_errors_of_the_callers_chunks_pass_unchanged(tmp_path):
    class ClientGone(Exception):
        pass

    def chunks() -> Iterator[bytes]:
        yield b"x"
        raise ClientGone("413 from DataStream, say")

    store = WrappedStore(FileStore("fs", str(tmp_path / "fs")))
    with pytest.raises(ClientGone):
        store.add("img", chunks())


def test_timings_are_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="glimpse.stores.wrapped")
    store = WrappedStore(FileStore("fs", str(tmp_path / "fs")))
    url = store.add("img", iter([b"x" * 1000])).url
    assert b"".join(store.get(url)) == b"x" * 1000
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("store fs: add 1000 bytes") for line in lines)
    assert any(line.startswith("store fs: get 1000 bytes") for line in lines)
    assert store.datadir == str(tmp_path / "fs")  # driver attributes stay reachable


def test_a_driver_that_cannot_list_says_so():
    with pytest.raises(NotImplementedError):
        WrappedStore(Flaky("ceph-a")).list_data()
