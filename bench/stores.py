"""Store throughput: upload and download of one image through the API, per writable
driver, next to the back end's own client on the same server in the same run.

    .venv/bin/python -m bench.stores [--size-mib 1024] [--rounds 1] [--stores file,rbd]

Starts the real servers with scripts/backends.sh (into .tmp/backends, reused) and
`glimpse serve` with 2 workers, SQLite, trusted headers and one store of each kind.
Prints MiB/s per driver: Glimpse upload / download, the raw rate (rbd: `rbd import` /
`rbd export`; file: a copy with fdatasync / a read of the file), and the largest
worker RSS seen during the transfers. Each transfer's md5 is checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.servers import IDENTITY, REPO_ROOT, children, free_port, wait_up

MIB = 1024 * 1024
PIECE = 4 * MIB


def backends(kind: str) -> dict[str, str]:
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "backends.sh"), "up",
                          str(REPO_ROOT / ".tmp" / "backends"), kind],
                         capture_output=True, text=True, check=True, timeout=900).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def make_data(path: Path, size: int) -> str:
    digest = hashlib.md5()  # noqa: S324 - a checksum, as Glance's
    with path.open("wb") as f:
        block = os.urandom(PIECE)
        written = 0
        while written < size:
            piece = block[:min(PIECE, size - written)]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


class RssWatch:
    """The largest RSS (MiB) of the server's worker processes while it runs."""

    def __init__(self, master: int):
        self.master, self.peak, self._stop = master, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in children(self.master):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) / 1024)
                except OSError:
                    pass

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_glimpse(root: Path, ceph: dict[str, str] | None) -> tuple[subprocess.Popen, str]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stores = ["file:file"] + (["rbd:rbd"] if ceph else [])
    lines = ["[DEFAULT]", "bind_host = 127.0.0.1", f"bind_port = {port}", "workers = 2",
             f"data_dir = {root}", "auth_strategy = trusted-headers",
             f"enabled_backends = {', '.join(stores)}",
             "[database]", f"connection = sqlite:///{root / 'glimpse.sqlite'}",
             "[glance_store]", "default_backend = file",
             "[file]", f"filesystem_store_datadir = {root / 'images'}",
             "[os_glance_staging_store]", f"filesystem_store_datadir = {root / 'staging'}",
             "[os_glance_tasks_store]", f"filesystem_store_datadir = {root / 'tasks'}"]
    if ceph:
        lines += ["[rbd]", f"rbd_store_pool = {ceph['CEPH_POOL']}",
                  f"rbd_store_user = {ceph['CEPH_USER']}",
                  f"rbd_store_ceph_conf = {ceph['CEPH_CONF']}", "rados_connect_timeout = 30"]
    conf = root / "glance-api.conf"
    conf.write_text("\n".join(lines) + "\n")
    glimpse = str(Path(sys.executable).parent / "glimpse")
    subprocess.run([glimpse, "db", "sync", "--config-file", str(conf)], check=True,
                   capture_output=True, timeout=120)
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen([glimpse, "serve", "--config-file", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)
    endpoint = f"http://127.0.0.1:{port}"
    wait_up(endpoint + "/versions", proc, root / "server.log")
    return proc, endpoint


def api_round(endpoint: str, store: str, data: Path, size: int, md5: str) -> tuple[float, float]:
    headers = dict(IDENTITY)
    with httpx.Client(base_url=endpoint, headers=headers, timeout=600) as client:
        image_id = client.post("/v2/images", json={"disk_format": "raw",
                                                   "container_format": "bare"}).json()["id"]

        def body():  # noqa: ANN202
            with data.open("rb") as f:
                while piece := f.read(PIECE):
                    yield piece

        start = time.monotonic()
        r = client.put(f"/v2/images/{image_id}/file", content=body(),
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(size), "X-Image-Meta-Store": store})
        up = time.monotonic() - start
        r.raise_for_status()
        digest = hashlib.md5()  # noqa: S324
        start = time.monotonic()
        with client.stream("GET", f"/v2/images/{image_id}/file") as resp:
            for piece in resp.iter_raw(PIECE):
                digest.update(piece)
        down = time.monotonic() - start
        if digest.hexdigest() != md5:
            raise RuntimeError(f"{store}: downloaded data differs")
        client.delete(f"/v2/images/{image_id}").raise_for_status()
    return size / MIB / up, size / MIB / down


def raw_rbd(ceph: dict[str, str], data: Path, size: int) -> tuple[float, float]:
    name = f"bench-raw-{os.urandom(4).hex()}"
    base = ["rbd", "-c", ceph["CEPH_CONF"], "--id", ceph["CEPH_USER"]]
    start = time.monotonic()
    subprocess.run([*base, "import", "--no-progress", str(data), f"{ceph['CEPH_POOL']}/{name}"],
                   check=True, capture_output=True)
    up = time.monotonic() - start
    start = time.monotonic()
    with open(os.devnull, "wb") as sink:
        subprocess.run([*base, "export", "--no-progress", f"{ceph['CEPH_POOL']}/{name}", "-"],
                       check=True, stdout=sink, stderr=subprocess.PIPE)
    down = time.monotonic() - start
    subprocess.run([*base, "rm", "--no-progress", f"{ceph['CEPH_POOL']}/{name}"], check=True,
                   capture_output=True)
    return size / MIB / up, size / MIB / down


def raw_file(root: Path, data: Path, size: int) -> tuple[float, float]:
    target = root / "raw-copy"
    start = time.monotonic()
    with data.open("rb") as src, target.open("wb") as dst:
        while piece := src.read(PIECE):
            dst.write(piece)
        dst.flush()
        os.fdatasync(dst.fileno())
    up = time.monotonic() - start
    start = time.monotonic()
    with target.open("rb") as f:
        while f.read(PIECE):
            pass
    down = time.monotonic() - start
    target.unlink()
    return size / MIB / up, size / MIB / down


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stores", default="file,rbd")
    ap.add_argument("--out", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    kinds = args.stores.split(",")
    ceph = backends("ceph") if "rbd" in kinds else None
    size = args.size_mib * MIB
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stores-", dir=REPO_ROOT / ".tmp") as tmp:
        root = Path(tmp)
        data = root / "image.raw"
        md5 = make_data(data, size)
        proc, endpoint = start_glimpse(root / "glimpse", ceph)
        try:
            for kind in kinds:
                figures = results.setdefault(kind, {"up": [], "down": [], "raw_up": [],
                                                    "raw_down": [], "rss": []})
                for _ in range(args.rounds):
                    with RssWatch(proc.pid) as watch:
                        up, down = api_round(endpoint, kind, data, size, md5)
                    raw = raw_rbd(ceph, data, size) if kind == "rbd" else raw_file(root, data,
                                                                                    size)
                    for key, value in zip(("up", "down", "raw_up", "raw_down", "rss"),
                                          (up, down, *raw, watch.peak), strict=True):
                        figures[key].append(value)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"store throughput, {args.size_mib} MiB image, median of {args.rounds} round(s), "
          "MiB/s")
    print(f"{'store':<6} {'upload':>8} {'raw up':>8} {'%raw':>5} {'download':>9} "
          f"{'raw down':>9} {'%raw':>5} {'worker RSS MiB':>15}")
    for kind, f in results.items():
        m = {k: statistics.median(v) for k, v in f.items()}
        print(f"{kind:<6} {m['up']:8.0f} {m['raw_up']:8.0f} {100 * m['up'] / m['raw_up']:5.0f} "
              f"{m['down']:9.0f} {m['raw_down']:9.0f} {100 * m['down'] / m['raw_down']:5.0f} "
              f"{m['rss']:15.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
