"""Recovery time after a crash, with the default lease options.

    .venv/bin/python -m bench.recovery_time [--db postgresql-admin-url] [--rounds N]

For each round an upload is killed mid-stream (SIGKILL of the serving
process) and the time from the kill until the image is ``queued`` again (a
retry is accepted) is measured in two set-ups:

- restart: the same node starts again (its start-up sweep sees the dead pid);
  the figure includes the server's start.
- two nodes sharing PostgreSQL: the killed node never returns and the other
  node's sweep recovers the image once the lease has expired
  (``lease_period`` 30 s + up to one ``lease_sweep_interval`` 10 s).

Everything runs on 127.0.0.1 with throw-away directories and database.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

RAW = {"Content-Type": "application/octet-stream"}
CHUNK = os.urandom(1024 * 1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: Path, port: int, db_url: str | None) -> subprocess.Popen:
    data = root / f"node-{port}"
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "glance-api.conf"
    lines = ["[DEFAULT]", "[glance_store]", f"filesystem_store_datadir = {root / 'images'}"]
    if db_url:
        lines += ["[database]", f"connection = {db_url}"]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "glimpse.cli", "serve", "--config-file", str(conf),
         "--data-dir", str(data), "--port", str(port), "--log-level", "warning"],
        stdout=(data / "log").open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/versions", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server on {port} did not start: {(data / 'log').read_text()}")


def slow_upload(url: str, image_id: str, started: threading.Event) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(8):
            yield CHUNK
        started.set()
        time.sleep(3600)  # until the server dies

    try:
        httpx.put(f"{url}/v2/images/{image_id}/file", content=body(), headers=RAW, timeout=None)
    except httpx.HTTPError:
        pass


def kill_mid_upload(port: int, proc: subprocess.Popen) -> str:
    url = f"http://127.0.0.1:{port}"
    image_id = httpx.post(f"{url}/v2/images", json={
        "disk_format": "raw", "container_format": "bare"}, timeout=30).json()["id"]
    started = threading.Event()
    threading.Thread(target=slow_upload, args=(url, image_id, started), daemon=True).start()
    started.wait(30)
    time.sleep(0.5)
    assert httpx.get(f"{url}/v2/images/{image_id}", timeout=30).json()["status"] == "saving"
    proc.kill()
    proc.wait()
    return image_id


def wait_queued(port: int, image_id: str) -> None:
    while True:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/v2/images/{image_id}", timeout=5)
            if r.json()["status"] == "queued":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


STARTUPS: list[float] = []


def restart_round(root: Path, db_url: str | None) -> float:
    port = free_port()
    proc = start(root, port, db_url)
    image_id = kill_mid_upload(port, proc)
    killed = time.monotonic()
    proc = start(root, port, db_url)
    STARTUPS.append(time.monotonic() - killed)
    wait_queued(port, image_id)
    took = time.monotonic() - killed
    proc.terminate()
    proc.wait()
    return took


def two_node_round(root: Path, db_url: str) -> float:
    port_a, port_b = free_port(), free_port()
    a, b = start(root, port_a, db_url), start(root, port_b, db_url)
    image_id = kill_mid_upload(port_a, a)
    killed = time.monotonic()
    wait_queued(port_b, image_id)
    took = time.monotonic() - killed
    b.terminate()
    b.wait()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-admin", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="glimpse-recovery-"))
    admin = create_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
    name = "glimpse_recovery_" + uuid.uuid4().hex[:8]
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    pg_url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        results = {
            "restart, SQLite": [restart_round(root / f"s{i}", None) for i in range(args.rounds)],
            "two nodes, PostgreSQL, killed node never returns": [
                two_node_round(root / f"p{i}", pg_url) for i in range(args.rounds)],
        }
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(root, ignore_errors=True)
    print("kill -> image usable again (queued, retry accepted), default lease options:")
    for label, times in results.items():
        print(f"  {label}: median {statistics.median(times):.1f} s, max {max(times):.1f} s "
              f"({', '.join(f'{t:.1f}' for t in times)})")
    print(f"  (restart: the server's own start-up took a median "
          f"{statistics.median(STARTUPS):.1f} s of that)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
