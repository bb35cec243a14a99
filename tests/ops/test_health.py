"""/healthcheck as oslo.middleware answers it, and the admins' detailed report."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.services import runtime as runtime_mod
from tests.conftest import as_project


def test_probe_answers_ok_as_text(client: TestClient) -> None:
    r = client.get("/healthcheck", headers={"Accept": "*/*"})
    assert r.status_code == 200
    assert r.text == "OK"
    assert r.headers["content-type"].startswith("text/plain")


def test_probe_answers_json_when_asked(client: TestClient) -> None:
    r = client.get("/healthcheck")
    assert r.status_code == 200
    assert r.json() == {"detailed": False, "reasons": ["OK"]}


def test_probe_needs_no_credentials(app_factory, tmp_path: Path) -> None:  # noqa: ANN001
    # trusted-headers refuses requests without identity everywhere else
    client = app_factory(auth_strategy="trusted-headers")
    assert client.get("/v2/images").status_code == 401
    assert client.get("/healthcheck").status_code == 200


def test_disable_by_file_drains_the_node(app_factory, tmp_path: Path) -> None:  # noqa: ANN001
    flag = tmp_path / "drain"
    client = app_factory(**{"healthcheck.disable_by_file_path": str(flag)})
    assert client.get("/healthcheck").status_code == 200
    flag.write_text("")
    r = client.get("/healthcheck", headers={"Accept": "text/plain"})
    assert r.status_code == 503
    assert r.text == "DISABLED BY FILE"
    flag.unlink()
    assert client.get("/healthcheck").status_code == 200


def test_detailed_report_lists_database_and_each_store(app_factory, tmp_path: Path,  # noqa: ANN001
                                                       ) -> None:
    client = app_factory(**{
        "enabled_backends": {"fast": "file", "slow": "file"},
        "glance_store.default_backend": "fast",
    })
    r = client.get("/healthcheck/detailed")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["healthy"] is True
    names = [c["name"] for c in doc["reasons"]]
    assert names == ["database", "store:fast", "store:slow"]
    for check in doc["reasons"]:
        assert check["available"] is True
        assert isinstance(check["latency_ms"], float) and check["latency_ms"] >= 0


def test_detailed_report_is_for_admins_only(client: TestClient) -> None:
    r = client.get("/healthcheck/detailed", headers=as_project("p1"))
    assert r.status_code == 403


def test_a_broken_store_makes_the_report_503(app_factory, tmp_path: Path) -> None:  # noqa: ANN001
    client = app_factory()
    rt = client.app.state.runtime
    datadir = Path(rt.stores.default.datadir)
    datadir.rmdir()
    r = client.get("/healthcheck/detailed")
    assert r.status_code == 503
    store = next(c for c in r.json()["reasons"] if c["name"].startswith("store:"))
    assert store["available"] is False
    assert "does not exist" in store["reason"]
    # the plain probe stays cheap: it checks nothing but the drain file
    assert client.get("/healthcheck").status_code == 200


def test_public_detailed_mode_runs_the_checks_on_the_probe(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**{"healthcheck.detailed": True})
    r = client.get("/healthcheck", headers={**as_project("p1"), "Accept": "text/plain"})
    assert r.status_code == 200
    assert r.text.startswith("database: OK")


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield sock
    sock.close()


def _client_with_broker(tmp_path: Path, db_url: str, url: str) -> TestClient:
    """Notifications on, to the broker at ``url`` (the one the report checks)."""
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text(f"[DEFAULT]\ntransport_url = {url}\n"
                         "[oslo_messaging_notifications]\ndriver = messagingv2\n")
    conf = load_config([str(conf_file)], {"data_dir": str(tmp_path / "data"),
                                          "database.connection": db_url})
    rt = runtime_mod.build(conf, migrate=True)
    return TestClient(create_app(conf, rt), headers={"Accept": "application/json"})


def test_the_broker_is_checked_when_configured(tmp_path: Path, db_url: str,
                                               listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    client = _client_with_broker(tmp_path, db_url, f"rabbit://guest:guest@127.0.0.1:{port}/")
    try:
        doc = client.get("/healthcheck/detailed").json()
        broker = next(c for c in doc["reasons"] if c["name"] == "broker")
        assert broker["available"] is True
        assert f"127.0.0.1:{port}" in broker["reason"]
        assert "guest" not in str(doc)  # never the credentials
    finally:
        client.app.state.runtime.close()


def test_an_unreachable_broker_fails_the_report(tmp_path: Path, db_url: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = _client_with_broker(tmp_path, db_url, f"rabbit://127.0.0.1:{port}/")
    try:
        r = client.get("/healthcheck/detailed")
        assert r.status_code == 503
        broker = next(c for c in r.json()["reasons"] if c["name"] == "broker")
        assert broker["available"] is False
    finally:
        client.app.state.runtime.close()
