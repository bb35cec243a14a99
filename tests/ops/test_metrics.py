"""/metrics in the Prometheus text format: off by default, admin-only or its own port,
added up over several workers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import as_project, free_port
from tests.ops.conftest import Served, serve


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples, name: str, **labels: str) -> float:  # noqa: ANN001
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_off_unless_enabled(client) -> None:  # noqa: ANN001
    assert client.get("/metrics").status_code == 404


def test_admin_only_on_the_api_port(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**{"metrics.enabled": True})
    assert client.get("/metrics", headers=as_project("p1")).status_code == 403
    created = client.post("/v2/images", json={"name": "m"})
    assert created.status_code == 201
    client.get("/v2/images/" + created.json()["id"])
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    s = _samples(r.text)
    assert _value(s, "glimpse_http_requests_total", method="GET",
                  route="/v2/images/{image_id}", status="200") >= 1
    assert _value(s, "glimpse_http_requests_total", method="GET", route="/metrics",
                  status="403") >= 1
    assert _value(s, "glimpse_http_request_duration_seconds_count", method="POST",
                  route="/v2/images") >= 1
    assert _value(s, "glimpse_tasks", status="pending") == 0
    assert ("glimpse_db_pool_connections", (("state", "in_use"),)) in s
    # raw paths never become labels
    assert not any("route" in dict(k[1]) and re.search(r"[0-9a-f]{8}-", dict(k[1])["route"])
                   for k in s)


def test_several_workers_on_a_separate_port(tmp_path: Path, db_url: str,
                                            served: list[Served]) -> None:
    port = free_port()
    s = serve(tmp_path, f"workers = 2\n[metrics]\nenabled = true\nbind_port = {port}",
              db_url)
    served.append(s)
    deadline = time.monotonic() + 30
    while s.log.read_text().count("Worker ready (process") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    image = httpx.post(s.url + "/v2/images", json={"name": "w", "disk_format": "raw",
                                                   "container_format": "bare"}).json()
    r = httpx.put(s.url + f"/v2/images/{image['id']}/file", content=b"z" * 100_000,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    for _ in range(20):
        httpx.get(s.url + "/versions")
    # the API port does not serve them when a separate port is set
    assert httpx.get(s.url + "/metrics").status_code == 404
    # the port is served by the parent, which answers no API request itself: these are
    # the workers' counts, read from their files and added up, each worker's at most
    # glimpse.metrics.FLUSH_DELAY late
    deadline = time.monotonic() + 10
    while True:
        samples = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        counted = _value(samples, "glimpse_http_requests_total", method="GET",
                         route="/versions", status="200")
        if counted == 20 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counted == 20
    assert _value(samples, "glimpse_http_request_bytes_total") >= 100_000
    assert _value(samples, "glimpse_uploads_in_flight") == 0


def test_bytes_and_store_errors_are_counted(app_factory) -> None:  # noqa: ANN001
    client = app_factory(**{"metrics.enabled": True})
    rt = client.app.state.runtime
    data = b"m" * 300_000
    image_id = client.post("/v2/images", json={"name": "b", "disk_format": "raw",
                                               "container_format": "bare"}).json()["id"]
    before = _samples(client.get("/metrics").text)
    assert client.put(f"/v2/images/{image_id}/file", content=data,
                      headers={"Content-Type": "application/octet-stream"}).status_code == 204
    assert client.get(f"/v2/images/{image_id}/file").content == data
    after = _samples(client.get("/metrics").text)
    for name in ("glimpse_http_request_bytes_total", "glimpse_http_response_bytes_total"):
        assert _value(after, name) - _value(before, name) >= len(data), name
    # A store that fails (a file where its directory was): counted under its name.
    store = rt.stores.default
    Path(store.datadir).rename(Path(store.datadir).with_name("moved-away"))
    Path(store.datadir).write_text("not a directory")
    broken = client.post("/v2/images", json={"name": "x", "disk_format": "raw",
                                             "container_format": "bare"}).json()["id"]
    r = client.put(f"/v2/images/{broken}/file", content=b"x" * 10,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code >= 500, r.text
    errors = _samples(client.get("/metrics").text)
    assert _value(errors, "glimpse_store_errors_total", store=store.name) >= 1, [
        k for k in errors if "store" in k[0]]


def test_batched_figures_equal_recording_each_request() -> None:
    """glimpse.metrics records requests in batches; what a flush adds to the
    histogram and counters is what observe() and inc() per request would have."""
    from prometheus_client import CollectorRegistry, Histogram

    from glimpse import metrics

    durations = [0.0004, 0.001, 0.0011, 0.003, 0.003, 0.2, 7.5, 400.0]
    reference = Histogram("reference_seconds", "x", ["method", "route"],
                          buckets=metrics.LATENCY_BUCKETS, registry=CollectorRegistry())
    route = "/test/batched/{x}"
    for seconds in durations:
        reference.labels("GET", route).observe(seconds)
        metrics.BATCH.request("GET", route, 200, seconds)
    metrics.flush()

    def buckets(h) -> dict[str, float]:  # noqa: ANN001
        return {s.labels["le"]: s.value for m in h.collect() for s in m.samples
                if s.name.endswith("_bucket") and s.labels.get("route") == route}

    assert buckets(metrics.LATENCY) == buckets(reference)
    got = metrics.LATENCY.labels("GET", route)._sum.get()
    assert abs(got - sum(durations)) < 1e-9
    assert metrics.REQUESTS.labels("GET", route, "200")._value.get() == len(durations)
