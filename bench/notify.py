"""Notifications on vs off: what sending every event to RabbitMQ costs a request.

    .venv/bin/python -m bench.notify [--rounds 3] [--seconds 5] [--requests 300]

Starts two `glimpse serve` (2 workers, SQLite, file store): one with the
default noop driver, one with `messagingv2` to the RabbitMQ on 127.0.0.1:5672
(guest/guest; a topic of its own, whose queues are deleted at the end). The
two take turns, round by round, so noise on this shared machine hits both
alike. Per round: GET and PATCH p50 (one keep-alive client, sequential), and
32 clients PATCHing for --seconds (req/s). PATCH sends an image.update per
request; GET sends nothing, so it shows the cost of the notifier being there.
Prints the figures and the ratio on/off (goal: within 10%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from typing import Any

from bench import servers
from bench.workload import JSON_PATCH, LeanClient, ms, pct

BROKER = "rabbit://guest:guest@127.0.0.1:5672/"


def _config(topic: str) -> str:
    return ("\n[oslo_messaging_notifications]\ndriver = messagingv2\n"
            f"transport_url = {BROKER}\ntopics = {topic}\n")


def _images(client: LeanClient, count: int, tag: str) -> list[str]:
    ids = []
    for i in range(count):
        r = client.post("/v2/images", json={"name": f"bench-notify-{tag}-{i}",
                                            "disk_format": "raw", "container_format": "bare"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _patch(client: LeanClient, image_id: str, value: str) -> int:
    body = json.dumps([{"op": "replace", "path": "/name", "value": value}])
    return client.patch(f"/v2/images/{image_id}", content=body,
                        headers={"Content-Type": JSON_PATCH}).status_code


def _sequential(server: servers.Server, image_ids: list[str], requests: int) -> dict[str, Any]:
    gets, patches = [], []
    with LeanClient(server.endpoint, server.headers) as client:
        for i in range(requests):
            t0 = time.perf_counter()
            assert client.get(f"/v2/images/{image_ids[i % len(image_ids)]}").status_code == 200
            gets.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert _patch(client, image_ids[i % len(image_ids)], f"s{i}") == 200
            patches.append(time.perf_counter() - t0)
    return {"get_p50_ms": ms(pct(gets, 50)), "patch_p50_ms": ms(pct(patches, 50))}


def _concurrent(server: servers.Server, image_ids: list[str], clients: int,
                seconds: float) -> dict[str, Any]:
    counts = [0] * clients
    failures = [0] * clients
    deadline = time.monotonic() + seconds

    def work(n: int) -> None:
        with LeanClient(server.endpoint, server.headers) as client:
            image_id = image_ids[n % len(image_ids)]
            while time.monotonic() < deadline:
                status = _patch(client, image_id, f"c{n}-{counts[n]}")
                counts[n] += 1
                failures[n] += status != 200

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"patch_req_s": round(sum(counts) / elapsed, 1), "failures": sum(failures)}


def _drop_queues(topic: str) -> None:
    import kombu

    with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
        for priority in ("info", "error"):
            channel = conn.channel()
            try:
                channel.queue_delete(f"{topic}.{priority}")
            except Exception:  # noqa: BLE001 - the queue was never declared
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.notify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300, help="sequential GET+PATCH pairs")
    ap.add_argument("--seconds", type=float, default=5.0, help="of the 32-client run")
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args(argv)
    topic = f"bench-notify-{uuid.uuid4().hex[:8]}"
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="bench-notify-") as work:
        off = servers.start_glimpse(f"{work}/off")
        on = servers.start_glimpse(f"{work}/on", extra_config=_config(topic))
        try:
            ids = {}
            for name, server in (("off", off), ("on", on)):
                with LeanClient(server.endpoint, server.headers) as client:
                    ids[name] = _images(client, args.clients, name)
            for _ in range(args.rounds):
                for name, server in (("off", off), ("on", on)):
                    figures = _sequential(server, ids[name], args.requests)
                    figures.update(_concurrent(server, ids[name], args.clients, args.seconds))
                    results[name].append(figures)
                    print(name, figures, flush=True)
        finally:
            off.stop()
            on.stop()
            _drop_queues(topic)
    summary = {}
    for key in ("get_p50_ms", "patch_p50_ms", "patch_req_s"):
        a = statistics.median(r[key] for r in results["off"])
        b = statistics.median(r[key] for r in results["on"])
        summary[key] = {"off": a, "on": b, "on/off": round(b / a, 3)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
