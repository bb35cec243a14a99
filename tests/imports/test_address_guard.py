"""The address guard of web-download, the tasks API's import_from and the http store
(glimpse.outbound + glimpse.domain.uri_filter.address_refusal).

Two kinds of test, so that no packet ever leaves 127.0.0.0/8 and ::1, even with
a broken guard:
- loopback refusals against a real HTTP server on 127.0.0.1 port 80 (the port
  the default allowed_ports accept; the tests run as root), with literal
  addresses and with names that resolve to loopback through /etc/hosts;
- link-local, metadata, unspecified and disallowed addresses with a resolver the
  test controls (``outbound.resolver``) and ``no_outside_network``, which makes
  connecting anywhere but loopback impossible (and name lookups too) and records
  every attempt, so a test can prove the guard never even tried.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator

import pytest

from glimpse import outbound
from glimpse.config import load_config
from glimpse.errors import BadRequest
from glimpse.stores.base import StoreForbidden
from glimpse.stores.http import HttpStore
from tests.imports.conftest import (
    Served,
    image,
    new_image,
    served_at,
    start_import,
    wait_task_done,
)

DATA = b"guarded image bytes " * 5_000
# TEST-NET-3 (RFC 5737): never routed; connections to it are rewritten to the
# local test server by no_outside_network, so it stands for "a public host".
PUBLIC = "203.0.113.10"
# The test databases (PyMySQL connects through Python sockets): not recorded.
DATABASE_PORTS = {3306, 5432}


def web_download(uri: str) -> dict:
    return {"method": {"name": "web-download", "uri": uri}}


@pytest.fixture
def web80() -> Iterator[Served]:
    """A real HTTP server on 127.0.0.1:80 (another test may hold the port briefly)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            manager = served_at("127.0.0.1", 80)
            served = manager.__enter__()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield served
    finally:
        manager.__exit__(None, None, None)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Network:
    """What the guarded code tried: names looked up, addresses connected to."""

    def __init__(self) -> None:
        self.names: dict[str, list[str] | list[list[str]]] = {}
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []
        self.refused: list[tuple[str, int]] = []
        self.rewrite: dict[tuple[str, int], tuple[str, int]] = {}

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        answer = self.names.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test)")
        if answer and isinstance(answer[0], list):  # one answer per lookup (rebinding)
            return list(answer.pop(0))  # type: ignore[arg-type]
        return list(answer)  # type: ignore[arg-type]


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Network:
    network = Network()
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        host, port = address[0], address[1]  # type: ignore[index]
        target = network.rewrite.get((host, port))
        if target is not None:
            network.connects.append((host, port))
            return real_connect(sock, target)
        if not _is_loopback(host):
            network.refused.append((host, port))
            raise OSError(f"test: no connection outside loopback ({host}:{port})")
        if port not in DATABASE_PORTS:
            network.connects.append((host, port))
        return real_connect(sock, address)

    def no_lookup(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and (host == "localhost" or _is_loopback(host)
                                      or host == PUBLIC):
            return real_getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"test: no name lookups ({host})")

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    monkeypatch.setattr(outbound, "resolver", network.resolve)
    return network


def conf_with(tmp_path, text: str = ""):  # noqa: ANN001, ANN201
    path = tmp_path / "guard.conf"
    path.write_text(text)
    return load_config([str(path)], {"data_dir": str(tmp_path / "data")})


# ---------------------------------------------------------------- loopback, real server on :80


def test_loopback_web_download_refused_at_once(make_app, web80):
    """Default options: port 80 passes the URI filter, the loopback address does not."""
    web80.data("/x", DATA)
    client = make_app()
    image_id = new_image(client)
    for uri in ("http://127.0.0.1/x", "http://localhost/x", "http://127.0.0.1:80/x",
                "http://LOCALHOST./x", "http://127.1/x", "http://2130706433/x",
                "http://0x7f.0.0.1/x", "http://[::1]/x",
                "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://[::]/x"):
        r = start_import(client, image_id, web_download(uri))
        assert r.status_code == 400, (uri, r.text)
        message = r.json()["message"]
        assert message.startswith("URI for web-download does not pass filtering"), message
        assert "allowed_hosts" in message, message
    assert client.get(f"/v2/images/{image_id}/tasks").json()["tasks"] == []
    assert image(client, image_id)["status"] == "queued"
    assert web80.hits == []


def test_loopback_allowed_when_listed(make_app, web80):
    web80.data("/disk", DATA)
    client = make_app("[import_filtering_opts]\nallowed_hosts = [127.0.0.1, localhost]\n")
    for uri in ("http://127.0.0.1/disk", "http://localhost/disk"):
        image_id = new_image(client)
        assert start_import(client, image_id, web_download(uri)).status_code == 202
        task = wait_task_done(client, image_id)
        assert task["status"] == "success", task["message"]
        assert image(client, image_id)["size"] == len(DATA)
    assert web80.hits == ["/disk", "/disk"]


def test_redirect_to_loopback_name_is_refused(make_app, web80):
    """127.0.0.1 is listed; a hop to localhost (same address, other name) is not."""
    web80.data("/secret", b"internal")
    web80.redirect("/hop", "http://localhost/secret")
    client = make_app("[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n")
    image_id = new_image(client)
    assert start_import(client, image_id, web_download("http://127.0.0.1/hop")).status_code \
        == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert "does not pass filtering: http://localhost/secret" in task["message"]
    assert web80.hits == ["/hop"]
    assert image(client, image_id)["status"] == "queued"


def test_legacy_import_from_loopback_is_400_without_task(make_app, web80):
    web80.data("/x", DATA)
    client = make_app()
    body = {"type": "import", "input": {
        "import_from": "http://localhost/x", "import_from_format": "raw",
        "image_properties": {"disk_format": "raw", "container_format": "bare"}}}
    r = client.post("/v2/tasks", json=body)
    assert r.status_code == 400
    assert r.json()["message"].startswith(
        "URI for legacy import task does not pass filtering: http://localhost/x")
    assert client.get("/v2/tasks").json()["tasks"] == []
    assert web80.hits == []


def test_http_store_refuses_loopback_unless_listed(tmp_path, web80):
    web80.data("/located", DATA)
    closed = HttpStore("web", conf=conf_with(tmp_path))
    with pytest.raises(StoreForbidden, match="loopback"):
        closed.size("http://localhost/located")
    with pytest.raises(StoreForbidden, match="loopback"):
        b"".join(closed.get("http://127.0.0.1/located"))
    assert web80.hits == []
    listed = HttpStore("web", conf=conf_with(
        tmp_path, "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n"))
    assert b"".join(listed.get("http://127.0.0.1/located")) == DATA


# ---------------------------------------------------------------- resolver level, no connecting


@pytest.mark.parametrize(("answer", "kind"), [
    (["169.254.169.254"], "link-local"),
    (["fe80::a9fe:a9fe%2"], "link-local"),
    (["::ffff:169.254.169.254"], "link-local"),
    (["198.51.100.7", "169.254.169.254"], "link-local"),  # one bad address is enough
    (["127.0.0.53"], "loopback"),
    (["::1"], "loopback"),
    (["0.0.0.0"], "unspecified"),
    (["::"], "unspecified"),
])
def test_names_resolving_to_local_addresses_are_refused(tmp_path, net, answer, kind):
    net.names["metadata.test"] = answer
    conf = conf_with(tmp_path)
    with pytest.raises(BadRequest, match=f"is an? {kind} address") as caught:
        outbound.check_destination(conf, "http://metadata.test/latest/meta-data")
    assert caught.value.status == 400
    assert net.lookups == ["metadata.test"]
    assert net.connects == [] and net.refused == []


def test_metadata_address_literal_and_spellings_refused(tmp_path, net):
    conf = conf_with(tmp_path)
    for uri in ("http://169.254.169.254/latest", "http://[fe80::1]/x",
                "http://[::ffff:a9fe:a9fe]/x", "http://2852039166/x"):
        with pytest.raises(BadRequest, match="link-local address"):
            outbound.check_destination(conf, uri)
    assert net.lookups == [] and net.connects == [] and net.refused == []


def test_private_ranges_stay_allowed_and_disallowed_hosts_apply_to_addresses(tmp_path, net):
    net.names["intranet.test"] = ["10.1.2.3"]
    net.names["other.test"] = ["192.168.7.7", "fd00::7"]
    conf = conf_with(tmp_path)
    outbound.check_destination(conf, "http://intranet.test/x")  # RFC 1918: allowed
    outbound.check_destination(conf, "http://other.test/x")
    blocked = conf_with(tmp_path, "[import_filtering_opts]\ndisallowed_hosts = [10.1.2.3]\n")
    with pytest.raises(BadRequest, match="resolves to 10.1.2.3, which is in disallowed_hosts"):
        outbound.check_destination(blocked, "http://intranet.test/x")
    listed = conf_with(tmp_path, "[import_filtering_opts]\nallowed_hosts = [metadata.test]\n")
    net.names["metadata.test"] = ["169.254.169.254"]
    outbound.check_destination(listed, "http://metadata.test/x")  # the operator said so
    assert net.connects == [] and net.refused == []


def test_unresolvable_name_is_refused(tmp_path, net):
    with pytest.raises(BadRequest, match="cannot be resolved"):
        outbound.check_destination(conf_with(tmp_path), "http://nowhere.test/x")


def test_web_download_of_metadata_name_is_400_without_task(make_app, net):
    net.names["metadata.test"] = ["169.254.169.254"]
    client = make_app()
    image_id = new_image(client)
    r = start_import(client, image_id, web_download("http://metadata.test/latest/user-data"))
    assert r.status_code == 400
    assert "link-local address" in r.json()["message"]
    assert client.get(f"/v2/images/{image_id}/tasks").json()["tasks"] == []
    assert net.connects == [] and net.refused == []


@pytest.fixture
def public_web(web: Served, net: Network) -> Served:
    """The local test server, reached as if it were the public host public.test
    (PUBLIC:80 is rewritten to it when connecting)."""
    net.names["public.test"] = [PUBLIC]
    net.rewrite[(PUBLIC, 80)] = ("127.0.0.1", web.port)
    return web


def test_download_connects_to_the_checked_address(make_app, public_web, net):
    public_web.data("/disk", DATA)
    client = make_app()
    image_id = new_image(client)
    assert start_import(client, image_id, web_download("http://public.test/disk")).status_code \
        == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "success", task["message"]
    # Resolved once at the call and once by the connection; connected to that address.
    assert net.lookups == ["public.test", "public.test"]
    assert net.connects == [(PUBLIC, 80)] and net.refused == []
    assert public_web.hits == ["/disk"]


def test_redirect_hop_to_metadata_service_is_refused(make_app, public_web, net):
    net.names["metadata.test"] = ["169.254.169.254"]
    public_web.redirect("/hop", "http://metadata.test/latest/meta-data/iam")
    client = make_app()
    image_id = new_image(client)
    assert start_import(client, image_id, web_download("http://public.test/hop")).status_code \
        == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert ("does not pass filtering: http://metadata.test/latest/meta-data/iam"
            in task["message"])
    assert "link-local address" in task["message"]
    assert net.connects == [(PUBLIC, 80)] and net.refused == []
    assert image(client, image_id)["status"] == "queued"


def test_rebinding_between_check_and_fetch_is_caught(make_app, public_web, net):
    """The name answers a public address at the call, then loopback: the fetch
    checks the address it connects to, so it never reaches loopback."""
    public_web.data("/disk", DATA)
    net.names["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    client = make_app()
    image_id = new_image(client)
    assert start_import(client, image_id, web_download("http://rebind.test/disk")).status_code \
        == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure"
    assert "resolves to 127.0.0.1, which is a loopback address" in task["message"]
    assert net.connects == [] and public_web.hits == []


def test_http_store_refuses_metadata_location(tmp_path, net):
    net.names["metadata.test"] = ["169.254.169.254"]
    store = HttpStore("web", conf=conf_with(tmp_path))
    with pytest.raises(StoreForbidden, match="link-local"):
        store.size("http://metadata.test/x")
    with pytest.raises(StoreForbidden, match="link-local"):
        b"".join(store.get("http://metadata.test/x"))
    assert net.connects == [] and net.refused == []
