"""Publishing notifications to RabbitMQ with kombu, as oslo.messaging's rabbit driver does.

The messages, exchange, routing keys and queues are oslo.messaging's: the topic
exchange ``control_exchange`` (glance), routing key ``<topic>.<priority>``, a
queue of that name declared once per connection so nothing is lost before a
consumer binds, the 2.0 envelope (``oslo.version`` / ``oslo.message``) for
``messagingv2`` and the bare message for ``messaging``, every publish
confirmed by the broker. The transport URL (several hosts: failover), its
``?ssl=1`` style query and the ``[oslo_messaging_rabbit]`` TLS, queue and
login options are read as oslo.messaging reads them.

Why not oslo.messaging's own driver: it costs three to five times more CPU per
message in the worker process (its connection pool and retry machinery around
the same kombu publish), and that CPU competes with the requests
(bench/notify.py). See docs/decisions/0005-notifications.md.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import uuid
from typing import Any
from urllib.parse import quote

from oslo_config import cfg

from glimpse.notify import options

LOG = logging.getLogger(__name__)

RABBIT_SCHEMES = ("rabbit", "kombu", "amqp")
CONFIRM_TIMEOUT = 10.0
_SSL_VERSIONS = {"tlsv1": "PROTOCOL_TLSv1", "tlsv1_1": "PROTOCOL_TLSv1_1",
                 "tlsv1_2": "PROTOCOL_TLSv1_2", "sslv23": "PROTOCOL_SSLv23"}


def is_rabbit(url: str | None) -> bool:
    scheme = (url or "rabbit://").split(":", 1)[0].lower()
    return scheme in RABBIT_SCHEMES


def _rabbit_settings(conf: cfg.ConfigOpts, query: dict[str, str]) -> dict[str, Any]:
    """[oslo_messaging_rabbit], with the URL's query parameters winning (oslo.messaging)."""
    group = conf[options.RABBIT_GROUP]
    known = {opt.name: opt for g, opts in options._oslo_messaging_opts()
             if g == options.RABBIT_GROUP for opt in opts}
    names = ("ssl", "ssl_version", "ssl_key_file", "ssl_cert_file", "ssl_ca_file",
             "ssl_enforce_hostname_verification", "amqp_durable_queues", "amqp_auto_delete",
             "rabbit_ha_queues", "rabbit_quorum_queue", "rabbit_login_method",
             "kombu_failover_strategy", "heartbeat_timeout_threshold")
    values = {name: group[name] for name in names}
    for key, value in query.items():
        if key in values and key in known:
            values[key] = known[key].type(value)
    return values


def _ssl_params(settings: dict[str, Any], hosts: list[Any]) -> Any:
    if not settings["ssl"]:
        return False
    params: dict[str, Any] = {}
    if settings["ssl_version"]:
        attr = _SSL_VERSIONS.get(settings["ssl_version"].lower())
        if attr is None or not hasattr(ssl, attr):
            raise ValueError(f"Invalid SSL version: {settings['ssl_version']}")
        params["ssl_version"] = getattr(ssl, attr)
    if settings["ssl_key_file"]:
        params["keyfile"] = settings["ssl_key_file"]
    if settings["ssl_cert_file"]:
        params["certfile"] = settings["ssl_cert_file"]
    if settings["ssl_ca_file"]:
        params["ca_certs"] = settings["ssl_ca_file"]
        params["cert_reqs"] = ssl.CERT_REQUIRED
        if len(hosts) == 1:
            params["server_hostname"] = hosts[0].hostname
    return params or True


class RabbitPublisher:
    """One kombu connection (failing over between the URL's hosts) and its producer."""

    def __init__(self, conf: cfg.ConfigOpts, url: str | None, topics: list[str]):
        from glimpse.notify.sender import _import_oslo_messaging

        om = _import_oslo_messaging()
        parsed = om.TransportURL.parse(conf, url or conf.transport_url)
        self.settings = _rabbit_settings(conf, dict(parsed.query or {}))
        self.hosts = list(parsed.hosts)
        vhost = parsed.virtual_host or "/"
        self.urls = ";".join(
            "amqp://{}:{}@{}:{}/{}".format(
                quote(h.username or "guest", safe=""), quote(h.password or "guest", safe=""),
                h.hostname or "localhost", h.port or 5672, quote(vhost, safe=""))
            for h in (self.hosts or [om.TransportHost("")]))
        self.ssl = _ssl_params(self.settings, self.hosts)
        self.exchange_name = conf.control_exchange
        self.topics = list(topics)
        self.durable = bool(self.settings["amqp_durable_queues"]
                            or self.settings["rabbit_quorum_queue"])
        self._connection: Any = None
        self._channel: Any = None
        self._published = self._acked = 0
        self._nacked = False
        self._declared: set[str] = set()

    # ------------------------------------------------------------ connection

    def _connect(self) -> Any:
        """The confirm-mode channel, connecting (one attempt per host) if needed."""
        import kombu
        from amqp.exceptions import PreconditionFailed

        if self._channel is not None:
            return self._channel
        self._connection = kombu.Connection(
            self.urls, ssl=self.ssl, login_method=self.settings["rabbit_login_method"],
            failover_strategy=self.settings["kombu_failover_strategy"], heartbeat=0,
            connect_timeout=5)
        # One attempt per host: the sender's own loop retries later.
        self._connection.ensure_connection(max_retries=max(len(self.hosts), 1),
                                           interval_start=0, interval_step=0)
        channel = self._connection.channel()
        self.exchange = kombu.Exchange(self.exchange_name, type="topic", durable=self.durable,
                                       auto_delete=self.settings["amqp_auto_delete"])
        try:
            self.exchange(channel).declare()
        except PreconditionFailed:
            # Declared before with the other durability: use it as it is (oslo.messaging
            # retries as non-durable the same way).
            LOG.warning("Exchange %s exists with another durability; using it as non-durable",
                        self.exchange_name)
            self.durable = False
            self.reset()
            return self._connect()
        # Publisher confirms, waited for once per batch rather than once per message.
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._channel, self._published, self._acked, self._nacked = channel, 0, 0, False
        self._declared = set()
        return channel

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        # Tags count publishes on the channel; acks may come cumulatively (multiple).
        self._acked = max(self._acked, delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True

    def reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - it is broken already
                LOG.debug("closing a broken broker connection failed", exc_info=True)

    close = reset

    def _declare_queue(self, name: str) -> None:
        """oslo.messaging's default queue of a routing key (once per connection)."""
        import kombu
        from amqp.exceptions import PreconditionFailed

        if name in self._declared:
            return
        arguments: dict[str, Any] = {}
        if self.settings["rabbit_quorum_queue"]:
            arguments["x-queue-type"] = "quorum"
        elif self.settings["rabbit_ha_queues"]:
            arguments["x-ha-policy"] = "all"
        queue = kombu.Queue(name, self.exchange, routing_key=name, durable=self.durable,
                            auto_delete=self.settings["amqp_auto_delete"],
                            queue_arguments=arguments or None)
        try:
            queue(self._channel).declare()
        except PreconditionFailed:
            # The queue exists with other arguments (declared by another service): it
            # is there, which is all that matters; the channel closed, so reconnect.
            LOG.info("Queue %s exists with other arguments; publishing to it as it is", name)
            self.reset()
            self._connect()
        self._declared.add(name)

    # ------------------------------------------------------------ publishing

    def publish_many(self, items: list[tuple[dict[str, Any], str, float]]) -> None:
        """Send each (message, priority, format version) to every topic; returns once
        the broker confirmed them all, raises otherwise (then none counts as sent)."""
        import amqp

        try:
            channel = self._connect()
            for message, priority, version in items:
                body: dict[str, Any] = dict(message, _unique_id=uuid.uuid4().hex)
                if version >= 2.0:
                    body = {"oslo.version": "2.0", "oslo.message": json.dumps(body)}
                data = json.dumps(body).encode()
                for topic in self.topics:
                    routing_key = f"{topic}.{priority.lower()}"
                    self._declare_queue(routing_key)
                    channel = self._channel
                    channel.basic_publish(
                        amqp.Message(data, content_type="application/json",
                                     content_encoding="utf-8", delivery_mode=2),
                        exchange=self.exchange_name, routing_key=routing_key)
                    self._published += 1
            self._wait_confirms()
        except BaseException:
            self.reset()
            raise

    def publish(self, message: dict[str, Any], priority: str, version: float) -> None:
        self.publish_many([(message, priority, version)])

    def _wait_confirms(self) -> None:
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while self._acked < self._published:
            if self._nacked:
                raise ConnectionError("The broker refused (nack) a notification")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"The broker did not confirm within {CONFIRM_TIMEOUT} s")
            self._connection.drain_events(timeout=left)
        if self._nacked:
            raise ConnectionError("The broker refused (nack) a notification")
