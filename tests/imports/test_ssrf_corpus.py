# ruff: noqa: F811 - the tests take the imported fixtures net and public_web
"""SSRF corpus for web-download, the tasks API's import_from and the http store,
beyond tests/imports/test_address_guard.py (whose ``net`` fixture this reuses):
every spelling of loopback, link-local and unspecified addresses, names that
resolve to them, redirects to them, and DNS answers that change between the
check and the connection.

No packet leaves loopback: ``net`` makes connecting anywhere but 127.0.0.0/8
and ::1 impossible and answers every name lookup itself; each test also
asserts the guard never even tried to connect (``net.connects`` and
``net.refused`` stay empty), so a refusal is the guard's, not the sandbox's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from glimpse import outbound
from glimpse.errors import BadRequest
from glimpse.stores.base import StoreForbidden
from glimpse.stores.http import HttpStore
from tests.imports.conftest import image, new_image, start_import, wait_task_done
from tests.imports.test_address_guard import (  # noqa: F401 - net, public_web: fixtures
    PUBLIC,
    Network,
    conf_with,
    net,
    public_web,
    web_download,
)


@pytest.fixture
def db_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """SQLite only: what is under test does not depend on the database (the
    rollback of a refused upload is covered on every one by tests/api/test_data.py)."""
    path = tmp_path / "glimpse.sqlite"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"

LOOPBACK = [
    "127.0.0.1", "127.1", "127.0.1", "127.000.000.001", "2130706433", "0x7f000001",
    "0X7F000001", "0x7f.1", "0x7f.0.0.1", "0x7F.0x00.0x00.0x01", "017700000001",
    "0177.0.0.1", "0177.1", "00000177.0.0.1", "127.255.255.254", "127.0.0.1.",
    "[::1]", "[0:0:0:0:0:0:0:1]", "[0000::0001]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
    "[::FFFF:7F00:0001]", "[0:0:0:0:0:ffff:127.0.0.1]", "[::127.0.0.1]",
    "[64:ff9b::127.0.0.1]", "[64:ff9b::7f00:1]", "localhost", "LocalHost.", "localhost.",
]
LINK_LOCAL = [
    "169.254.169.254", "2852039166", "0xa9fea9fe", "0xA9FEA9FE", "0251.0376.0251.0376",
    "0251.254.169.254", "169.254.43518", "169.16689662", "0xa9.0xfe.0xa9fe",
    "0xa9.254.0251.0xfe", "169.254.0.1", "169.254.255.255", "[fe80::]", "[fe80::1]",
    "[FE80::A9FE:A9FE]", "[febf:ffff::1]", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]",
    "[::169.254.169.254]", "[64:ff9b::169.254.169.254]", "[64:ff9b::a9fe:a9fe]",
]
UNSPECIFIED = [
    "0", "0.0.0.0", "0x0", "00", "0.0", "0.0.0", "000.000.000.000", "0.1.2.3", "[::]",
    "[0::0]", "[0:0:0:0:0:0:0:0]", "[::ffff:0.0.0.0]", "[::ffff:0:0]",
]
# Spellings whose host different URL parsers read differently: refused outright.
AMBIGUOUS = [
    "public.test@127.0.0.1", "127.0.0.1@public.test", "public.test:80@127.0.0.1",
    "public.test\\@127.0.0.1", "127.0.0.1\\public.test", "127.0.0.1%2f", "%31%32%37.0.0.1",
    "[fe80::1%25eth0]", "[::1%25lo]", "\u2460\u2461\u2466.0.0.1", "\uff11\uff12\uff17.0.0.1",
    "\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3", "127.0.0.1\t", " 127.0.0.1",
    "127.0.0.1\x00.public.test", "127.0.0.1\r\n.public.test",
]
CORPUS = ([("loopback", h) for h in LOOPBACK] + [("link-local", h) for h in LINK_LOCAL]
          + [("unspecified", h) for h in UNSPECIFIED])


def _names(network: Network) -> None:
    """Names that resolve to refused addresses, in the sandboxed resolver."""
    network.names.update({
        "localhost": ["127.0.0.1", "::1"],
        "lo.public.test": ["127.0.0.1"],
        "127.0.0.1.nip.test": ["127.0.0.1"],
        "v6lo.public.test": ["::1"],
        "mapped.public.test": ["::ffff:127.0.0.1"],
        "metadata.public.test": ["169.254.169.254"],
        "metadata6.public.test": ["fe80::a9fe:a9fe%3"],
        "nat64.public.test": ["64:ff9b::a9fe:a9fe"],
        "zero.public.test": ["0.0.0.0"],
        "mixed.public.test": [PUBLIC, "127.0.0.1"],
        "mixed6.public.test": ["2001:db8::5", "::1"],
    })


NAMES = ["lo.public.test", "127.0.0.1.nip.test", "v6lo.public.test", "mapped.public.test",
         "metadata.public.test", "metadata6.public.test", "nat64.public.test",
         "zero.public.test", "mixed.public.test", "mixed6.public.test"]


def test_every_literal_spelling_is_refused_without_a_lookup(tmp_path, net):
    _names(net)
    conf = conf_with(tmp_path)
    refused = 0
    for kind, host in CORPUS:
        for url in (f"http://{host}/latest/meta-data", f"https://{host}:443/x",
                    f"http://{host}:80/x"):
            with pytest.raises(BadRequest) as caught:
                outbound.check_destination(conf, url)
            message = caught.value.message
            named = kind if not host.lower().startswith("localhost") else "loopback"
            assert (f" {named} address" in message
                    or "the URI cannot be parsed" in message), (url, message)
            refused += 1
    assert refused == 3 * len(CORPUS)
    # Only the name "localhost" was looked up (in the sandbox); nothing connected.
    assert set(net.lookups) <= {"localhost"}
    assert net.connects == [] and net.refused == []


def test_ambiguous_authorities_are_refused(tmp_path, net):
    conf = conf_with(tmp_path)
    for host in AMBIGUOUS:
        url = f"http://{host}/x"
        with pytest.raises(BadRequest):
            outbound.check_destination(conf, url)
    assert net.connects == [] and net.refused == []


def test_names_resolving_to_refused_addresses(tmp_path, net):
    _names(net)
    conf = conf_with(tmp_path)
    for name in NAMES:
        with pytest.raises(BadRequest, match="resolves to .*(loopback|link-local|unspecified)"):
            outbound.check_destination(conf, f"http://{name}/x")
    assert net.lookups == NAMES
    assert net.connects == [] and net.refused == []


def test_the_guarded_client_refuses_the_corpus_at_connect_time(tmp_path, net):
    """Below the up-front check: the connection itself (what redirects and
    rebinding reach) refuses every spelling and name."""
    _names(net)
    conf = conf_with(tmp_path)
    with outbound.client(conf, timeout=5) as http:
        for _, host in CORPUS + [("name", n) for n in NAMES]:
            # (httpx itself refuses to parse a few spellings: 127.000.000.001)
            with pytest.raises((outbound.DestinationRefused, httpx.InvalidURL)):
                http.get(f"http://{host}/x")
    assert net.connects == [] and net.refused == []


def test_http_store_refuses_the_corpus(tmp_path, net):
    _names(net)
    store = HttpStore("web", conf=conf_with(tmp_path))
    for _, host in CORPUS + [("name", n) for n in NAMES]:
        with pytest.raises(StoreForbidden):
            store.size(f"http://{host}/image")
        with pytest.raises(StoreForbidden):
            b"".join(store.get(f"http://{host}/image"))
    assert net.connects == [] and net.refused == []


def test_web_download_and_import_from_answer_400_never_500(make_app, net):
    _names(net)
    client = make_app()
    image_id = new_image(client)
    hosts = [h for _, h in CORPUS] + NAMES + AMBIGUOUS
    for host in hosts:
        r = start_import(client, image_id, web_download(f"http://{host}/disk"))
        assert r.status_code == 400, (host, r.status_code, r.text)
        r = client.post("/v2/tasks", json={"type": "import", "input": {
            "import_from": f"http://{host}/disk", "import_from_format": "raw",
            "image_properties": {"disk_format": "raw", "container_format": "bare"}}})
        assert r.status_code == 400, (host, r.status_code, r.text)
    assert client.get(f"/v2/images/{image_id}/tasks").json()["tasks"] == []
    assert client.get("/v2/tasks").json()["tasks"] == []
    assert image(client, image_id)["status"] == "queued"
    assert net.connects == [] and net.refused == []


REDIRECT_TARGETS = ["http://127.1/x", "http://0x7f.1/x", "http://2130706433/x",
                    "http://[::ffff:127.0.0.1]/x", "http://[::1]:80/x", "http://0/x",
                    "http://169.254.169.254/latest/meta-data/", "http://0xa9fea9fe/x",
                    "http://[fe80::1]/x", "http://metadata.public.test/x",
                    "http://mixed.public.test/x", "http://lo.public.test:8080/x",
                    "http://public.test@127.0.0.1/x", "file:///etc/passwd",
                    "gopher://127.0.0.1:6379/_INFO"]


def test_redirects_to_the_corpus_fail_the_task(make_app, public_web, net):
    _names(net)
    for i, target in enumerate(REDIRECT_TARGETS):
        public_web.redirect(f"/hop{i}", target)
    client = make_app()
    for i, target in enumerate(REDIRECT_TARGETS):
        image_id = new_image(client)
        r = start_import(client, image_id, web_download(f"http://public.test/hop{i}"))
        assert r.status_code == 202, r.text
        task = wait_task_done(client, image_id)
        assert task["status"] == "failure", (target, task)
        assert image(client, image_id)["status"] == "queued"
    # Every hop reached the public host only; no redirect target was connected to.
    assert set(net.connects) == {(PUBLIC, 80)}
    assert len(public_web.hits) == len(REDIRECT_TARGETS)
    assert net.refused == []


@pytest.mark.parametrize("second", [["127.0.0.1"], ["::1"], ["::ffff:127.0.0.1"],
                                    ["169.254.169.254"], ["0.0.0.0"],
                                    [PUBLIC, "127.0.0.1"], ["fe80::1%2"]])
def test_rebinding_to_each_kind_is_caught_at_connect(make_app, public_web, net, second):
    """The name is public at the check and something else at the connection."""
    public_web.data("/disk", b"x" * 1000)
    net.names["rebind.public.test"] = [[PUBLIC], second]
    client = make_app()
    image_id = new_image(client)
    r = start_import(client, image_id, web_download("http://rebind.public.test/disk"))
    assert r.status_code == 202, r.text
    task = wait_task_done(client, image_id)
    assert task["status"] == "failure", task
    assert "which is a" in task["message"] or "which is an" in task["message"], task
    assert net.connects == [] and public_web.hits == [] and net.refused == []
    assert image(client, image_id)["status"] == "queued"
