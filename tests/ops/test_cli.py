"""The glimpse command: help, friendly failures, old option names, db check, workers,
graceful stop."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from glimpse.cli import build_parser
from tests.ops.conftest import Served, serve, write_conf


def glimpse(*args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glimpse.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def _parsers(parser: argparse.ArgumentParser, path: str = "glimpse"):  # noqa: ANN202
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                assert helped == set(action.choices), f"{path}: commands without help"
            else:
                assert action.help, f"{path} {action.option_strings or action.dest}: no help"


def test_help_lists_policy_and_the_serve_options() -> None:
    top = glimpse("--help")
    assert top.returncode == 0
    for command in ("serve", "db", "db_sync", "scrub", "policy"):
        assert command in top.stdout
    serve_help = glimpse("serve", "--help").stdout
    for option in ("--host", "--port", "--workers", "--log-level", "--access-log",
                   "--config-file", "--data-dir", "--debug"):
        assert option in serve_help


def _one_line_failure(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("glimpse:")]
    assert len(error_lines) == 1, proc.stderr
    for text in expected:
        assert text in error_lines[0], proc.stderr


def test_missing_database_driver(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "psycopg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    conf = write_conf(tmp_path, "[database]\nconnection = postgresql://u@127.0.0.1:1/db")
    env = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}"
           + os.environ.get("PYTHONPATH", "")}
    proc = glimpse("db", "sync", "--config-file", str(conf), env=env)
    _one_line_failure(proc, "psycopg is not installed", "pip install 'glimpse[postgresql]'")
    debug = glimpse("db", "sync", "--config-file", str(conf), "--debug", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_missing_and_unparsable_config_files(tmp_path: Path) -> None:
    _one_line_failure(glimpse("db", "version", "--config-file", str(tmp_path / "nope.conf")),
                      "configuration file not found", "nope.conf")
    bad = tmp_path / "bad.conf"
    bad.write_text("[DEFAULT]\nthis line has no equals sign\n")
    _one_line_failure(glimpse("db", "version", "--config-file", str(bad)),
                      "cannot be parsed", "bad.conf")


def test_bad_option_value_names_the_option(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "workers = many")
    _one_line_failure(glimpse("serve", "--config-file", str(conf), "--data-dir",
                              str(tmp_path / "d")), "bad option value", "workers", "many")


def test_unusable_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("get_images: [unclosed\n")
    for workers in (1, 2):
        conf = write_conf(tmp_path, f"workers = {workers}\n[oslo_policy]\n"
                          f"policy_file = {policy}")
        proc = glimpse("serve", "--config-file", str(conf), "--data-dir", str(tmp_path / "d"))
        _one_line_failure(proc, "policy file", "is not valid YAML", "[oslo_policy] policy_file")


def test_old_option_names_work_with_one_warning_each(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    conf = write_conf(tmp_path, f"""
[DEFAULT]
sql_connection = sqlite:///{db}
[paste_deploy]
flavor = keystone
[keystone_authtoken]
auth_host = 127.0.0.1
auth_port = 5000
auth_protocol = http
admin_user = glance
admin_password = secret
admin_tenant_name = service
""")
    proc = glimpse("db_sync", "--config-file", str(conf), "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert db.exists(), "sql_connection was used"
    for old, new in (("[DEFAULT] sql_connection", "[database] connection"),
                     ("admin_user", "username"), ("admin_password", "password"),
                     ("admin_tenant_name", "project_name"),
                     ("auth_host/auth_port/auth_protocol", "auth_url (here "
                      "http://127.0.0.1:5000/v3)"),
                     ("[paste_deploy] flavor = keystone", "[DEFAULT] auth_strategy = keystone")):
        warnings = [line for line in proc.stderr.splitlines()
                    if "WARNING" in line and old in line]
        assert len(warnings) == 1, (old, proc.stderr)
        assert new in warnings[0]
    assert "secret" not in proc.stderr


def test_old_keystone_names_map_onto_todays_options(tmp_path: Path) -> None:
    from glimpse.config import load_config

    conf = load_config([str(write_conf(tmp_path, """
[keystone_authtoken]
auth_host = keystone.example.test
admin_user = glance
admin_password = pw
admin_tenant_name = service
"""))])
    ks = conf.keystone_authtoken
    assert ks.auth_url == "https://keystone.example.test:35357/v3"
    assert (ks.username, ks.password, ks.project_name) == ("glance", "pw", "service")


def test_db_check_reports_whether_the_schema_is_current(tmp_path: Path, fresh_db_url: str,
                                                        ) -> None:
    conf = write_conf(tmp_path, f"[database]\nconnection = {fresh_db_url}")
    before = glimpse("db", "check", "--config-file", str(conf))
    assert before.returncode == 3, before.stdout + before.stderr
    assert "run `glimpse db sync`" in before.stdout
    assert glimpse("db_sync", "--config-file", str(conf)).returncode == 0
    after = glimpse("db", "check", "--config-file", str(conf))
    assert after.returncode == 0, after.stdout + after.stderr
    assert "the schema is current" in after.stdout


def test_workers_come_from_the_config_file(tmp_path: Path, db_url: str,
                                           served: list[Served]) -> None:
    s = serve(tmp_path, "workers = 2", db_url)
    served.append(s)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if s.log.read_text().count("Worker ready (process") == 2:
            break
        time.sleep(0.2)
    assert "with 2 worker(s)" in s.log.read_text()
    assert s.log.read_text().count("Worker ready (process") == 2


class SlowUpload:
    """A raw HTTP upload whose body is sent in two halves, with a pause between."""

    def __init__(self, url: str, image_id: str, size: int):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.size = size
        self.sock.sendall((f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: {host}\r\n"
                           "Content-Type: application/octet-stream\r\n"
                           f"Content-Length: {size}\r\n\r\n").encode())
        self.sock.sendall(b"a" * (size // 2))

    def finish(self) -> bytes:
        self.sock.sendall(b"b" * (self.size - self.size // 2))
        self.sock.settimeout(30)
        answer = self.sock.recv(4096)
        self.sock.close()
        return answer


@pytest.fixture
def image_for_upload():  # noqa: ANN201
    def make(url: str) -> str:
        return httpx.post(url + "/v2/images", json={"name": "slow", "disk_format": "raw",
                                                   "container_format": "bare"}).json()["id"]
    return make


def test_sigterm_lets_requests_in_flight_finish(tmp_path: Path, db_url: str,
                                                served: list[Served], image_for_upload,  # noqa: ANN001
                                                ) -> None:
    s = serve(tmp_path, "graceful_shutdown_timeout = 30", db_url)
    served.append(s)
    image_id = image_for_upload(s.url)
    upload = SlowUpload(s.url, image_id, 6 * 1024 * 1024)
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    with pytest.raises(httpx.ConnectError):  # no new connections
        httpx.get(s.url + "/versions", timeout=2)
    answer = upload.finish()
    assert answer.startswith(b"HTTP/1.1 204"), answer
    # uvicorn ends by re-raising the signal it caught, after the clean shutdown
    assert s.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Worker stopped (process" in s.log.read_text()
    # the data is all there: serve the same data directory again and look
    s2 = serve(tmp_path, "", db_url)
    served.append(s2)
    image = httpx.get(s2.url + f"/v2/images/{image_id}").json()
    assert (image["status"], image["size"]) == ("active", 6 * 1024 * 1024)


def test_sigterm_aborts_what_outlives_the_grace_period(tmp_path: Path, db_url: str,
                                                       served: list[Served],
                                                       image_for_upload,  # noqa: ANN001
                                                       ) -> None:
    s = serve(tmp_path, "graceful_shutdown_timeout = 2", db_url)
    served.append(s)
    image_id = image_for_upload(s.url)
    upload = SlowUpload(s.url, image_id, 6 * 1024 * 1024)
    time.sleep(0.5)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    s.proc.wait(30)
    assert time.monotonic() - t0 < 15
    threading.Thread(target=upload.sock.close).start()
    s2 = serve(tmp_path, "", db_url)
    served.append(s2)
    image = httpx.get(s2.url + f"/v2/images/{image_id}").json()
    assert image["status"] == "queued", "no image left saving"
    assert not list((tmp_path / "data").rglob(f"{image_id}*")), "no partial data left"
