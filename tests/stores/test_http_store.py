"""The http store: redirects checked against the web-download URI filter at every hop,
servers that ignore Range, clear errors. Real HTTP server on 127.0.0.1 only."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from glimpse.config import load_config
from glimpse.stores.base import DataNotFound, StoreError, StoreForbidden, StoreUnavailable
from glimpse.stores.http import HttpStore
from tests.stores.http_server import RangeServer


@pytest.fixture(scope="module")
def server():
    srv = RangeServer()
    yield srv
    srv.stop()


def _store(tmp_path, port: int, **filters: str) -> HttpStore:
    # The test server is on loopback, which the address guard refuses unless allowed.
    values = {"allowed_ports": str(port), "allowed_hosts": "127.0.0.1", **filters}
    lines = [f"{k} = {v}" for k, v in values.items()]
    path = tmp_path / "glance-api.conf"
    path.write_text("[import_filtering_opts]\n" + "\n".join(lines) + "\n")
    return HttpStore("web", conf=load_config([str(path)]), timeout=5)


def _port(server: RangeServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_redirects_the_filter_allows_are_followed(server, tmp_path):
    url = server.put("img", b"0123456789")
    store = _store(tmp_path, _port(server))
    via = f"{server.url}/redirect/2?to={quote(url, safe='')}"
    assert b"".join(store.get(via, 2, 3)) == b"234"
    assert store.size(via) == 10


def test_a_redirect_the_filter_refuses_is_not_followed(server, tmp_path):
    url = server.put("img", b"0123456789")
    # localhost is not among the allowed hosts (only 127.0.0.1 is).
    store = _store(tmp_path, _port(server))
    target = url.replace("127.0.0.1", "localhost")
    before = len(server.requests)
    with pytest.raises(StoreForbidden, match="refused"):
        b"".join(store.get(f"{server.url}/redirect/0?to={quote(target, safe='')}"))
    # Only the redirecting request reached the server: the refused hop was not made.
    assert [r[1] for r in server.requests[before:]] == ["/redirect/0"]


def test_a_refused_hop_later_in_the_chain_is_caught(server, tmp_path):
    store = _store(tmp_path, _port(server))
    bad = "http://127.0.0.1:1/elsewhere"  # port 1 is not in allowed_ports
    with pytest.raises(StoreForbidden):
        store.size(f"{server.url}/redirect/3?to={quote(bad, safe='')}")


def test_too_many_redirects(server, tmp_path):
    url = server.put("img", b"x")
    store = _store(tmp_path, _port(server))
    with pytest.raises(StoreError, match="redirects"):
        store.size(f"{server.url}/redirect/9?to={quote(url, safe='')}")


def test_server_that_ignores_range(server, tmp_path):
    data = bytes(range(256)) * 8192
    server.put("big", data)
    store = HttpStore("web", timeout=5)
    url = f"{server.url}/norange/big"
    assert b"".join(store.get(url, 1_000_000, 70_000)) == data[1_000_000:1_070_000]
    assert b"".join(store.get(url, 2_000_000)) == data[2_000_000:]


@pytest.mark.parametrize(("status", "error"), [
    (404, DataNotFound), (410, DataNotFound), (403, StoreForbidden), (401, StoreForbidden),
    (500, StoreUnavailable), (503, StoreUnavailable), (400, StoreError),
])
def test_statuses_become_typed_errors(server, status, error):
    store = HttpStore("web", timeout=5)
    with pytest.raises(error):
        store.size(f"{server.url}/status/{status}")


def test_writes_are_refused():
    store = HttpStore("web")
    assert store.read_only
    with pytest.raises(StoreForbidden):
        store.add("x", iter([b"x"]))
    with pytest.raises(StoreForbidden):
        store.delete("http://127.0.0.1:9/x")
