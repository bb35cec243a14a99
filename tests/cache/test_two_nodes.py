"""Two live API nodes share one PostgreSQL database and one image store; each has
its own cache directory (records in the database under its own
worker_self_reference_url), and ``glimpse cache --host`` addresses each one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import LiveServer, ServerDB, _unavailable, free_port, start_server

ADMIN = {"X-Roles": "admin,member,reader", "X-Project-Id": "admin-project",
         "X-User-Id": "admin-user", "X-Identity-Status": "Confirmed",
         "Accept": "application/json"}


def _config(root: Path, name: str, port: int) -> str:
    return f"""
auth_strategy = noauth
worker_self_reference_url = http://127.0.0.1:{port}
image_cache_dir = {root / name / 'cache'}
image_cache_min_free_space = 0
enabled_backends = shared:file
[glance_store]
default_backend = shared
[shared]
filesystem_store_datadir = {root / 'shared-store'}
"""


@pytest.fixture(scope="module")
def nodes(server_dbs: dict[str, ServerDB | Exception],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, ...]]:
    server = server_dbs.get("postgresql", RuntimeError("not selected by GLIMPSE_TEST_DBS"))
    if isinstance(server, Exception):
        _unavailable("postgresql", server)
    assert not isinstance(server, Exception)
    from glimpse.db.engine import Database, upgrade

    url = server.new()
    db = Database(url)
    upgrade(db)
    db.dispose()
    root = tmp_path_factory.mktemp("cache-nodes")

    def start(name: str) -> LiveServer:
        port = free_port()
        return start_server(root / name, url, _config(root, name, port), port=port)

    with ThreadPoolExecutor(2) as pool:
        started = tuple(pool.map(start, ["a", "b"]))
    started[0].db_url = url  # type: ignore[attr-defined]
    started[0].root = root  # type: ignore[attr-defined]
    yield started
    for node in started:
        node.stop()


def _cli(node: LiveServer, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "glimpse.cli", "cache", *args, "--host", node.url],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_each_node_has_its_own_cache_and_the_cli_addresses_each(nodes):
    a, b = nodes
    data = os.urandom(2 * 1024 * 1024)
    r = httpx.post(a.url + "/v2/images", headers=ADMIN, timeout=30,
                   json={"name": "n", "disk_format": "raw", "container_format": "bare"})
    image_id = r.json()["id"]
    r = httpx.put(f"{a.url}/v2/images/{image_id}/file", content=data, timeout=30,
                  headers={**ADMIN, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    # Only node b serves the image: only b caches it.
    r = httpx.get(f"{b.url}/v2/images/{image_id}/file", headers=ADMIN, timeout=30)
    assert r.content == data and r.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert image_id in _cli(b, "list-cached")
    assert image_id not in _cli(a, "list-cached")
    root = a.root  # type: ignore[attr-defined]
    assert (root / "b" / "cache" / image_id).exists()
    assert not (root / "a" / "cache" / image_id).exists()

    # Queue it on a through the CLI: a caches it at once.
    assert "Queued" in _cli(a, "queue-image", image_id)
    deadline = time.monotonic() + 30
    while image_id not in _cli(a, "list-cached"):
        assert time.monotonic() < deadline, "node a did not cache the queued image"
        time.sleep(0.2)
    assert "No queued images" in _cli(a, "list-queued")

    # Both nodes' records live in the shared database, each under its own URL.
    engine = create_engine(a.db_url)  # type: ignore[attr-defined]
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT n.url FROM cached_images c JOIN cache_nodes n ON n.id = c.node_id "
                "WHERE c.image_id = :id ORDER BY n.url"), {"id": image_id}).scalars().all()
    finally:
        engine.dispose()
    assert sorted(rows) == sorted([a.url, b.url])

    # Emptying b's cache leaves a's alone.
    _cli(b, "delete-all-cached-images")
    assert image_id not in _cli(b, "list-cached")
    assert image_id in _cli(a, "list-cached")
    assert "Pruned 0 image(s)" in _cli(a, "prune")
    assert "Cleaned" in _cli(a, "clean")
    _cli(a, "delete-cached-image", image_id)
    assert "No cached images" in _cli(a, "list-cached")


def test_cli_reports_a_node_error(nodes):
    a, _b = nodes
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "glimpse.cli", "cache", "queue-image",
         "00000000-0000-4000-8000-000000000000", "--host", a.url],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 1
    assert "404" in proc.stderr and "not found" in proc.stderr
