"""Logging through oslo.log's options: one format everywhere, one line per request."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import httpx

from tests.conftest import as_project
from tests.ops.conftest import Served, serve
from tests.ops.fluent_forward import ForwardReceiver

# oslo.log's default: "2026-01-01 10:00:00.123 4242 INFO name [...] message"
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (\d+) (DEBUG|INFO|WARNING|ERROR|"
                  r"CRITICAL) (\S+) \[(.*?)\] (.*)$")


def _wait_for(predicate, timeout: float = 20) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_every_worker_and_the_server_share_one_format(tmp_path: Path, db_url: str,
                                                   served: list[Served]) -> None:
    log_file = tmp_path / "logs" / "api.log"
    log_file.parent.mkdir()
    s = serve(tmp_path, f"workers = 2\nlog_dir = {log_file.parent}\nlog_file = api.log",
              db_url)
    served.append(s)
    # serve() returns when one worker answers; the other may still be starting
    _wait_for(lambda: log_file.read_text().count("Worker ready (process") == 2, 60)
    headers = as_project("proj-1", user="user-1")
    ids = []
    for _ in range(6):  # enough requests that both workers answer some
        r = httpx.post(s.url + "/v2/images", json={"name": "n"}, headers=headers)
        assert r.status_code == 201
        ids.append(r.headers["x-openstack-request-id"])
    r = httpx.get(s.url + "/v2/images/not-there", headers=headers)
    assert r.status_code == 404
    missing_id = r.headers["x-openstack-request-id"]
    # the access line is the last one a request logs
    _wait_for(lambda: all(re.search(f"{rid} .*glimpse.access|{rid}.*status: ",
                                    log_file.read_text()) for rid in [*ids, missing_id]))
    lines = log_file.read_text().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    # each worker's own lines are in the one format, and so are the HTTP server's
    # (uvicorn's or Granian's); which worker answers which request is the kernel's
    # choice, so not asserted
    workers = {m.group(1) for m in parsed
               if m.group(3) == "glimpse.api.app" and m.group(5).startswith("Worker ready")}
    assert len(workers) == 2, "both workers' lines"
    assert any(m.group(3).startswith(("uvicorn", "_granian")) for m in parsed)
    assert all(m.group(1) in workers for m in parsed if m.group(3) == "glimpse.access")
    for request_id in ids:
        line = next(m for m in parsed if request_id in m.group(4) and m.group(3) ==
                    "glimpse.access")
        assert "user-1 proj-1" in line.group(4)
        assert re.fullmatch(r"POST /v2/images status: 201 len: \d+ time: [0-9.]+",
                            line.group(5)), line.group(0)
    refused = [m for m in parsed if missing_id in m.group(4)]
    assert any("refused: 404" in m.group(5) and "not-there" in m.group(5) for m in refused)
    assert any(m.group(5).startswith("GET /v2/images/not-there status: 404") for m in refused)


def test_uploads_and_deletes_are_logged(tmp_path: Path, db_url: str,
                                        served: list[Served]) -> None:
    s = serve(tmp_path, "", db_url)
    served.append(s)
    image = httpx.post(s.url + "/v2/images", json={"name": "d", "disk_format": "raw",
                                                   "container_format": "bare"}).json()
    r = httpx.put(s.url + f"/v2/images/{image['id']}/file", content=b"x" * 5000,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    assert httpx.delete(s.url + f"/v2/images/{image['id']}").status_code == 204
    _wait_for(lambda: "Deleted image" in s.log.read_text())
    text = s.log.read_text()
    assert f"Uploaded 5000 bytes to image {image['id']}" in text
    assert re.search(f"Deleted image {image['id']} \\(active, 1 location", text)


def test_an_aborted_upload_is_logged_and_undone(tmp_path: Path, db_url: str,
                                                served: list[Served]) -> None:
    s = serve(tmp_path, "", db_url)
    served.append(s)
    image = httpx.post(s.url + "/v2/images", json={"name": "a", "disk_format": "raw",
                                                   "container_format": "bare"}).json()
    port = int(s.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"PUT /v2/images/{image['id']}/file HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/octet-stream\r\n"
                      "Content-Length: 1000000\r\n\r\n").encode() + b"y" * 1000)
        time.sleep(0.5)
    # the access line follows the warning (the 400 is sent after the rollback)
    _wait_for(lambda: re.search(r"PUT /v2/images/\S+/file status: ", s.log.read_text()))
    text = s.log.read_text()
    assert re.search(f"WARNING .*Upload to image {image['id']} aborted after \\d+ bytes: "
                     "BadRequest: The client disconnected", text)
    assert re.search(r"PUT /v2/images/\S+/file status: 400", text)
    _wait_for(lambda: httpx.get(s.url + f"/v2/images/{image['id']}").json()["status"]
              == "queued")


def test_use_json(tmp_path: Path, db_url: str, served: list[Served]) -> None:
    log_file = tmp_path / "json.log"
    s = serve(tmp_path, f"use_json = true\nlog_file = {log_file}", db_url)
    served.append(s)
    r = httpx.get(s.url + "/v2/images", headers=as_project("p-json", user="u-json"))
    request_id = r.headers["x-openstack-request-id"]
    _wait_for(lambda: request_id in log_file.read_text())
    docs = [json.loads(line) for line in log_file.read_text().splitlines()]
    access = next(d for d in docs if d["request_id"] == request_id)
    assert access["name"] == "glimpse.access"
    assert access["level"] == "INFO"
    assert access["user_identity"].startswith("u-json p-json")
    assert access["message"].startswith("GET /v2/images status: 200")


def test_log_config_append_with_a_watched_file(tmp_path: Path, db_url: str,
                                               served: list[Served]) -> None:
    target = tmp_path / "watched.log"
    logging_conf = tmp_path / "logging.conf"
    logging_conf.write_text(f"""
[loggers]
keys = root

[handlers]
keys = watched

[formatters]
keys = mine

[logger_root]
level = INFO
handlers = watched

[handler_watched]
class = logging.handlers.WatchedFileHandler
args = ('{target}',)
formatter = mine

[formatter_mine]
format = MINE %(levelname)s %(request_id)s %(message)s
""")
    s = serve(tmp_path, f"log_config_append = {logging_conf}\nlog_file = {tmp_path}/no.log",
              db_url)
    served.append(s)
    r = httpx.get(s.url + "/v2/images")
    request_id = r.headers["x-openstack-request-id"]
    _wait_for(lambda: target.exists() and request_id in target.read_text())
    assert f"MINE INFO {request_id} GET /v2/images status: 200" in target.read_text()
    assert not (tmp_path / "no.log").exists()  # log_config_append wins over log_file
    target.rename(tmp_path / "rotated.log")  # logrotate moves it: a new file is started
    r = httpx.get(s.url + "/v2/images")
    request_id = r.headers["x-openstack-request-id"]
    _wait_for(lambda: target.exists() and request_id in target.read_text())


def test_log_config_append_with_syslog(tmp_path: Path, db_url: str,
                                       served: list[Served]) -> None:
    """Seed 002's syslog handler: lines reach a syslog receiver (a UDP socket on
    127.0.0.1 here, as rsyslog's imudp) with the facility set and the request id."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.5)
        port = receiver.getsockname()[1]
        logging_conf = tmp_path / "logging.conf"
        logging_conf.write_text(f"""
[loggers]
keys = root
[handlers]
keys = syslog
[formatters]
keys = plain
[logger_root]
level = INFO
handlers = syslog
[handler_syslog]
class = logging.handlers.SysLogHandler
args = (('127.0.0.1', {port}), handlers.SysLogHandler.LOG_LOCAL3)
formatter = plain
[formatter_plain]
format = glimpse-api: %(levelname)s [%(request_id)s] %(message)s
""")
        s = serve(tmp_path, f"log_config_append = {logging_conf}", db_url)
        served.append(s)
        request_id = httpx.get(s.url + "/v2/images").headers["x-openstack-request-id"]
        received: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(request_id in m for m in received):
            try:
                received.append(receiver.recv(65536).decode())
            except TimeoutError:
                pass
    line = next(m for m in received if request_id in m)
    # <PRI> = facility * 8 + severity: local3 (19) and info (6).
    assert line.startswith(f"<{19 * 8 + 6}>glimpse-api: INFO [{request_id}] GET /v2/images"), line


def test_log_config_append_with_fluentd(tmp_path: Path, db_url: str,
                                        served: list[Served]) -> None:
    """Seed 002's fluentd handler: fluent-logger's FluentHandler with Glimpse's
    structured formatter, as an operator's log_config_append names them, sends every
    worker's lines to a Forward protocol receiver on 127.0.0.1 (tests/ops/
    fluent_forward.py: the protocol fluentd's in_forward speaks, decoded with msgpack;
    Debian 12 has no fluentd to start), each request's line with its request id, user
    and project."""
    with ForwardReceiver() as fluentd:
        logging_conf = tmp_path / "logging.conf"
        logging_conf.write_text(f"""
[loggers]
keys = root
[handlers]
keys = fluent
[formatters]
keys = fluent
[logger_root]
level = INFO
handlers = fluent
[handler_fluent]
class = fluent.handler.FluentHandler
args = ('glimpse.api', '127.0.0.1', {fluentd.port})
kwargs = {{'nanosecond_precision': True}}
formatter = fluent
[formatter_fluent]
class = glimpse.logs.FluentFormatter
""")
        s = serve(tmp_path, f"workers = 2\nlog_config_append = {logging_conf}", db_url)
        served.append(s)
        headers = as_project("proj-fluent", user="user-fluent")
        ids = []
        for _ in range(6):
            r = httpx.post(s.url + "/v2/images", json={"name": "f"}, headers=headers)
            assert r.status_code == 201
            ids.append(r.headers["x-openstack-request-id"])
        r = httpx.get(s.url + "/v2/images/not-there", headers=headers)
        assert r.status_code == 404
        missing_id = r.headers["x-openstack-request-id"]
        started = time.time()
        for request_id in ids:
            event = fluentd.wait_for(lambda e, rid=request_id: e.record.get("request_id")
                                     == rid and e.record.get("name") == "glimpse.access")
            assert event.tag == "glimpse.api"
            assert event.event_time and abs(event.time - started) < 60
            record = event.record
            assert record["level"] == "INFO"
            assert record["user_id"] == "user-fluent"
            assert record["project_id"] == "proj-fluent"
            assert record["user_identity"].startswith("user-fluent proj-fluent")
            assert re.fullmatch(r"POST /v2/images status: 201 len: \d+ time: [0-9.]+",
                                record["message"]), record
        refusal = fluentd.wait_for(lambda e: e.record.get("request_id") == missing_id
                                   and "refused: 404" in e.record["message"])
        assert "not-there" in refusal.record["message"]
        assert refusal.record["level"] in ("INFO", "WARNING")
        # both workers' own (uvicorn's) startup lines went the same way
        first = fluentd.wait_for(lambda e: "Application startup complete" in
                                 e.record["message"], 60)
        fluentd.wait_for(lambda e: "Application startup complete" in e.record["message"]
                         and e.record["process"] != first.record["process"], 60)
