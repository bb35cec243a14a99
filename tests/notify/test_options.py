"""How the notifier is configured: Glance's and oslo.messaging's option names,
the old names of seed 004 (with a deprecation warning), a cluster of brokers,
TLS, and the noop default. Each delivery is checked on the real broker."""

from __future__ import annotations

import logging

import pytest

from glimpse.config import load_config
from glimpse.notify import notifier as notifier_mod
from glimpse.notify import options
from tests.conftest import as_project, free_port
from tests.notify.conftest import BROKER_PORT, conf_file, notify_config, rabbit_url

OWNER = as_project("proj-c", user="user-c")


def _create(client) -> str:  # noqa: ANN001
    r = client.post("/v2/images", headers=OWNER, json={"name": "opt"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_noop_is_the_default(tmp_path) -> None:
    conf = load_config([], {"data_dir": str(tmp_path)})
    notifier = notifier_mod.build(conf)
    assert notifier.enabled is False and notifier.sender is None
    notifier.image_event("image.create", None)  # type: ignore[arg-type] - builds nothing


@pytest.mark.parametrize(("disabled", "event", "sent"), [
    ([], "image.create", True),
    (["image.create"], "image.create", False),
    (["image.create"], "image.update", True),
    (["image"], "image.member.create", False),
    (["image.member"], "image.member.create", True),   # Glance: exact type or first word
    (["metadef_tag"], "metadef_tag.update", False),
    (["task"], "task.success", False),
])
def test_disabled_matching_is_glances(disabled, event, sent) -> None:  # noqa: ANN001
    assert notifier_mod.is_enabled(disabled, event) is sent


def test_publisher_id_and_exchange(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic,
                                      default_extra="default_publisher_id = image.node7"))
    image_id = _create(client)
    client.app.state.runtime.notifier.flush()
    message = consumer.wait_count(1)[0]
    assert message["publisher_id"] == "image.node7"
    assert message["payload"]["id"] == image_id
    assert {"message_id", "timestamp", "priority", "event_type"} <= set(message)


def test_transport_url_falls_back_to_default_section(notify_app, consumer) -> None:
    text = (f"[DEFAULT]\ntransport_url = {rabbit_url()}\n"
            f"[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = {consumer.topic}\n")
    client = notify_app(text)
    _create(client)
    client.app.state.runtime.notifier.flush()
    assert [m["event_type"] for m in consumer.wait_count(1)] == ["image.create"]


def test_cluster_of_brokers_fails_over(notify_app, consumer) -> None:
    """Seed 002's HA members: the first host is down, the second takes the messages."""
    dead = free_port()
    url = f"rabbit://guest:guest@127.0.0.1:{dead},guest:guest@127.0.0.1:{BROKER_PORT}/"
    client = notify_app(notify_config(consumer.topic, url=url))
    client.app.state.runtime.notifier.sender.retry_max = 0.3
    _create(client)
    assert client.app.state.runtime.notifier.flush(20)
    assert [m["event_type"] for m in consumer.wait_count(1)] == ["image.create"]


def test_legacy_option_names_still_work(notify_app, consumer, caplog) -> None:
    """Seed 004 5.4.6: notification_driver and rabbit_* in [DEFAULT]."""
    caplog.set_level(logging.WARNING)
    text = ("[DEFAULT]\nnotification_driver = messaging\nrabbit_host = 127.0.0.1\n"
            f"rabbit_port = {BROKER_PORT}\nrabbit_userid = guest\nrabbit_password = guest\n"
            "rabbit_virtual_host = /\n"
            f"[oslo_messaging_notifications]\ntopics = {consumer.topic}\n")
    client = notify_app(text)
    image_id = _create(client)
    client.app.state.runtime.notifier.flush()
    message = consumer.wait_count(1)[0]
    # "messaging" is oslo.messaging's 1.0 format: the message without envelope.
    assert message["event_type"] == "image.create" and message["payload"]["id"] == image_id
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "notification_driver is deprecated" in text
    assert "rabbit_host" in text and "deprecated" in text
    assert "guest:guest" not in text


def test_legacy_url_is_built_from_the_old_options(tmp_path) -> None:
    conf = load_config([conf_file(tmp_path, (
        "[DEFAULT]\nrabbit_hosts = 10.0.16.1:5672,10.0.16.2\nrabbit_userid = openstack\n"
        "rabbit_password = p@ss\nrabbit_virtual_host = /openstack\n"))], {})
    options.register_opts(conf)
    assert options.transport_url(conf) == (
        "rabbit://openstack:p%40ss@10.0.16.1:5672,openstack:p%40ss@10.0.16.2:5672/openstack")


def test_tls_options_reach_the_transport(notify_app, consumer, caplog) -> None:
    """[oslo_messaging_rabbit] ssl = true against the plain port: the TLS handshake
    fails, so nothing is delivered and the message stays queued (never lost)."""
    caplog.set_level(logging.WARNING)
    client = notify_app(notify_config(
        consumer.topic, extra="[oslo_messaging_rabbit]\nssl = true\nssl_version = TLSv1_2\n"))
    notifier = client.app.state.runtime.notifier
    _create(client)
    assert notifier.flush(2) is False
    assert notifier.sender.pending() == 1 and notifier.sender.stats.failures >= 1
    assert consumer.settle(quiet=0.5) == []
    assert any("Cannot send notifications" in r.getMessage() for r in caplog.records)


def test_ssl_in_the_url(notify_app, consumer) -> None:
    """Seed 000 6.7's rabbit://...:5671/?ssl=1 form is honoured the same way."""
    client = notify_app(notify_config(consumer.topic,
                                      url=f"rabbit://guest:guest@127.0.0.1:{BROKER_PORT}/?ssl=1"))
    notifier = client.app.state.runtime.notifier
    _create(client)
    assert notifier.flush(2) is False and notifier.sender.pending() == 1
    assert consumer.settle(quiet=0.5) == []


def test_oslo_transport_path_delivers_too(notify_app, consumer, monkeypatch) -> None:
    """Non-RabbitMQ URLs go through oslo.messaging's transport: same messages."""
    from glimpse.notify.sender import Sender

    monkeypatch.setattr(Sender, "direct_rabbit", False)
    client = notify_app(notify_config(consumer.topic))
    image_id = _create(client)
    assert client.app.state.runtime.notifier.flush(10)
    message = consumer.wait_count(1)[0]
    assert message["event_type"] == "image.create" and message["payload"]["id"] == image_id
    assert message["publisher_id"] == "image.localhost"


def test_log_driver_writes_notifications_to_the_log(notify_app, caplog) -> None:
    caplog.set_level(logging.INFO, logger="oslo.messaging.notification")
    client = notify_app("[oslo_messaging_notifications]\ndriver = log\n")
    image_id = _create(client)
    assert client.app.state.runtime.notifier.flush(10)
    logged = [r for r in caplog.records if r.name == "oslo.messaging.notification.image.create"]
    assert len(logged) == 1 and image_id in logged[0].getMessage()


def test_unknown_driver_keeps_messages_and_warns(notify_app, caplog) -> None:
    caplog.set_level(logging.WARNING)
    client = notify_app("[oslo_messaging_notifications]\ndriver = carrier_pigeon\n")
    _create(client)
    notifier = client.app.state.runtime.notifier
    assert notifier.flush(1) is False and notifier.sender.pending() == 1
    assert any("carrier_pigeon" in r.getMessage() for r in caplog.records)


def test_a_broken_payload_never_fails_the_caller(tmp_path, caplog) -> None:
    conf = load_config([conf_file(tmp_path, "[oslo_messaging_notifications]\ndriver = log\n")],
                       {"data_dir": str(tmp_path)})
    notifier = notifier_mod.build(conf)
    try:
        assert notifier.enabled
        notifier.image_event("image.create", None)  # type: ignore[arg-type] - no image
        notifier.metadef_event("metadef_tag.create", "ns", {})  # no name
        assert sum("Could not build or queue" in r.getMessage() for r in caplog.records) == 2
    finally:
        notifier.close()
