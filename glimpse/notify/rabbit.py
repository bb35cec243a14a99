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
(bench/notify.py). See docs/decisions/0003-notifications.md.
"""

from __future__ import annotations

import json
import logging
import ssl
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
        self._producer: Any = None
        self._declared: set[str] = set()

    # ------------------------------------------------------------ connection

    def _connect(self) -> Any:
        import kombu
        from amqp.exceptions import PreconditionFailed

        if self._producer is not None:
            return self._producer
        self._connection = kombu.Connection(
            self.urls, ssl=self.ssl, login_method=self.settings["rabbit_login_method"],
            failover_strategy=self.settings["kombu_failover_strategy"], heartbeat=0,
            connect_timeout=5, transport_options={"confirm_publish": True})
        # One attempt per host: the sender's own loop retries later.
        self._connection.ensure_connection(max_retries=max(len(self.hosts), 1),
                                           interval_start=0, interval_step=0)
        self.exchange = kombu.Exchange(self.exchange_name, type="topic", durable=self.durable,
                                       auto_delete=self.settings["amqp_auto_delete"])
        self._producer = self._connection.Producer(exchange=self.exchange, auto_declare=False)
        try:
            self.exchange(self._producer.channel).declare()
        except PreconditionFailed:
            # Declared before with the other durability: use it as it is (oslo.messaging
            # retries as non-durable the same way).
            LOG.warning("Exchange %s exists with another durability; using it as non-durable",
                        self.exchange_name)
            self.durable = False
            self.reset()
            return self._connect()
        self._declared = set()
        return self._producer

    def reset(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - it is broken already
                LOG.debug("closing a broken broker connection failed", exc_info=True)

    close = reset

    def _declare_queue(self, producer: Any, name: str) -> None:
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
            queue(producer.channel).declare()
        except PreconditionFailed:
            # The queue exists with other arguments (declared by another service):
            # it is there, which is all that matters; the channel must be reopened.
            LOG.info("Queue %s exists with other arguments; publishing to it as it is", name)
            self.reset()
            producer = self._connect()
        self._declared.add(name)

    # ------------------------------------------------------------ publishing

    def publish(self, message: dict[str, Any], priority: str, version: float) -> None:
        """Send ``message`` to every topic; raises unless the broker confirmed each."""
        body = dict(message, _unique_id=uuid.uuid4().hex)
        if version >= 2.0:
            body = {"oslo.version": "2.0", "oslo.message": json.dumps(body)}
        try:
            producer = self._connect()
            for topic in self.topics:
                routing_key = f"{topic}.{priority.lower()}"
                self._declare_queue(producer, routing_key)
                producer = self._producer
                producer.publish(body, routing_key=routing_key, serializer="json",
                                 retry=False, timeout=CONFIRM_TIMEOUT,
                                 confirm_timeout=CONFIRM_TIMEOUT)
        except BaseException:
            self.reset()
            raise
