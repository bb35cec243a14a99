"""A broker outage never slows or fails a request.

Glimpse reaches the real RabbitMQ through a TCP proxy the test controls. A
client makes 200 requests with the proxy connected, then 200 with it cut
(connections reset, new ones refused): none fails, the median latency stays
within 20% of the connected run, one warning is logged for the outage, and
when the proxy is restored every notification queued meanwhile arrives. With
a queue too small for the outage, what did not fit is counted as dropped.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.services import runtime as runtime_mod
from tests.conftest import as_project
from tests.notify.conftest import BROKER_HOST, BROKER_PORT, conf_file, notify_config, rabbit_url
from tests.notify.proxy import TcpProxy

OWNER = as_project("proj-o", user="user-o")
PATCH = {**OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"}
REQUESTS = 200


@pytest.fixture
def notify_app(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """As tests/notify/conftest.py's, on a SQLite database of the test's own."""
    runtimes: list[runtime_mod.Runtime] = []

    def make(config_text: str) -> TestClient:
        conf = load_config([conf_file(tmp_path, config_text)], {
            "data_dir": str(tmp_path / "data"),
            "database.connection": f"sqlite:///{tmp_path / 'outage.sqlite'}"})
        rt = runtime_mod.build(conf, migrate=True)
        runtimes.append(rt)
        return TestClient(create_app(conf, rt), headers={"Accept": "application/json"})

    yield make
    for rt in runtimes:
        rt.close()


@pytest.fixture
def proxy(broker: str) -> Iterator[TcpProxy]:
    p = TcpProxy((BROKER_HOST, BROKER_PORT))
    yield p
    p.close()


def _run(client, image_ids: list[str], tag: str, count: int = REQUESTS,  # noqa: ANN001
         first: int = 0) -> tuple[list[float], int]:
    """``count`` renames, round robin over the images: (latencies, failures)."""
    latencies, failures = [], 0
    for i in range(first, first + count):
        body = [{"op": "replace", "path": "/name", "value": f"{tag}-{i}"}]
        started = time.perf_counter()
        r = client.patch(f"/v2/images/{image_ids[i % len(image_ids)]}", headers=PATCH,
                         json=body)
        latencies.append(time.perf_counter() - started)
        failures += r.status_code != 200
    return latencies, failures


def _names(consumer, tag: str) -> set[str]:  # noqa: ANN001
    return {m["payload"]["name"] for m in consumer.of("image.update")
            if str(m["payload"]["name"]).startswith(tag + "-")}


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def test_outage_does_not_slow_or_fail_requests(notify_app, consumer, proxy, caplog) -> None:
    """The 200 requests of the outage and the 200 connected ones are made in eight
    alternating blocks of 25 (connected, cut, connected, cut, ...): on this shared
    machine the load drifts, and alternating makes both runs see the same drift."""
    caplog.set_level(logging.WARNING)
    client = notify_app(notify_config(consumer.topic, url=rabbit_url(port=proxy.port)))
    notifier = client.app.state.runtime.notifier
    notifier.sender.retry_max = 0.5  # reconnect quickly once the proxy is back
    image_ids = [client.post("/v2/images", headers=OWNER, json={"name": f"o{i}"}).json()["id"]
                 for i in range(4)]
    _run(client, image_ids, "warmup", 50)
    assert notifier.flush(20)

    connected: list[float] = []
    cut: list[float] = []
    failed = 0
    blocks = 8
    size = REQUESTS // blocks
    for block in range(blocks):
        latencies, failures = _run(client, image_ids, "connected", size, block * size)
        connected += latencies
        failed += failures
        assert notifier.flush(20)

        proxy.cut()
        caplog.clear()
        latencies, failures = _run(client, image_ids, "cut", size, block * size)
        cut += latencies
        failed += failures
        time.sleep(0.5)  # several delivery attempts fail meanwhile
        assert notifier.sender.pending() > 0  # kept, not lost
        outage_warnings = _warnings(caplog, "Cannot send notifications")
        assert len(outage_warnings) == 1, [r.getMessage() for r in caplog.records]
        assert "guest" not in outage_warnings[0].getMessage()  # no credentials in logs
        oslo_errors = [r for r in caplog.records
                       if r.name.startswith(("oslo", "kombu")) and r.levelno >= logging.ERROR]
        assert oslo_errors == []

        proxy.restore()
        assert notifier.flush(30), f"{notifier.sender.pending()} notifications still queued"
        assert len(_warnings(caplog, "takes notifications again")) == 1
    assert failed == 0

    consumer.wait_for(lambda m: len(_names(consumer, "cut")) >= REQUESTS, timeout=20)
    assert len(_names(consumer, "connected")) == REQUESTS
    assert len(_names(consumer, "cut")) == REQUESTS  # every one, after the broker returned
    assert notifier.sender.stats.dropped == 0
    assert notifier.sender.stats.outages == blocks

    p50_connected, p50_cut = statistics.median(connected), statistics.median(cut)
    print(f"\np50 connected {p50_connected * 1000:.2f} ms, broker cut {p50_cut * 1000:.2f} ms "
          f"(ratio {p50_cut / p50_connected:.2f}); delivery attempts failed during the "
          f"outages: {notifier.sender.stats.failures}")
    assert p50_cut <= p50_connected * 1.2


def test_queue_overflow_is_counted_and_logged(notify_app, consumer, proxy, caplog) -> None:
    caplog.set_level(logging.WARNING)
    client = notify_app(notify_config(consumer.topic, url=rabbit_url(port=proxy.port),
                                      default_extra="notification_queue_size = 50"))
    notifier = client.app.state.runtime.notifier
    notifier.sender.retry_max = 0.5
    image_ids = [client.post("/v2/images", headers=OWNER, json={"name": "q"}).json()["id"]]
    assert notifier.flush(20)
    proxy.cut()
    _, failed = _run(client, image_ids, "overflow")
    assert failed == 0
    stats = notifier.sender.stats
    # 50 wait in the queue (one of them possibly in the sender's hands), the rest dropped.
    assert stats.dropped == REQUESTS - 50
    assert len(_warnings(caplog, "queue is full")) == 1
    proxy.restore()
    assert notifier.flush(30)
    consumer.wait_for(lambda m: len(_names(consumer, "overflow")) >= 50, timeout=20)
    consumer.settle()
    delivered = _names(consumer, "overflow")
    assert len(delivered) == 50
    # The oldest were kept (order preserved), the newest dropped.
    assert delivered == {f"overflow-{i}" for i in range(50)}
    ended = _warnings(caplog, "takes notifications again")
    assert len(ended) == 1 and f"{REQUESTS - 50} dropped" in ended[0].getMessage()
