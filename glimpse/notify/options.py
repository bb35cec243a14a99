"""Notification and audit options: Glance's, oslo.messaging's and keystonemiddleware.audit's.

oslo.messaging owns ``[oslo_messaging_notifications]`` (driver, transport_url,
topics, retry), ``[oslo_messaging_rabbit]`` (ssl, ssl_ca_file, ssl_version, ...)
and ``[DEFAULT] transport_url`` / ``control_exchange``; they are registered
here with oslo.messaging's own definitions so every existing file reads the same.
Glance's ``[DEFAULT] default_publisher_id`` and ``disabled_notifications`` are
declared here, as are the names older releases used (``notification_driver``,
``rabbit_host`` ...), still read with a deprecation warning.
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import quote, urlsplit

from oslo_config import cfg

LOG = logging.getLogger(__name__)

NOTIFICATIONS_GROUP = "oslo_messaging_notifications"
RABBIT_GROUP = "oslo_messaging_rabbit"
AUDIT_GROUP = "audit_middleware_notifications"
CONTROL_EXCHANGE = "glance"

default_opts = [
    cfg.StrOpt("default_publisher_id", default="image.localhost",
               help="Publisher id of every notification this service sends (typically "
               "image.<host name>)."),
    cfg.ListOpt("disabled_notifications", default=[],
                help="Notifications not to send: an event type (image.create) disables "
                "that event, a group (the text before the first dot: image, task, "
                "metadef_tag, ...) every event of the group."),
    cfg.IntOpt("notification_queue_size", default=10000, min=1,
               help="(Glimpse) Notifications waiting to be sent (while the broker is slow "
               "or unreachable) at most; beyond that new ones are dropped, counted and "
               "logged. Requests never wait for the broker."),
]

# Names from releases before [oslo_messaging_notifications] and transport_url
# (seed 004 5.4.6). Read only when no transport_url is set.
legacy_opts = [
    cfg.MultiStrOpt("notification_driver", default=[], deprecated_for_removal=True,
                    deprecated_reason="Use [oslo_messaging_notifications] driver.",
                    help="Old name of [oslo_messaging_notifications] driver."),
    cfg.StrOpt("rabbit_host", deprecated_for_removal=True,
               deprecated_reason="Use a transport_url (rabbit://user:password@host:port/vhost).",
               help="Old name of the broker host of the transport_url."),
    cfg.ListOpt("rabbit_hosts", default=[], deprecated_for_removal=True,
                deprecated_reason="Use a transport_url naming every cluster member.",
                help="Old name of the broker cluster members (host:port) of the "
                "transport_url."),
    cfg.PortOpt("rabbit_port", default=5672, deprecated_for_removal=True,
                deprecated_reason="Use a transport_url.",
                help="Old name of the broker port of the transport_url."),
    cfg.StrOpt("rabbit_userid", default="guest", deprecated_for_removal=True,
               deprecated_reason="Use a transport_url.",
               help="Old name of the broker user of the transport_url."),
    cfg.StrOpt("rabbit_password", default="guest", secret=True, deprecated_for_removal=True,
               deprecated_reason="Use a transport_url.",
               help="Old name of the broker password of the transport_url."),
    cfg.StrOpt("rabbit_virtual_host", default="/", deprecated_for_removal=True,
               deprecated_reason="Use a transport_url.",
               help="Old name of the virtual host of the transport_url."),
]
for _opt in legacy_opts:
    if _opt.name.startswith("rabbit_"):
        # Releases between the two styles read them from [oslo_messaging_rabbit].
        _opt.deprecated_opts = [cfg.DeprecatedOpt(_opt.name, group=RABBIT_GROUP)]

# keystonemiddleware.audit's group, plus the audit filter's paste settings
# (audit_map_file, ignore_req_list, ...) that Glimpse, having no paste pipeline,
# reads from the same group.
audit_opts = [
    cfg.BoolOpt("enabled", default=False,
                help="(Glimpse) Send CADF audit events (audit.http.request and "
                "audit.http.response) for every API request: what Glance's "
                "keystonemiddleware.audit filter in the paste pipeline does."),
    cfg.StrOpt("audit_map_file", default="glance_api_audit_map.conf",
               help="(Glimpse) The keystonemiddleware.audit map file (the filter's "
               "audit_map_file setting): path keywords, custom actions, service "
               "endpoints. A relative name is looked up beside the configuration files, "
               "then in /etc/pycadf and in pycadf's own copy."),
    cfg.StrOpt("ignore_req_list", default="",
               help="(Glimpse) HTTP methods not audited, comma-separated (the filter's "
               "ignore_req_list), e.g. GET,HEAD."),
    cfg.StrOpt("ignore_path_list", default="",
               help="(Glimpse) Request paths not audited, comma-separated (the filter's "
               "ignore_path_list)."),
    cfg.StrOpt("service_name", default="glance",
               help="(Glimpse) Name of the service in the events' target (the filter's "
               "service_name)."),
    cfg.BoolOpt("use_oslo_messaging", default=True,
                help="Send the audit events through oslo.messaging; false: write them to "
                "the log instead."),
    cfg.StrOpt("driver",
               help="Notification driver of the audit events; unset: the one of "
               "[oslo_messaging_notifications]."),
    cfg.ListOpt("topics",
                help="Topics of the audit events; unset: those of "
                "[oslo_messaging_notifications]."),
    cfg.StrOpt("transport_url", secret=True,
               help="Transport of the audit events; unset: the one of "
               "[oslo_messaging_notifications]."),
]


@functools.cache
def _oslo_messaging_opts() -> list[tuple[str | None, tuple[cfg.Opt, ...]]]:
    """oslo.messaging's options of the groups used here, listed once per process.

    list_opts() deep-copies all of them (tens of milliseconds); the copies are
    then shared by every ConfigOpts of the process, like Glimpse's own options
    (only set_default("control_exchange", CONTROL_EXCHANGE) changes one)."""
    from glimpse.notify.sender import without_green_dns

    with without_green_dns():  # oslo.messaging imports eventlet, unused here
        from oslo_messaging import opts as om_opts
    wanted = {None, NOTIFICATIONS_GROUP, RABBIT_GROUP}
    return [(group, tuple(opts)) for group, opts in om_opts.list_opts() if group in wanted]


def register_opts(conf: cfg.ConfigOpts) -> None:
    # Called again for each runtime and middleware built on one ConfigOpts: oslo.config
    # would compare every option with its registered copy each time.
    if vars(conf).get("_glimpse_notify_opts_registered"):
        return
    conf.register_opts(default_opts)
    conf.register_opts(legacy_opts)
    conf.register_opts(audit_opts, group=AUDIT_GROUP)
    for group, opts in _oslo_messaging_opts():
        conf.register_opts(list(opts), group=group)
    conf.set_default("control_exchange", CONTROL_EXCHANGE)
    vars(conf)["_glimpse_notify_opts_registered"] = True


def doc_groups() -> list[tuple[str, list[cfg.Opt]]]:
    """What docs/configuration.md lists (only the rabbit options worth reading)."""
    rabbit_doc = {"ssl", "ssl_version", "ssl_ca_file", "ssl_cert_file", "ssl_key_file",
                  "ssl_enforce_hostname_verification", "heartbeat_timeout_threshold",
                  "kombu_failover_strategy", "rabbit_retry_interval"}
    groups: list[tuple[str, list[cfg.Opt]]] = [("DEFAULT", default_opts + legacy_opts)]
    for group, opts in _oslo_messaging_opts():
        if group is None:
            groups[0][1].extend(o for o in opts
                                if o.name in ("transport_url", "control_exchange"))
        elif group == RABBIT_GROUP:
            groups.append((group, [o for o in opts if o.name in rabbit_doc]))
        else:
            groups.append((group, list(opts)))
    groups.append((AUDIT_GROUP, list(audit_opts)))
    return groups


# ---------------------------------------------------------------- reading them


def drivers(conf: cfg.ConfigOpts) -> list[str]:
    """The notification drivers in force ([] or ["noop"]: none)."""
    names = list(conf[NOTIFICATIONS_GROUP].driver)
    if not names and conf.notification_driver:
        LOG.warning("[DEFAULT] notification_driver is deprecated: use "
                    "[oslo_messaging_notifications] driver")
        names = list(conf.notification_driver)
    return [n for n in names if n != "noop"]


def transport_url(conf: cfg.ConfigOpts, override: str | None = None) -> str | None:
    """[oslo_messaging_notifications] transport_url, else [DEFAULT] transport_url
    (oslo.messaging's own fallback), else a URL made of the old rabbit_* options."""
    url = override or conf[NOTIFICATIONS_GROUP].transport_url or conf.transport_url
    hosts = list(conf.rabbit_hosts) or ([f"{conf.rabbit_host}:{conf.rabbit_port}"]
                                        if conf.rabbit_host else [])
    # oslo.messaging's default [DEFAULT] transport_url is "rabbit://": no host named.
    if (url and urlsplit(url).netloc) or not hosts:
        return url or None
    LOG.warning("The rabbit_host, rabbit_hosts, rabbit_port, rabbit_userid, rabbit_password "
                "and rabbit_virtual_host options are deprecated: set transport_url instead")
    user = quote(conf.rabbit_userid or "", safe="")
    password = quote(conf.rabbit_password or "", safe="")
    vhost = conf.rabbit_virtual_host or "/"
    vhost = "" if vhost == "/" else quote(vhost.lstrip("/"), safe="")
    members = ",".join(f"{user}:{password}@{h if ':' in h else f'{h}:{conf.rabbit_port}'}"
                       for h in hosts)
    return f"rabbit://{members}/{vhost}"


def audit_settings(conf: cfg.ConfigOpts) -> Any:
    return conf[AUDIT_GROUP]
