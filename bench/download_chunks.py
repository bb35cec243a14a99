"""Download rate against the file store's read size (``filesystem_store_chunk_size``):
what streams through Python (every download under uvicorn, Range downloads and other
stores under Granian) makes one read in a thread and one send per chunk.

For each read size, ``glimpse serve`` (2 workers, SQLite, file store) under uvicorn
and under Granian, one image of --mib MiB, then for --rounds rounds: a whole download
and a Range download (``bytes=1-``, streamed under both servers), raw socket client,
each verified (status, size). Medians per read size. Provisional on a shared machine.

    .venv/bin/python -m bench.download_chunks                      # 512 MiB, 3 rounds
    .venv/bin/python -m bench.download_chunks --mib 128 --rounds 1 --out /tmp/c.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import workload
from bench.servers import start_glimpse

MIB = 1 << 20
KIB = 1 << 10


def _rate(server, path: str, want: int, status: int, **headers: str) -> float:  # noqa: ANN001
    target = workload.Target(server.name, server.endpoint, {**server.headers, **headers})
    start = time.perf_counter()
    got_status, got = workload.raw_download(target, path)
    seconds = time.perf_counter() - start
    if (got_status, got) != (status, want):
        raise workload.BenchError(f"download answered {got_status} with {got} bytes")
    return round(got / MIB / seconds, 1)


def measure(workdir: Path, data: workload.DataFile, http_server: str, chunk: int,
            rounds: int) -> dict[str, Any]:
    server = start_glimpse(
        str(workdir / f"{http_server}-{chunk}"), workers=2, http_server=http_server,
        extra_config=f"\n[glance_store]\nfilesystem_store_chunk_size = {chunk}\n")
    try:
        sess = workload.Session(workload.Target(server.name, server.endpoint,
                                                server.headers), "")
        with sess.client() as client:
            image_id, _ = workload.upload_image(sess, client, data, "bench-chunks")
        path = f"/v2/images/{image_id}/file"
        whole, ranged = [], []
        for _ in range(rounds):
            data.warm()
            whole.append(_rate(server, path, data.size, 200))
            ranged.append(_rate(server, path, data.size - 1, 206, Range="bytes=1-"))
        sess.cleanup()
    finally:
        server.stop()
    return {"download_mib_s": statistics.median(whole), "range_mib_s": statistics.median(ranged),
            "download_all": whole, "range_all": ranged}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kib", default="64,1024,4096", help="read sizes, KiB, comma-separated")
    parser.add_argument("--servers", default="uvicorn,granian")
    parser.add_argument("--out", default=None, help="JSON file for the raw figures")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-chunks-"))
    data = workload.data_file(str(workdir), args.mib)
    results: dict[str, Any] = {}
    for kib in (int(k) for k in args.kib.split(",")):
        for name in args.servers.split(","):
            figures = measure(workdir, data, name, kib * KIB, args.rounds)
            results[f"{name} {kib} KiB"] = figures
            print(f"{name:8} read {kib:5} KiB: download {figures['download_mib_s']:7.1f} "
                  f"MiB/s, Range {figures['range_mib_s']:7.1f} MiB/s", flush=True)
    report = {"mib": args.mib, "rounds": args.rounds, "results": results,
              "load": os.getloadavg()[0], "cpus": os.cpu_count(),
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out) if args.out else workdir / "download-chunks.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"raw figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
