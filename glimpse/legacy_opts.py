"""Old glance-api.conf option names, still read, each with one deprecation warning.

An operator's oldest file (seed 004) says ``[DEFAULT] sql_connection`` and configures
keystonemiddleware with ``auth_host``/``auth_port``/``auth_protocol`` and
``admin_user``/``admin_password``/``admin_tenant_name``. Each is mapped onto today's
option when that one is not set, and a warning names the option to use instead.
"""

from __future__ import annotations

import logging

from oslo_config import cfg

LOG = logging.getLogger("glimpse.config")
KS_GROUP = "keystone_authtoken"

default_legacy_opts = [
    cfg.StrOpt("sql_connection", secret=True,
               help="Old name of [database] connection."),
]
keystone_legacy_opts = [
    cfg.StrOpt("auth_host",
               help="Old: host of Keystone; with auth_port and auth_protocol it makes "
               "auth_url."),
    cfg.PortOpt("auth_port", default=35357,
                help="Old: port of Keystone (see auth_host)."),
    cfg.StrOpt("auth_protocol", default="https", choices=["http", "https"],
               help="Old: scheme of Keystone (see auth_host)."),
    cfg.StrOpt("admin_tenant_name",
               help="Old name of project_name."),
    cfg.StrOpt("admin_user", help="Old name of username."),
    cfg.StrOpt("admin_password", secret=True,
               help="Old name of password."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    if "sql_connection" not in conf:
        conf.register_opts(default_legacy_opts)
        conf.register_opts(keystone_legacy_opts, group=KS_GROUP)


def _warn(warn: bool, old: str, new: str) -> None:
    if warn:
        LOG.warning("Option %s is deprecated: use %s instead (read for now).", old, new)


def apply(conf: cfg.ConfigOpts, warn: bool = True) -> None:
    """Map the old names onto today's options (set ones win); warn once per old name."""
    register_opts(conf)
    if conf.sql_connection:
        _warn(warn, "[DEFAULT] sql_connection", "[database] connection")
        if not conf.database.connection:
            conf.set_override("connection", conf.sql_connection, group="database")
    ks = conf[KS_GROUP]
    renamed = {"admin_user": "username", "admin_password": "password",
               "admin_tenant_name": "project_name"}
    legacy_set = ks.auth_host or any(ks[old] for old in renamed)
    if legacy_set:
        from glimpse.api import keystone  # its options are today's names

        keystone.register_opts(conf)
        for old, new in renamed.items():
            if ks[old]:
                _warn(warn, f"[{KS_GROUP}] {old}", f"[{KS_GROUP}] {new}")
                if not ks[new]:
                    conf.set_override(new, ks[old], group=KS_GROUP)
        if ks.auth_host:
            url = f"{ks.auth_protocol}://{ks.auth_host}:{ks.auth_port}/v3"
            _warn(warn, f"[{KS_GROUP}] auth_host/auth_port/auth_protocol",
                  f"[{KS_GROUP}] auth_url (here {url})")
            if not ks.auth_url:
                conf.set_override("auth_url", url, group=KS_GROUP)
            if not ks.www_authenticate_uri:
                conf.set_override("www_authenticate_uri", url, group=KS_GROUP)
    if conf.paste_deploy.flavor:
        _warn(warn, f"[paste_deploy] flavor = {conf.paste_deploy.flavor}",
              "[DEFAULT] auth_strategy = keystone" if conf.paste_deploy.flavor.startswith(
                  "keystone") else "[DEFAULT] auth_strategy")
