"""The adapter that puts glance_store's cinder/vmware drivers behind our interface.

MOCKED: Cinder and vCenter cannot run on this machine, so the glance_store driver
is replaced by a fake with glance_store's method signatures and exception names
(the adapter maps exceptions by those names). What is tested is the adapter's
own work: chunks to a file-like object, the add() tuple, offset/length, URL
ownership and error mapping. Nothing here proves the real drivers work.
"""

from __future__ import annotations

import pytest

from glimpse.stores.base import DataNotFound, StoreFull, StoreUnavailable
from glimpse.stores.glance_store_adapter import GlanceStoreAdapter


class NotFound(Exception):  # the names glance_store.exceptions uses
    pass


class StorageFull(Exception):
    pass


class RemoteServiceUnavailable(Exception):
    pass


class FakeCinderDriver:
    def __init__(self) -> None:
        self.volumes: dict[str, bytes] = {}
        self.fail_with: Exception | None = None

    def add(self, image_id, image_file, image_size, hashing_algo, context=None,
            verifier=None):  # noqa: ANN001, ANN201
        if self.fail_with:
            raise self.fail_with
        data = b""
        while piece := image_file.read(3):  # small reads: the adapter must buffer
            data += piece
        self.volumes[image_id] = data
        return f"cinder://{image_id}", len(data), "multihash", {"volume_type": "fast"}

    def get(self, location, offset=0, chunk_size=None, context=None):  # noqa: ANN001, ANN201
        if self.fail_with:
            raise self.fail_with
        data = self._data(location)[offset:]
        return iter([data[i:i + 4] for i in range(0, len(data), 4)]), len(data)

    def get_size(self, location, context=None):  # noqa: ANN001, ANN201
        return len(self._data(location))

    def delete(self, location, context=None):  # noqa: ANN001, ANN201
        self._data(location)
        del self.volumes[location.removeprefix("cinder://")]

    def _data(self, location: str) -> bytes:
        try:
            return self.volumes[location.removeprefix("cinder://")]
        except KeyError:
            raise NotFound(location) from None


@pytest.fixture
def adapter():
    driver = FakeCinderDriver()
    return GlanceStoreAdapter("block", "cinder", driver, lambda uri: uri), driver


def test_round_trip_with_offset_and_length(adapter):
    store, _ = adapter
    stored = store.add("vol-1", iter([b"hello ", b"world", b"!"]))
    assert (stored.url, stored.size, stored.metadata) == ("cinder://vol-1", 12,
                                                          {"volume_type": "fast"})
    assert store.owns(stored.url) and not store.owns("file:///etc/passwd")
    assert b"".join(store.get(stored.url)) == b"hello world!"
    assert b"".join(store.get(stored.url, 3, 5)) == b"lo wo"
    assert store.size(stored.url) == 12
    store.delete(stored.url)
    with pytest.raises(DataNotFound):
        store.delete(stored.url)


def test_glance_store_errors_become_typed_errors(adapter):
    store, driver = adapter
    driver.fail_with = StorageFull("no room")
    with pytest.raises(StoreFull):
        store.add("vol-2", iter([b"x"]))
    driver.fail_with = RemoteServiceUnavailable("cinder down")
    with pytest.raises(StoreUnavailable):
        store.get("cinder://vol-2")
    with pytest.raises(DataNotFound):
        store.size("vsphere://elsewhere")


def test_errors_of_the_callers_chunks_pass_unchanged(adapter):
    store, _ = adapter

    class ClientGone(Exception):
        pass

    def chunks():  # noqa: ANN202
        yield b"x"
        raise ClientGone

    with pytest.raises(ClientGone):
        store.add("vol-3", chunks())


def test_missing_glance_store_is_a_clear_start_up_error(monkeypatch):
    import sys

    from glimpse.stores import glance_store_adapter

    monkeypatch.setitem(sys.modules, "glance_store", None)
    monkeypatch.setitem(sys.modules, "glance_store._drivers", None)
    monkeypatch.setitem(sys.modules, "glance_store._drivers.cinder", None)
    with pytest.raises(ValueError, match="glimpse\\[glance-store\\]"):
        glance_store_adapter._driver_class("cinder")
