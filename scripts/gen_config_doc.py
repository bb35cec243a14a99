"""Regenerate the option tables in docs/configuration.md from the code.

    python scripts/gen_config_doc.py          rewrite the generated part of the file
    python scripts/gen_config_doc.py --check  exit 1 if the file is out of date

Options come from glimpse.config (every [DEFAULT], [image_format], [database],
[glance_store], [task], [paste_deploy] option and the operations groups of
glimpse.ops_opts), from every module that registers a group of its own (listed in
EXTRA_SOURCES; tests/test_config_doc.py fails when a module registers options and is
missing there), and from oslo.policy ([oslo_policy], with the defaults Glimpse sets).
The "Glance" column says whether glance-api.conf has an option of the same name;
options whose help text starts with "(Glimpse)" are Glimpse's own.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable
from pathlib import Path

from oslo_config import cfg

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED OPTIONS: scripts/gen_config_doc.py -->"
END = "<!-- END GENERATED OPTIONS -->"

# Modules that register options of their own: (module, what to read). What to read is
# either a function's name ("list_opts": it returns (group, opts) pairs) or "GROUP_ATTR:OPTS_ATTR".
EXTRA_SOURCES = [
    ("glimpse.api.keystone", "GROUP:opts"),
    ("glimpse.legacy_opts", "KS_GROUP:keystone_legacy_opts"),
    ("glimpse.legacy_opts", ":default_legacy_opts"),
    ("glimpse.domain.uri_filter", "list_opts"),
    ("glimpse.imports.plugins", "list_opts"),
    ("glimpse.services.metadefs", "LIMITS_GROUP:LIMIT_OPTS"),
    ("glimpse.stores.registry", "STORE_SECTION:DOC_OPTS"),
    ("glimpse.notify.options", "doc_groups"),
]
# The section of each named store: documented once under this placeholder name.
STORE_SECTION = "<store name>"

GLIMPSE_ONLY = "no (Glimpse only)"

# Where Glance has the name but the default or the meaning is not the same.
GLANCE_NOTES: dict[tuple[str, str], str] = {
    ("DEFAULT", "bind_host"): "yes; Glance's default is 0.0.0.0",
    ("DEFAULT", "workers"): "yes; Glance's default is the number of CPUs",
    ("DEFAULT", "node_staging_uri"): "yes; Glance's default is file:///tmp/staging/",
    ("DEFAULT", "delayed_delete"): "yes (Glance's scrubber options)",
    ("DEFAULT", "scrub_time"): "yes (Glance's scrubber options)",
    ("DEFAULT", "transport_url"): "yes (oslo.messaging)",
    ("DEFAULT", "control_exchange"): "yes (oslo.messaging); Glimpse's default is glance",
    ("DEFAULT", "notification_driver"): "yes (before Liberty; read with a warning)",
    ("DEFAULT", "rabbit_host"): "yes (before Liberty; read with a warning)",
    ("DEFAULT", "rabbit_hosts"): "yes (before Liberty; read with a warning)",
    ("DEFAULT", "rabbit_port"): "yes (before Liberty; read with a warning)",
    ("DEFAULT", "rabbit_userid"): "yes (before Liberty; read with a warning)",
    ("DEFAULT", "rabbit_password"): "yes (before Liberty; read with a warning)",
    ("DEFAULT", "rabbit_virtual_host"): "yes (before Liberty; read with a warning)",
    ("database", "connection"): "yes (oslo.db)",
    ("database", "max_pool_size"): "yes (oslo.db, whose default is 5)",
    ("database", "max_overflow"): "yes (oslo.db, whose default is 50)",
    ("glance_store", "stores"): "yes (glance_store)",
    ("glance_store", "default_store"): "yes (glance_store)",
    ("glance_store", "default_backend"): "yes (glance_store)",
    ("glance_store", "filesystem_store_datadir"):
        "yes (glance_store); Glance's default is /var/lib/glance/images",
    ("paste_deploy", "flavor"):
        "yes; only a keystone* flavor has an effect: it selects auth_strategy=keystone",
    ("paste_deploy", "config_file"): "yes; accepted and ignored (no paste pipeline)",
    ("keystone_authtoken", "memcached_servers"):
        "yes (keystonemiddleware); the entries are Glimpse's own format",
    ("keystone_authtoken", "auth_type"):
        "yes (keystoneauth1); only password is supported",
    ("oslo_policy", "enforce_new_defaults"):
        "yes (oslo.policy); has no effect in Glimpse: the deprecated pre-RBAC rules it "
        "would OR in are not registered (see decisions/0001)",
}
# Meanings for options registered without help text (the code's help wins once it has one).
FALLBACK_HELP: dict[tuple[str, str], str] = {
    ("DEFAULT", "property_protection_rule_format"):
        "How property_protection_file names who may act on a property: 'roles' (role "
        "names) or 'policies' (policy rule names).",
    ("keystone_authtoken", "user_domain_name"): "Domain name of the service user.",
    ("keystone_authtoken", "project_domain_name"): "Domain name of the service user's project.",
    ("keystone_authtoken", "user_domain_id"): "Domain id of the service user.",
    ("keystone_authtoken", "project_domain_id"): "Domain id of the service user's project.",
    ("keystone_authtoken", "region_name"): "Region of the identity endpoint in the catalog.",
    ("keystone_authtoken", "interface"):
        "Catalog interface (public, internal, admin) used to reach Keystone.",
    ("keystone_authtoken", "http_connect_timeout"): "Seconds to wait for Keystone to answer.",
    (STORE_SECTION, "filesystem_store_datadir"):
        "Directory of this file store (a section per name in enabled_backends, and "
        "[os_glance_staging_store], [os_glance_tasks_store]).",
    (STORE_SECTION, "store_description"): "Description shown in /v2/info/stores.",
    (STORE_SECTION, "weight"): "Store weight shown in /v2/info/stores/detail.",
}
SOURCE_NOTES = {
    "keystone_authtoken": "yes (keystonemiddleware)",
    "oslo_policy": "yes (oslo.policy)",
    "oslo_messaging_notifications": "yes (oslo.messaging)",
    "oslo_messaging_rabbit": "yes (oslo.messaging)",
    "audit_middleware_notifications": "yes (keystonemiddleware.audit)",
}


def _extra(module_name: str, what: str) -> list[tuple[str, list[cfg.Opt]]]:
    module = importlib.import_module(module_name)
    if ":" not in what:  # a function returning (group, opts) pairs
        return [(group or "DEFAULT", list(opts)) for group, opts in getattr(module, what)()]
    group_attr, _, opts_attr = what.partition(":")
    if group_attr == "STORE_SECTION":
        group = STORE_SECTION
    else:
        group = getattr(module, group_attr) if group_attr else "DEFAULT"
    return [(group, list(getattr(module, opts_attr)))]


def _groups() -> list[tuple[str, list[cfg.Opt]]]:
    from oslo_policy import opts as policy_opts

    from glimpse import config

    found = [(group or "DEFAULT", list(opts)) for group, opts in config.list_opts()]
    for module_name, what in EXTRA_SOURCES:
        found.extend(_extra(module_name, what))
    for group, opts in policy_opts.list_opts():
        found.append((group, list(opts)))
    merged: dict[str, list[cfg.Opt]] = {}
    for group, opts in found:  # one table per section, options in definition order
        names = {o.name for o in merged.setdefault(group, [])}
        merged[group].extend(o for o in opts if o.name not in names)
    return list(merged.items())


def _effective_defaults(groups: Iterable[tuple[str, list[cfg.Opt]]]) -> cfg.ConfigOpts:
    """A ConfigOpts with every option registered and no file read: its values are
    the defaults in force, including those Glimpse sets at run time (oslo_policy)."""
    from glimpse import policy as policy_mod

    conf = cfg.ConfigOpts()
    for group, opts in groups:
        if group == "oslo_policy":
            continue
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    policy_mod.register_opts(conf)
    conf(args=[], default_config_files=[], default_config_dirs=[])
    return conf


def _type(opt: cfg.Opt) -> str:
    name = type(opt).__name__.removesuffix("Opt").lower() or "str"
    extra = []
    choices = getattr(opt.type, "choices", None)
    if choices:
        extra.append("one of " + ", ".join(str(c) for c in choices))
    for bound in ("min", "max"):
        value = getattr(opt.type, bound, None)
        if value is not None:
            extra.append(f"{bound} {value}")
    return name + (f" ({'; '.join(extra)})" if extra else "")


def _default(value: object, opt: cfg.Opt) -> str:
    if value is None or value == [] or value == {}:
        return "(unset)"
    if opt.secret:
        return "(secret)"
    if isinstance(value, list):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = ",".join(f"{k}:{v}" for k, v in value.items())
    else:
        text = str(value)
    return f"`{text}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _glance(group: str, opt: cfg.Opt) -> str:
    help_text = (opt.help or "").strip()
    if help_text.startswith("(Glimpse)"):
        return GLIMPSE_ONLY
    if (group, opt.name) in GLANCE_NOTES:
        return GLANCE_NOTES[(group, opt.name)]
    return SOURCE_NOTES.get(group, "yes")


def render() -> str:
    groups = _groups()
    conf = _effective_defaults(groups)
    out = [BEGIN, ""]
    for group, opts in groups:
        section = conf if group == "DEFAULT" else conf[group]
        out += [f"### [{group}]", "",
                "| option | type | default | meaning | in Glance |",
                "|---|---|---|---|---|"]
        for opt in opts:
            meaning = ((opt.help or "").strip().removeprefix("(Glimpse)").strip()
                       or FALLBACK_HELP.get((group, opt.name), "-"))
            if opt.deprecated_for_removal:
                meaning = "Deprecated. " + meaning
            out.append("| " + " | ".join([
                f"`{opt.name}`", _type(opt), _default(section[opt.name], opt),
                _cell(meaning), _glance(group, opt),
            ]) + " |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        print(f"{DOC}: markers {BEGIN!r} ... {END!r} not found", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + render() + tail
    if args.check:
        if new != text:
            print(f"{DOC.relative_to(ROOT)} is out of date", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new)
        print(f"rewrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
