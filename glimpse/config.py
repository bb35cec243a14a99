"""Every configuration option Glimpse reads.

Option names and sections follow glance-api.conf wherever Glance has the
option, so an operator's existing file keeps working. Options Glance does not
have are marked "(Glimpse)" in their help text.

A ConfigOpts object is built per process (or per test) by ``load_config``;
nothing reads a global configuration object.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from oslo_config import cfg, types

from glimpse.stores.object_opts import S3_OPTS, SWIFT_OPTS, legacy_spelling


class BracketedList(types.List):
    """A list option read with or without Glance's surrounding brackets.

    Glance declares several list options with ``bounds=True``, so its files say
    ``enabled_import_methods = [glance-direct,web-download]``; ``a,b`` works too.
    """

    def __call__(self, value: Any) -> list[Any]:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                value = text[1:-1]
        return super().__call__(value)


def list_opt(name: str, item_type: types.ConfigType | None = None,
             default: list[Any] | None = None, help: str = "") -> cfg.Opt:
    """A ListOpt that reads Glance's ``[a, b]`` as well as ``a, b``."""
    item_type = item_type or types.String(quotes=True)
    opt = cfg.ListOpt(name, item_type=item_type, default=default, help=help)
    opt.type = BracketedList(item_type=item_type)
    return opt


AUTH_STRATEGIES = ("noauth", "trusted-headers", "keystone")

DEFAULT_DISK_FORMATS = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
]
DEFAULT_CONTAINER_FORMATS = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]

default_opts = [
    cfg.StrOpt("bind_host", default="127.0.0.1", help="Address to listen on."),
    cfg.PortOpt("bind_port", default=9292, help="Port to listen on."),
    cfg.IntOpt("workers", default=1, min=1, help="Number of API worker processes."),
    cfg.StrOpt(
        "data_dir",
        default="./data",
        help="(Glimpse) Directory holding the embedded SQLite database, the default "
        "file store and the staging area, when those are not configured separately.",
    ),
    cfg.StrOpt(
        "auth_strategy",
        default="noauth",
        choices=AUTH_STRATEGIES,
        help="(Glimpse) How requests are authenticated. 'noauth' (embedded default, never "
        "expose it to a network): requests without identity headers act as an admin with "
        "no project. 'trusted-headers': identity is read from the X-Project-Id, X-User-Id "
        "and X-Roles headers set by an authenticating proxy. 'keystone': tokens are "
        "validated against Keystone.",
    ),
    cfg.StrOpt("public_endpoint", help="Public URL to use in versions responses."),
    cfg.IntOpt("api_limit_max", default=1000, min=1,
               help="Maximum number of items returned by one list request."),
    cfg.IntOpt("limit_param_default", default=25, min=1,
               help="Default page size when a list request gives no limit."),
    cfg.BoolOpt("show_image_direct_url", default=False,
                help="Show the direct URL of an image's data in its record."),
    cfg.BoolOpt("show_multiple_locations", default=False,
                help="Show all locations of an image's data in its record."),
    cfg.IntOpt("image_member_quota", default=128,
               help="Maximum members of one image; negative means unlimited."),
    cfg.IntOpt("image_property_quota", default=128,
               help="Maximum additional properties of one image; negative means unlimited."),
    cfg.IntOpt("image_tag_quota", default=128,
               help="Maximum tags of one image; negative means unlimited."),
    cfg.IntOpt("image_location_quota", default=10,
               help="Maximum locations of one image; negative means unlimited."),
    cfg.StrOpt("location_strategy", default="location_order",
               choices=("location_order", "store_type"),
               help="Order of an image's locations, in its record and when its data is "
               "read: 'location_order' (as added; with enabled_backends, by the stores' "
               "weight, highest first) or 'store_type' (by "
               "[store_type_location_strategy] store_type_preference)."),
    cfg.BoolOpt("do_secure_hash", default=True,
                help="Compute checksum and os_hash_value of data added with the locations "
                "API (POST /v2/images/{id}/locations); when false the validation_data "
                "given is copied as it is."),
    cfg.IntOpt("http_retries", default=3, min=0,
               help="Times the locations API retries reading a location's data to hash it."),
    cfg.StrOpt("user_storage_quota", default="0",
               help="Maximum bytes of image data per project, optionally with a unit "
               "(B, KB, MB, GB, TB; 1024-based). 0 means unlimited."),
    cfg.IntOpt("image_size_cap", default=1099511627776, min=1, max=9223372036854775807,
               help="Maximum size of one image in bytes."),
    cfg.StrOpt("hashing_algorithm", default="sha512",
               help="hashlib algorithm used for os_hash_value."),
    cfg.BoolOpt("delayed_delete", default=False,
                help="Keep deleted images' data (status pending_delete) until "
                "'glimpse scrub' removes it."),
    cfg.IntOpt("scrub_time", default=0, min=0,
               help="Seconds to keep pending_delete data before the scrubber removes it."),
    cfg.StrOpt("worker_self_reference_url",
               help="URL other workers use to reach this worker (distributed import)."),
    list_opt("enabled_import_methods",
                default=["glance-direct", "web-download", "copy-image"],
                help="Import methods offered by /v2/info/import."),
    cfg.StrOpt("node_staging_uri",
               help="file:// URI of this worker's staging directory. Defaults to "
               "<data_dir>/staging."),
    cfg.DictOpt("enabled_backends",
                help="Named stores as name:type pairs, e.g. 'fast:file,cheap:file'."),
    cfg.IntOpt("import_workers", default=4, min=1,
               help="(Glimpse) Imports one API worker runs at the same time; more wait."),
    cfg.IntOpt("import_lock_timeout", default=3600, min=1,
               help="(Glimpse) Seconds after which the import lock of a task that stopped "
               "updating may be taken over (Glance: 60 minutes, doubled for pending tasks)."),
    cfg.FloatOpt("lease_period", default=30.0, min=0.5,
                 help="(Glimpse) Seconds an upload, stage, import or data removal stays "
                 "owned by its worker without being renewed (the owner renews it every "
                 "third of this). After that any node reverts the image to a status a client "
                 "can act on and removes the partial data. See docs/operations.md."),
    cfg.FloatOpt("lease_sweep_interval", default=10.0, min=0.1,
                 help="(Glimpse) Seconds between two looks of each API worker for expired "
                 "leases (also done once at start-up)."),
    cfg.IntOpt("orphan_sweep_interval", default=3600, min=0,
               help="(Glimpse) Seconds between two sweeps of every store and the staging "
               "area for data nothing references (also done once at start-up, in the "
               "background); 0 disables the periodic sweep ('glimpse doctor' still works)."),
    cfg.StrOpt("property_protection_file",
               help="INI file saying who may create, read, update and delete which "
               "additional image properties (Glance's format; see "
               "docs/property-protections.md). Unset: no property is protected. A file "
               "that is missing or invalid stops the service from starting."),
    cfg.StrOpt("property_protection_rule_format", default="roles",
               choices=("roles", "policies"),
               help="How property_protection_file names who may act on a property: "
               "'roles' (comma-separated role names) or 'policies' (one policy rule "
               "name per operation)."),
]

image_format_opts = [
    list_opt("disk_formats", default=DEFAULT_DISK_FORMATS,
                help="Disk formats images may have."),
    list_opt("container_formats", default=DEFAULT_CONTAINER_FORMATS,
                help="Container formats images may have."),
    cfg.BoolOpt("require_image_format_match", default=True,
                help="Refuse uploaded data whose content is not the image's disk_format "
                "(checked for formats that can be inspected)."),
]

database_opts = [
    cfg.StrOpt(
        "connection",
        secret=True,
        help="SQLAlchemy URL of the database. Defaults to SQLite at <data_dir>/glimpse.sqlite. "
        "mysql:// and mysql+pymysql:// use PyMySQL, postgresql:// uses psycopg 3.",
    ),
    cfg.IntOpt("max_pool_size", default=10, min=1,
               help="Connections each worker process keeps open per pool (server databases; "
               "a worker has two pools, one for transactions and one for autocommit reads). "
               "Size it to the requests one worker serves at once: a request beyond it "
               "opens and closes an overflow connection."),
    cfg.IntOpt("max_overflow", default=20, min=0,
               help="Connections a pool may open beyond max_pool_size under a burst; they "
               "are closed when returned."),
    cfg.IntOpt("pool_timeout", default=30, min=1,
               help="Seconds a request waits for a free connection before it fails."),
    cfg.IntOpt("connection_recycle_time", default=3600, min=-1,
               deprecated_opts=[cfg.DeprecatedOpt("idle_timeout", group="database")],
               help="Seconds after which a connection is replaced on its next use (-1: "
               "never). Keep it below the server's idle timeout (MariaDB wait_timeout)."),
]

glance_store_opts = [
    list_opt("stores", default=["file", "http"], help="Store types enabled (single store)."),
    cfg.StrOpt("default_store", default="file", deprecated_group="DEFAULT",
               help="Store type used for new data (single store). The old spelling in "
               "[DEFAULT] is read with a deprecation warning."),
    cfg.StrOpt("default_backend", help="Name of the default store when enabled_backends is set."),
    cfg.StrOpt("filesystem_store_datadir", deprecated_group="DEFAULT",
               help="Directory of the file store. Defaults to <data_dir>/images."),
]

# The oldest single-store spelling kept these in [DEFAULT] (read with a warning).
glance_store_opts[0].deprecated_opts = [cfg.DeprecatedOpt("stores", group="DEFAULT")]

task_opts = [
    cfg.IntOpt("task_time_to_live", default=48, min=0,
               help="Hours a finished task stays visible before it is removed."),
    cfg.StrOpt("work_dir",
               help="Directory for data of tasks in progress (single store). Defaults to "
               "<data_dir>/tasks_work_dir."),
    cfg.StrOpt("task_executor", default="taskflow",
               help="Accepted for compatibility with Glance; Glimpse runs tasks in threads."),
]

store_type_location_strategy_opts = [
    list_opt("store_type_preference", default=[],
             help="Store types in the order their locations are preferred, e.g. "
             "'rbd,swift,file' (location_strategy = store_type); types not listed come "
             "last."),
]

paste_deploy_opts = [
    cfg.StrOpt("flavor", help="Glance's pipeline flavor; 'keystone', 'keystone+caching' "
               "and 'keystone+cachemanagement' select auth_strategy=keystone (the cache "
               "itself is on when image_cache_dir is set)."),
    cfg.StrOpt("config_file", help="Accepted and ignored: Glimpse has no paste pipeline."),
]

OPT_GROUPS: list[tuple[str | None, list[cfg.Opt]]] = [
    (None, default_opts),
    ("image_format", image_format_opts),
    ("database", database_opts),
    ("glance_store", glance_store_opts + legacy_spelling(SWIFT_OPTS + S3_OPTS)),
    ("task", task_opts),
    ("store_type_location_strategy", store_type_location_strategy_opts),
    ("paste_deploy", paste_deploy_opts),
]


# --- operations options (issue 18): health, CORS, proxies, TLS, logging, shutdown ---
def _ops_groups() -> list[tuple[str | None, list[cfg.Opt]]]:
    from glimpse import ops_opts  # it uses list_opt from this module

    return ops_opts.OPT_GROUPS


# --- image cache options (issue 16)
def _cache_groups() -> list[tuple[str | None, list[cfg.Opt]]]:
    from glimpse.cache import opts as cache_opts

    return cache_opts.OPT_GROUPS


# --- image signature verification (issue 19): castellan's [key_manager], [barbican] ---
def _signature_groups() -> list[tuple[str | None, list[cfg.Opt]]]:
    from glimpse import signature_opts

    return signature_opts.opt_groups()


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Entry point for oslo-config-generator."""
    groups = OPT_GROUPS + _ops_groups() + _cache_groups() + _signature_groups()
    return [(group, list(opts)) for group, opts in groups]


def new_conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    for group, opts in OPT_GROUPS + _ops_groups() + _cache_groups() + _signature_groups():
        conf.register_opts(opts, group=group)
    return conf


def load_config(
    config_files: Sequence[str] = (),
    overrides: dict[str, object] | None = None,
    args: Iterable[str] = (),
    legacy_warnings: bool = False,
) -> cfg.ConfigOpts:
    """Build the configuration from glance-api.conf-style files.

    ``overrides`` maps ``"option"`` or ``"group.option"`` to a value and wins
    over the files (used for command-line flags and tests). ``legacy_warnings``: log
    one deprecation warning per old option name found (the glimpse command does).
    """
    conf = new_conf()
    files = list(config_files)
    # Glance reads glance-image-import.conf from beside glance-api.conf into
    # the same namespace; do the same so import options can live in either.
    for path in list(files):
        sibling = os.path.join(os.path.dirname(os.path.abspath(path)), "glance-image-import.conf")
        if os.path.exists(sibling) and sibling not in files:
            files.append(sibling)
    conf(args=list(args), project="glimpse", default_config_files=files,
         default_config_dirs=[], validate_default_values=True)
    for key, value in (overrides or {}).items():
        group, _, name = key.rpartition(".")
        conf.set_override(name, value, group=group or None)
    # --- old option names (issue 18): sql_connection, auth_host, admin_user ...
    from glimpse import legacy_opts

    legacy_opts.apply(conf, warn=legacy_warnings)
    return conf


def data_path(conf: cfg.ConfigOpts, *parts: str) -> str:
    return os.path.abspath(os.path.join(conf.data_dir, *parts))


def database_url(conf: cfg.ConfigOpts) -> str:
    url = conf.database.connection
    if not url:
        return "sqlite:///" + data_path(conf, "glimpse.sqlite")
    # Glance deployments commonly say mysql:// or mysql+pymysql://, postgresql://.
    if url.startswith("mysql://"):
        url = "mysql+pymysql://" + url[len("mysql://"):]
    elif url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def effective_auth_strategy(conf: cfg.ConfigOpts) -> str:
    flavor = (conf.paste_deploy.flavor or "").strip()
    if flavor.startswith("keystone"):
        return "keystone"
    return conf.auth_strategy


_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_size(value: str) -> int:
    """Parse '10GB' style sizes (1024-based, as Glance's user_storage_quota)."""
    text = str(value).strip().upper()
    for unit in ("TB", "GB", "MB", "KB", "B"):
        if text.endswith(unit):
            return int(float(text[: -len(unit)].strip()) * _UNITS[unit])
    return int(text)


def storage_quota(conf: cfg.ConfigOpts) -> int:
    return parse_size(conf.user_storage_quota)


__all__ = ["load_config", "list_opts", "list_opt"]
