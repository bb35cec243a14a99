"""Fixtures for the notification tests: the real RabbitMQ on 127.0.0.1:5672
(guest/guest), a kombu consumer bound to the ``glance`` exchange, and apps
whose notifier publishes there on a topic of their own.

Outside CI a broker that is not running skips these tests (named); with
CI=true they fail.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.services import runtime as runtime_mod

IN_CI = os.environ.get("CI", "").lower() == "true"
BROKER_HOST = "127.0.0.1"
BROKER_PORT = int(os.environ.get("GLIMPSE_TEST_RABBIT_PORT", "5672"))
AMQP_URL = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}//"


def rabbit_url(host: str = BROKER_HOST, port: int = BROKER_PORT) -> str:
    return f"rabbit://guest:guest@{host}:{port}/"


@pytest.fixture(scope="session")
def broker() -> str:
    """The AMQP URL of the running broker (it must be there in CI)."""
    try:
        with socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=3):
            pass
    except OSError as exc:
        message = (f"RabbitMQ is not reachable on {BROKER_HOST}:{BROKER_PORT} ({exc}); "
                   "start it with `rabbitmq-server -detached`")
        if IN_CI:
            pytest.fail(message + " - CI requires it", pytrace=False)
        pytest.skip(message)
    return AMQP_URL


@dataclass
class Consumer:
    """A throw-away queue bound to ``glance`` for one topic's notifications."""

    topic: str
    amqp_url: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import kombu

        self.connection = kombu.Connection(self.amqp_url)
        # Declared as oslo.messaging declares it (topic, not durable), so both agree.
        self.exchange = kombu.Exchange("glance", type="topic", durable=False)
        self.queue = kombu.Queue(f"glimpse-test-{uuid.uuid4().hex[:10]}", self.exchange,
                                 routing_key=f"{self.topic}.*", auto_delete=True,
                                 exclusive=True, durable=False)
        self._consumer = self.connection.Consumer(self.queue, callbacks=[self._on_message],
                                                  accept=["json"])
        self._consumer.consume()

    def _on_message(self, body: Any, message: Any) -> None:
        envelope = body
        if isinstance(body, dict) and "oslo.message" in body:
            import json

            envelope = json.loads(body["oslo.message"])
        envelope["_routing_key"] = message.delivery_info.get("routing_key")
        self.messages.append(envelope)
        message.ack()

    def wait_for(self, done: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not done(self.messages) and time.monotonic() < deadline:
            try:
                self.connection.drain_events(timeout=0.2)
            except TimeoutError:
                pass
        return self.messages

    def wait_count(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        return self.wait_for(lambda m: len(m) >= count, timeout)

    def settle(self, quiet: float = 0.5, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Everything that arrives until nothing new came for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        seen, last_change = len(self.messages), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_change < quiet:
            try:
                self.connection.drain_events(timeout=0.1)
            except TimeoutError:
                pass
            if len(self.messages) != seen:
                seen, last_change = len(self.messages), time.monotonic()
        return self.messages

    def types(self) -> list[str]:
        return [m["event_type"] for m in self.messages]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["event_type"] == event_type]

    def close(self) -> None:
        import kombu

        try:
            self._consumer.cancel()
        finally:
            # oslo.messaging declares a queue per topic and priority: remove ours.
            with kombu.Connection(self.amqp_url) as conn:
                channel = conn.channel()
                for priority in ("info", "error", "warn", "audit", "debug", "critical"):
                    try:
                        channel.queue_delete(f"{self.topic}.{priority}")
                    except Exception:  # noqa: BLE001 - not created: nothing to remove
                        channel = conn.channel()
            self.connection.release()


@pytest.fixture
def consumer(broker: str) -> Iterator[Consumer]:
    c = Consumer(f"glimpse-test-{uuid.uuid4().hex[:10]}", broker)
    yield c
    c.close()


def conf_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "glance-api.conf"
    path.write_text(text)
    return str(path)


def notify_config(topic: str, url: str | None = None, extra: str = "",
                  default_extra: str = "") -> str:
    return (f"[DEFAULT]\n{default_extra}\n"
            f"[oslo_messaging_notifications]\ndriver = messagingv2\n"
            f"transport_url = {url or rabbit_url()}\ntopics = {topic}\n{extra}\n")


@pytest.fixture
def notify_app(tmp_path: Path, db_url: str) -> Iterator[Callable[..., TestClient]]:
    """make(config_text, **overrides) -> TestClient; the runtime is ``client.app.state.runtime``."""
    runtimes: list[runtime_mod.Runtime] = []

    def make(config_text: str, **overrides: object) -> TestClient:
        values: dict[str, object] = {"data_dir": str(tmp_path / "data"),
                                     "database.connection": db_url}
        values.update(overrides)
        conf = load_config([conf_file(tmp_path, config_text)], values)
        rt = runtime_mod.build(conf, migrate=True)
        runtimes.append(rt)
        return TestClient(create_app(conf, rt), headers={"Accept": "application/json"})

    yield make
    for rt in runtimes:
        rt.close()
