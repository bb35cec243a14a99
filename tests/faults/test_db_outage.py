"""The database connection cut mid-load, for real: a TCP proxy between ``glimpse
serve`` and the PostgreSQL (or MariaDB) server resets every connection and refuses
new ones for a few seconds while eight clients list, show and PATCH, and one
client is half-way through an upload.

During the outage every request that needs the database answers 503 (never 500),
no change is half applied (a PATCH of two properties shows both or neither, the
upload cut short leaves the image queued with no data), and once the database is
reachable again the service answers by itself, without a restart.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import BACKENDS, start_server
from tests.faults.load import JSON, Load

SERVER_DBS = [b for b in ("postgresql", "mysql") if b in BACKENDS]
OUTAGE = 4.0  # seconds the database is unreachable
DATA = os.urandom(3 * 1024 * 1024)


def _through(proxy_port: int, db_url: str) -> str:
    return (
        make_url(db_url)
        .set(host="127.0.0.1", port=proxy_port)
        .render_as_string(hide_password=False)
    )


def _store_files(folder) -> list[str]:  # noqa: ANN001
    return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.mark.parametrize("db_url", SERVER_DBS, indirect=True)
def test_database_outage_answers_503_and_recovers(db_url, tmp_path, tcp_proxy):
    url = make_url(db_url)
    proxy = tcp_proxy(url.host, url.port)
    store = tmp_path / "store"
    server = start_server(
        tmp_path,
        _through(proxy.port, db_url),
        config_text=f"""
lease_period = 2
lease_sweep_interval = 0.3
enabled_backends = a:file
[glance_store]
default_backend = a
[a]
filesystem_store_datadir = {store}
""",
    )
    load = Load(server.url, clients=8)
    api = httpx.Client(base_url=server.url, headers=JSON, timeout=30)
    try:
        load.start()
        r = api.post(
            "/v2/images",
            json={"name": "cut-upload", "disk_format": "raw", "container_format": "bare"},
        )
        upload_id = r.json()["id"]
        gate = threading.Event()
        upload: dict[str, httpx.Response | Exception] = {}

        def body() -> Iterator[bytes]:
            yield DATA[: len(DATA) // 2]
            gate.wait(30)
            yield DATA[len(DATA) // 2 :]

        def send() -> None:
            try:
                upload["r"] = httpx.put(
                    f"{server.url}/v2/images/{upload_id}/file",
                    content=body(),
                    timeout=60,
                    headers={**JSON, "Content-Type": "application/octet-stream"},
                )
            except httpx.HTTPError as exc:
                upload["r"] = exc

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 20
        while api.get(f"/v2/images/{upload_id}").json()["status"] != "saving":
            assert time.monotonic() < deadline, "the upload did not start"
            time.sleep(0.05)

        time.sleep(1.0)  # load before the outage
        cut_at = time.monotonic()
        proxy.cut()
        gate.set()  # the upload finishes its body while the database is away
        time.sleep(OUTAGE)
        during = [a for a in load.between(cut_at + 0.5, time.monotonic())]
        proxy.restore()
        restored_at = time.monotonic()
        sender.join(60)

        # Service comes back by itself: a first success within a few seconds ...
        deadline = restored_at + 15
        while api.get("/v2/images").status_code != 200:
            assert time.monotonic() < deadline, "service did not come back"
            time.sleep(0.2)
        back_at = time.monotonic()
        time.sleep(2.0)  # ... and then every request succeeds
        settled = load.between(back_at + 0.5, time.monotonic())
        load.stop()

        every = load.statuses(load.answers)
        print(
            f"\noutage {OUTAGE}s: answers {dict(every)}; during {dict(load.statuses(during))};"
            f" back after {back_at - restored_at:.2f}s; proxy cut {proxy.cuts} connections,"
            f" refused {proxy.refused}"
        )
        assert not [a for a in load.answers if a.status >= 500 and a.status != 503], every
        assert not [a for a in load.answers if a.status == 0], [
            a.detail for a in load.answers if a.status == 0
        ]
        assert during and load.statuses(during)[503] >= len(during) * 0.9, load.statuses(during)
        for a in during:
            if a.status == 503:
                assert "database is unavailable" in a.detail, a.detail
        assert settled and set(load.statuses(settled)) == {200}, load.statuses(settled)

        # The upload cut short: 503, then the image is queued again and no data is left.
        r = upload["r"]
        assert isinstance(r, httpx.Response) and r.status_code == 503, r
        deadline = time.monotonic() + 20
        while (status := api.get(f"/v2/images/{upload_id}").json()["status"]) != "queued":
            assert status == "saving" and time.monotonic() < deadline, status
            time.sleep(0.2)
        assert _store_files(store) == []
        check = load.check_no_lost_or_half_updates(api)
        print(
            f"PATCHes answered 200: {check['patched']}; lost {check['lost']}, "
            f"half-applied {check['half']}"
        )
        assert check["lost"] == 0 and check["half"] == 0, check
        # The upload can be retried.
        r = api.put(
            f"/v2/images/{upload_id}/file",
            content=DATA,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 204, r.text
        assert _store_files(store) == [upload_id]
        assert "Unhandled error" not in server.log.read_text()
    finally:
        load._stop.set()
        api.close()
        server.stop()
