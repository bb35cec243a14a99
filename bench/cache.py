"""Image cache: one image downloaded cold (a miss, read from a remote store while
the cache fills) and warm (a hit, read from the node's cache), next to the file
store's own download rate through the same server, in the same run.

    .venv/bin/python -m bench.cache [--size-mib 1024] [--rounds 1] [--stores rbd]

Starts the real back ends with scripts/backends.sh (``$GLIMPSE_BACKENDS_DIR``, else
.tmp/backends, reused) and ``glimpse serve`` (2 workers, SQLite, trusted headers) with
``image_cache_dir`` set and a file store beside each remote store. Per remote store it
uploads the image, downloads it cold, waits for the copy to be committed, downloads it
warm, then removes the copy (DELETE /v2/cache/{id}) for the next round. The file store's
rate is a download of a file-store image as a whole-image range (``bytes=0-``): a range
never fills the cache, so that read goes to the file store; a whole download of it
(sent by the server itself under Granian) is measured too, and the copy it fills is
dropped. Every download is timed on a plain socket and checked in full (SHA-1 of
the source file, as it arrives). Goals (issue 16): warm >= 90% of the file
store's rate, warm >= 3x cold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import IDENTITY, REPO_ROOT, free_port, serve_config
from bench.stores import MIB, PIECE, make_data

ADMIN = {**IDENTITY, "X-Roles": "admin,member,reader"}


def backends(kind: str) -> dict[str, str]:
    where = os.environ.get("GLIMPSE_BACKENDS_DIR") or str(REPO_ROOT / ".tmp" / "backends")
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "backends.sh"), "up", where,
                          kind], capture_output=True, text=True, check=True,
                         timeout=900).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def start_glimpse(root: Path, ceph: dict[str, str] | None, size: int,
                  http_server: str | None = None) -> tuple[subprocess.Popen, str]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stores = ["file:file"] + (["rbd:rbd"] if ceph else [])
    lines = ["[DEFAULT]", "bind_host = 127.0.0.1", f"bind_port = {port}", "workers = 2",
             f"data_dir = {root}", "auth_strategy = trusted-headers",
             f"enabled_backends = {', '.join(stores)}",
             f"image_cache_dir = {root / 'cache'}",
             f"image_cache_max_size = {4 * size}", "image_cache_min_free_space = 1GB",
             "[database]", f"connection = sqlite:///{root / 'glimpse.sqlite'}",
             "[glance_store]", "default_backend = file",
             "[file]", f"filesystem_store_datadir = {root / 'images'}",
             "[os_glance_staging_store]", f"filesystem_store_datadir = {root / 'staging'}",
             "[os_glance_tasks_store]", f"filesystem_store_datadir = {root / 'tasks'}"]
    if ceph:
        lines += ["[rbd]", f"rbd_store_pool = {ceph['CEPH_POOL']}",
                  f"rbd_store_user = {ceph['CEPH_USER']}",
                  f"rbd_store_ceph_conf = {ceph['CEPH_CONF']}", "rados_connect_timeout = 30"]
    return serve_config(root, lines, port, http_server)


def upload(client: httpx.Client, store: str, data: Path, size: int) -> str:
    image_id = client.post("/v2/images", json={"disk_format": "raw",
                                               "container_format": "bare"}).json()["id"]

    def body():  # noqa: ANN202
        with data.open("rb") as f:
            while piece := f.read(PIECE):
                yield piece

    r = client.put(f"/v2/images/{image_id}/file", content=body(),
                   headers={"Content-Type": "application/octet-stream",
                            "Content-Length": str(size), "X-Image-Meta-Store": store})
    r.raise_for_status()
    return image_id


def download(client: httpx.Client, image_id: str, sha1: str | None, size: int,
             headers: dict[str, str] | None = None) -> float:
    """One download on a plain socket (httpx would be the limit: it copies every read
    several times); MiB/s. With ``sha1`` every byte is hashed as it arrives and checked
    against the source file's SHA-1; without it only the bytes are counted.

    Timed passes count only: any hash in the client (md5 under 1 GiB/s here, SHA-1 about
    1.4 GiB/s) is slower than a hit or a file-store read over loopback and would measure
    the client. Each timed pass of the file store and of a hit is followed by an untimed
    pass that checks every byte; a miss's bytes are the stream the cache hashed before
    committing its copy, which the hit's check then reads back."""
    url = client.base_url
    lines = [f"GET /v2/images/{image_id}/file HTTP/1.1", f"Host: {url.host}:{url.port}",
             "Connection: close"]
    lines += [f"{k}: {v}" for k, v in {**ADMIN, **(headers or {})}.items()]
    digest = hashlib.sha1(usedforsecurity=False) if sha1 else None
    buf = bytearray(PIECE)
    view = memoryview(buf)
    start = time.monotonic()
    with socket.create_connection((url.host, url.port), timeout=600) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n\r\n" not in head:
            piece = sock.recv(65536)
            if not piece:
                raise RuntimeError(f"image {image_id}: connection closed in the head")
            head += piece
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status not in (200, 206):
            raise RuntimeError(f"image {image_id}: download answered {status}")
        if digest:
            digest.update(rest)
        got = len(rest)
        while got < size:
            n = sock.recv_into(view, min(PIECE, size - got))
            if not n:
                break
            if digest:
                digest.update(view[:n])
            got += n
    took = time.monotonic() - start
    if got != size or (digest and digest.hexdigest() != sha1):
        raise RuntimeError(f"image {image_id}: downloaded data differs ({got} bytes)")
    return size / MIB / took


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as f:
        while piece := f.read(PIECE):
            digest.update(piece)
    return digest.hexdigest()


def cached(client: httpx.Client, image_id: str) -> bool:
    entries = client.get("/v2/cache").json()["cached_images"]
    return image_id in [e["image_id"] for e in entries]


def wait_cached(client: httpx.Client, image_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not cached(client, image_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"image {image_id} was not cached")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stores", default="rbd", help="remote stores to read cold (rbd)")
    ap.add_argument("--out", help="also write the figures as JSON here")
    ap.add_argument("--http-server", default=None, help="uvicorn or granian (default: "
                    "glimpse serve's)")
    args = ap.parse_args(argv)
    kinds = [k for k in args.stores.split(",") if k]
    unknown = set(kinds) - {"rbd"}
    if unknown:
        ap.error(f"unsupported remote store(s): {sorted(unknown)}")
    ceph = backends("ceph") if "rbd" in kinds else None
    size = args.size_mib * MIB
    figures: dict[str, list[float]] = {"file": [], "file whole": []}
    (REPO_ROOT / ".tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-cache-", dir=REPO_ROOT / ".tmp") as tmp:
        root = Path(tmp)
        data = root / "image.raw"
        make_data(data, size)
        sha1 = file_sha1(data)  # the check of every download (see download())
        proc, endpoint = start_glimpse(root / "glimpse", ceph, size, args.http_server)
        try:
            with httpx.Client(base_url=endpoint, headers=ADMIN, timeout=900) as client:
                local = upload(client, "file", data, size)
                for kind in kinds:
                    remote = upload(client, kind, data, size)
                    for _ in range(args.rounds):
                        rng = {"Range": "bytes=0-"}
                        figures["file"].append(download(client, local, None, size, rng))
                        download(client, local, sha1, size, rng)  # untimed: every byte
                        if cached(client, local):
                            raise RuntimeError("a range request filled the cache")
                        # a whole download: a miss, which fills the cache (pathsend under
                        # Granian, the fill behind it); that copy is dropped again
                        figures["file whole"].append(download(client, local, None, size))
                        wait_cached(client, local)
                        client.delete(f"/v2/cache/{local}").raise_for_status()
                        cold = download(client, remote, None, size)
                        wait_cached(client, remote)
                        warm = download(client, remote, None, size)
                        download(client, remote, sha1, size)  # untimed: the copy's bytes
                        # the fill's 1 GiB is still being written back to disk during
                        # that first hit (the cache does not fsync); a hit once it is
                        os.sync()
                        figures.setdefault(f"{kind} warm, written back", []).append(
                            download(client, remote, None, size))
                        figures.setdefault(f"{kind} cold", []).append(cold)
                        figures.setdefault(f"{kind} warm", []).append(warm)
                        client.delete(f"/v2/cache/{remote}").raise_for_status()
                    client.delete(f"/v2/images/{remote}").raise_for_status()
                client.delete(f"/v2/images/{local}").raise_for_status()
        finally:
            proc.terminate()
            proc.wait(30)
    medians = {k: statistics.median(v) for k, v in figures.items() if v}
    print(f"image cache, {args.size_mib} MiB image, median of {args.rounds} round(s), MiB/s")
    print(f"  file store (uncached, whole-image range)  {medians['file']:8.0f}")
    print(f"  file store (uncached, whole download)     {medians['file whole']:8.0f}")
    for kind in kinds:
        cold, warm = medians[f"{kind} cold"], medians[f"{kind} warm"]
        print(f"  {kind} cold (miss, fill)  {cold:8.0f}   warm (hit)  {warm:8.0f}   "
              f"warm/cold {warm / cold:5.1f}x (goal 3x)   "
              f"warm/file {100 * warm / medians['file']:4.1f}% (goal 90%)   "
              f"warm/file whole {100 * warm / medians['file whole']:4.0f}%")
        synced = medians[f"{kind} warm, written back"]
        print(f"  {kind} warm once the copy is written back  {synced:8.0f}   "
              f"warm/cold {synced / cold:5.1f}x   warm/file {100 * synced / medians['file']:4.0f}%")
    if args.out:
        Path(args.out).write_text(json.dumps({"size_mib": args.size_mib, "figures": figures},
                                             indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
