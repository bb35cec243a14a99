"""Distributed glance-direct with live workers (seed 000 §6.2).

Three real ``glimpse serve`` processes share one PostgreSQL database and one
file store (as deployments share Ceph or Swift) but each has its own staging
directory and records its own URL (``worker_self_reference_url``) when it
stages. An import or delete that reaches a worker other than the one holding
the staged data is replayed there with the caller's identity: the workers run
with ``auth_strategy = trusted-headers``, so a worker that did not forward the
identity headers would get 401 from the stage host.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import LiveServer, ServerDB, _unavailable, as_project, free_port, start_server

OWNER = as_project("dist-owner", user="dist-user")
STRANGER = as_project("dist-stranger")
RAW = {"Content-Type": "application/octet-stream"}
# Like openstacksdk and tempest, ask for JSON (errors are HTML or text otherwise).
JSON = {"Accept": "application/json"}
GLANCE_DIRECT = {"method": {"name": "glance-direct"}}

# One client for every request of the module (a new one per request loads the CA
# bundle: tens of milliseconds of CPU per poll). No keep-alive: servers are killed
# and restarted, and every request opens its connection as before.
HTTP = httpx.Client(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))

@dataclass
class Worker:
    name: str
    port: int
    staging: Path
    server: LiveServer

    @property
    def url(self) -> str:
        return self.server.url

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        return HTTP.request(method, self.url + path, headers={**JSON, **OWNER, **(headers or {})},
                            timeout=30, **kwargs)

    def new_image(self) -> str:
        r = self.request("POST", "/v2/images",
                         json={"disk_format": "raw", "container_format": "bare"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def stage(self, image_id: str, data: bytes) -> None:
        r = self.request("PUT", f"/v2/images/{image_id}/stage", headers=RAW, content=data)
        assert r.status_code == 204, r.text

    def import_(self, image_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.request("POST", f"/v2/images/{image_id}/import", headers=headers,
                            json=GLANCE_DIRECT)

    def image(self, image_id: str) -> dict[str, Any]:
        r = self.request("GET", f"/v2/images/{image_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def staged(self, image_id: str) -> bool:
        return (self.staging / image_id).exists()

    def stop(self) -> None:
        self.server.stop()


class Cluster:
    """Workers sharing one database and one image store, each with its own staging."""

    def __init__(self, root: Path, db_url: str):
        self.root, self.db_url = root, db_url
        self.store = root / "shared-store"
        self.started: list[Worker] = []
        self.trio: tuple[Worker, ...] = ()

    def config(self, name: str, port: int) -> str:
        own = self.root / name
        return f"""
auth_strategy = trusted-headers
worker_self_reference_url = http://127.0.0.1:{port}
enabled_backends = shared:file
[glance_store]
default_backend = shared
[shared]
filesystem_store_datadir = {self.store}
[os_glance_staging_store]
filesystem_store_datadir = {own / 'staging'}
[os_glance_tasks_store]
filesystem_store_datadir = {own / 'tasks'}
"""

    def start(self, name: str, port: int | None = None) -> Worker:
        """Start a worker; the same name and port again is that worker restarted."""
        port = port or free_port()
        server = start_server(self.root / name, self.db_url, self.config(name, port),
                              port=port)
        worker = Worker(name, port, self.root / name / "staging", server)
        self.started.append(worker)
        return worker

    def task_rows(self, image_id: str) -> list[dict[str, Any]]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT status, owner, user_id, worker FROM tasks WHERE image_id = :id "
                    "ORDER BY created_at"), {"id": image_id}).mappings().all()
        finally:
            engine.dispose()
        return [dict(row) for row in rows]

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)
    return value


def wait_status(worker: Worker, image_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        doc = worker.image(image_id)
        return doc if doc["status"] == status else None

    return wait_for(reached)


@pytest.fixture(scope="module")
def cluster(server_dbs: dict[str, ServerDB | Exception],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # pytest may load tests/conftest.py under another module name than ours, so the
    # ServerDB class is not necessarily the one imported here: test for failure.
    server = server_dbs.get("postgresql", RuntimeError("not selected by GLIMPSE_TEST_DBS"))
    if isinstance(server, Exception):
        _unavailable("postgresql", server)
    assert not isinstance(server, Exception)
    from glimpse.db.engine import Database, upgrade

    url = server.new()
    db = Database(url)
    upgrade(db)  # once, before several workers start on the same database
    db.dispose()
    shared = Cluster(tmp_path_factory.mktemp("distributed"), url)
    try:
        with ThreadPoolExecutor(3) as pool:  # starting takes seconds: start them together
            shared.trio = tuple(pool.map(shared.start, ["a", "b", "c"]))
        yield shared
    finally:
        shared.stop_all()


def workers(cluster: Cluster) -> tuple[Worker, Worker, Worker]:
    return cluster.trio


def test_import_through_another_worker_runs_on_the_stage_host(cluster):
    a, b, c = workers(cluster)
    on_a, on_c = b"staged on worker a" * 1000, b"staged on worker c" * 999
    first, second = c.new_image(), a.new_image()
    a.stage(first, on_a)
    c.stage(second, on_c)
    assert [w.name for w in (a, b, c) if w.staged(first)] == ["a"]
    assert [w.name for w in (a, b, c) if w.staged(second)] == ["c"]

    # Each import reaches a worker without the data; each is replayed on its stage host.
    assert b.import_(first).status_code == 202
    assert a.import_(second).status_code == 202
    for image_id, data, stage_host in ((first, on_a, a), (second, on_c, c)):
        doc = wait_status(b, image_id, "active")
        assert doc["size"] == len(data)
        assert doc["checksum"] == hashlib.md5(data).hexdigest()
        assert doc["stores"] == "shared"
        # The stage host's process ran the task, for the caller who asked elsewhere.
        [task] = cluster.task_rows(image_id)
        assert task["status"] == "success"
        assert task["worker"].split("/")[0] == str(stage_host.server.proc.pid)
        assert (task["owner"], task["user_id"]) == ("dist-owner", "dist-user")
        # The staged data is gone from every worker; the shared store serves the image.
        assert not any(w.staged(image_id) for w in (a, b, c))
        for worker in (a, b, c):
            r = worker.request("GET", f"/v2/images/{image_id}/file")
            assert r.status_code == 200 and r.content == data


def test_delete_through_another_worker_removes_the_staged_data(cluster):
    a, b, c = workers(cluster)
    image_id = c.new_image()
    a.stage(image_id, b"to be deleted before import")
    assert a.staged(image_id)
    r = b.request("DELETE", f"/v2/images/{image_id}")
    assert r.status_code == 204, r.text
    assert not a.staged(image_id)
    assert c.request("GET", f"/v2/images/{image_id}").status_code == 404
    assert b.request("DELETE", f"/v2/images/{image_id}").status_code == 404


def test_only_the_caller_identity_travels_to_the_stage_host(cluster):
    a, b, _ = workers(cluster)
    image_id = a.new_image()
    a.stage(image_id, b"private staged data")
    # Without identity headers the stage host refuses (trusted-headers): a proxied
    # request that succeeds there carried the caller's headers.
    assert httpx.delete(f"{a.url}/v2/images/{image_id}", timeout=30).status_code == 401
    # Another project going through b sees nothing; a reader of the owner's
    # project may look but not import.
    assert b.import_(image_id, headers=STRANGER).status_code == 404
    assert b.request("DELETE", f"/v2/images/{image_id}", headers=STRANGER).status_code == 404
    reader = as_project("dist-owner", roles="reader")
    assert b.import_(image_id, headers=reader).status_code == 403
    assert a.image(image_id)["status"] == "uploading" and a.staged(image_id)
    assert cluster.task_rows(image_id) == []
    # The owner's delete through b is done by a (as the owner), which removes its
    # staged data.
    assert b.request("DELETE", f"/v2/images/{image_id}").status_code == 204
    assert not a.staged(image_id)


def test_stage_host_down_then_back(cluster):
    _, b, _ = workers(cluster)
    d = cluster.start("d")
    port = d.port
    try:
        kept, dropped = d.new_image(), d.new_image()
        d.stage(kept, b"waits for its worker")
        d.stage(dropped, b"deleted while its worker is down")
        d.stop()

        # Glance's answer when the stage host cannot be reached; nothing was started.
        r = b.import_(kept)
        assert r.status_code == 504, r.text
        assert r.json()["message"] == "Stage host is unavailable"
        doc = b.image(kept)
        assert doc["status"] == "uploading" and "os_glance_import_task" not in doc
        assert cluster.task_rows(kept) == []

        # A delete is done here all the same; the staged data stays behind on d.
        assert b.request("DELETE", f"/v2/images/{dropped}").status_code == 204
        assert b.request("GET", f"/v2/images/{dropped}").status_code == 404
        assert d.staged(dropped)

        # d comes back: it clears the leftover and the import can be retried on it.
        d = cluster.start("d", port)
        assert not d.staged(dropped) and d.staged(kept)
        assert d.import_(kept).status_code == 202
        doc = wait_status(b, kept, "active")
        assert doc["size"] == len(b"waits for its worker")
        assert not d.staged(kept)
        assert [t["status"] for t in cluster.task_rows(kept)] == ["success"]
    finally:
        d.stop()
