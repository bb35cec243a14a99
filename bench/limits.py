"""The machine's own limits, measured in the same run as the workload.

Upload and download goals are stated against these: a server cannot upload
faster than the disk writes with fdatasync, nor hash faster than hashlib, nor
download faster than loopback TCP carries a page-cached file.

All figures are MiB/s. Hashing and loopback are cheap, so each is the best of
two passes (the machine is noisy; the best pass is the closest to the limit);
the disk write is done once.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence

MIB = 1024 * 1024
CHUNK = MIB                 # what the servers hash per update, roughly
WRITE_BLOCK = 8 * MIB
HASH_BUFFER_MIB = 16        # distinct bytes hashed over and over: beyond CPU caches
# Hashing rates do not depend on the data size: 128 MiB (quick sizes) or
# 256 MiB is enough for a stable timing and keeps this part short.
HASH_MIB_SMALL, HASH_MIB_LARGE = 128, 256


def _chunks(mib: int) -> list[memoryview]:
    """``mib`` 1 MiB chunks cut from a 16 MiB seeded random buffer."""
    buf = memoryview(random.Random(6).randbytes(HASH_BUFFER_MIB * MIB))
    pieces = [buf[i * CHUNK:(i + 1) * CHUNK] for i in range(HASH_BUFFER_MIB)]
    return [pieces[i % HASH_BUFFER_MIB] for i in range(mib)]


def _rate(mib: float, seconds: float) -> float:
    return round(mib / seconds, 1) if seconds > 0 else 0.0


def _best(passes: int, fn: Callable[[], float]) -> float:
    return max(fn() for _ in range(passes))


def _hash_one(name: str, chunks: Sequence[memoryview]) -> float:
    h = hashlib.new(name)
    t0 = time.perf_counter()
    for c in chunks:
        h.update(c)
    h.digest()
    return _rate(len(chunks), time.perf_counter() - t0)


def _hash_serial(chunks: Sequence[memoryview]) -> float:
    """md5 and sha512 one after the other on each chunk, in one thread."""
    md5, sha = hashlib.md5(), hashlib.sha512()
    t0 = time.perf_counter()
    for c in chunks:
        md5.update(c)
        sha.update(c)
    return _rate(len(chunks), time.perf_counter() - t0)


def _hash_parallel(chunks: Sequence[memoryview]) -> float:
    """md5 and sha512 in two threads over the same chunks (hashlib drops the
    GIL on large updates): the rate at which both digests of the data are ready."""
    threads = [threading.Thread(target=_hash_one, args=(name, chunks))
               for name in ("md5", "sha512")]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _rate(len(chunks), time.perf_counter() - t0)


def _write_fdatasync(path: str, mib: int) -> float:
    """Sequential write of ``mib`` MiB in 8 MiB blocks, then fdatasync."""
    block = random.Random(8).randbytes(WRITE_BLOCK)
    blocks = max(1, -(-mib // 8))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        for _ in range(blocks):
            os.write(fd, block)
        os.fdatasync(fd)
        seconds = time.perf_counter() - t0
    finally:
        os.close(fd)
    return _rate(blocks * 8, seconds)


def _receive(listener: socket.socket, expected: int, done: list[float]) -> None:
    conn, _ = listener.accept()
    buf = bytearray(MIB)
    view = memoryview(buf)
    got = 0
    with conn:
        while got < expected:
            n = conn.recv_into(view)
            if n == 0:
                break
            got += n
    done.append(time.perf_counter())


def _loopback_sendfile(path: str) -> float:
    """socket.sendfile of a page-cached file to a receiver doing recv_into."""
    size = os.path.getsize(path)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        done: list[float] = []
        receiver = threading.Thread(target=_receive, args=(listener, size, done))
        receiver.start()
        with open(path, "rb") as f, socket.create_connection(listener.getsockname()) as s:
            t0 = time.perf_counter()
            s.sendfile(f)
            s.shutdown(socket.SHUT_WR)
            receiver.join()
    return _rate(size / MIB, done[0] - t0) if done else 0.0


def measure(data_dir: str, mib: int) -> dict:
    """Hashing, disk write and loopback rates (MiB/s) for ``mib`` MiB of data.

    The write lands in ``data_dir``'s filesystem (where the servers keep their
    data too); the written file, page-cached by then, feeds the loopback test."""
    os.makedirs(data_dir, exist_ok=True)
    t0 = time.perf_counter()
    chunks = _chunks(HASH_MIB_LARGE if mib >= HASH_MIB_LARGE else HASH_MIB_SMALL)
    out: dict = {
        "mib": mib,
        "hash_mib": len(chunks),
        "md5_mib_s": _best(2, lambda: _hash_one("md5", chunks)),
        "sha512_mib_s": _best(2, lambda: _hash_one("sha512", chunks)),
        "md5_sha512_parallel_mib_s": _best(2, lambda: _hash_parallel(chunks)),
        "md5_sha512_serial_mib_s": _best(2, lambda: _hash_serial(chunks)),
    }
    path = os.path.join(data_dir, f".limits-{os.getpid()}.tmp")
    try:
        out["write_fdatasync_mib_s"] = _write_fdatasync(path, mib)
        out["loopback_sendfile_mib_s"] = _best(2, lambda: _loopback_sendfile(path))
    finally:
        if os.path.exists(path):
            os.unlink(path)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


if __name__ == "__main__":  # a quick look: python -m bench.limits [DIR] [MIB]
    import json
    import sys
    import tempfile

    where = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
    print(json.dumps(measure(where, int(sys.argv[2]) if len(sys.argv) > 2 else 64), indent=2))
