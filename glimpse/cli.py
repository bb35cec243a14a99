"""glimpse: an OpenStack Image service (Images API v2), drop-in for Glance.

Every command reads glance-api.conf-style files given with --config-file; without
one it runs the embedded default (SQLite and a file store under ./data). Add --debug
to any command for DEBUG logging and full tracebacks of failures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from glimpse import config


def _conf(args: argparse.Namespace):  # noqa: ANN202
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "host", None):
        overrides["bind_host"] = args.host
    if getattr(args, "port", None):
        overrides["bind_port"] = args.port
    if getattr(args, "workers", None):
        overrides["workers"] = args.workers
    from glimpse import logs

    conf = config.load_config(args.config_file or [], overrides)
    logs.setup(conf, debug=True if getattr(args, "debug", False) else None)
    # again, now that logging is set up: the warnings go where the operator looks
    config.load_config(args.config_file or [], overrides, legacy_warnings=True)
    validate(conf)
    return conf


def validate(conf) -> None:  # noqa: ANN001
    """Read every option once, so a bad value stops the start now, naming the option,
    instead of failing the first request that needs it."""
    from oslo_config import cfg

    for name in list(conf):
        value = conf[name]
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            for opt_name in list(value):
                value[opt_name]


class StartupError(Exception):
    """A failure an operator fixes: one line for the cause, one for the fix."""

    def __init__(self, cause: str, fix: str = ""):
        super().__init__(cause)
        self.cause, self.fix = cause, fix


def _tls_options(conf) -> dict[str, object]:  # noqa: ANN001
    """uvicorn's TLS arguments from [DEFAULT] cert_file, key_file, ca_file."""
    import ssl

    if not (conf.cert_file or conf.key_file or conf.ca_file):
        return {}
    if not (conf.cert_file and conf.key_file):
        raise StartupError("cert_file and key_file must be set together to serve HTTPS",
                           "set both in [DEFAULT], or neither for plain HTTP")
    for name in ("cert_file", "key_file", "ca_file"):
        path = conf[name]
        if path and not os.access(path, os.R_OK):
            raise StartupError(f"{name} {path} cannot be read",
                               "check the path and the file's permissions")
    try:  # a bad certificate or key: say so now, not in every worker
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(conf.cert_file, conf.key_file)
        if conf.ca_file:
            context.load_verify_locations(conf.ca_file)
    except ssl.SSLError as exc:
        raise StartupError(f"the TLS files are not usable ({exc.reason or exc})",
                           "cert_file and key_file must be a PEM certificate and its key, "
                           "ca_file PEM CA certificates") from exc
    tls: dict[str, object] = {"ssl_certfile": conf.cert_file, "ssl_keyfile": conf.key_file}
    if conf.ca_file:
        tls["ssl_ca_certs"] = conf.ca_file
        tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return tls


#: ``glimpse serve --http-server`` when not given
#: (docs/decisions/0012-http-server-quiet-measurement.md)
DEFAULT_HTTP_SERVER = "uvicorn"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from glimpse.db import engine as db_engine

    conf = _conf(args)
    tls = _tls_options(conf)
    granian = getattr(args, "http_server", DEFAULT_HTTP_SERVER) == "granian"
    if conf.metrics.enabled:
        # Granian always serves from worker processes, uvicorn only with workers > 1.
        _start_metrics(conf, separate_workers=granian or conf.workers > 1)
    _preflight(conf)
    # Migrate once, in the parent, before any worker starts.
    db = db_engine.from_conf(conf)
    db_engine.upgrade_if_needed(db)
    db.dispose()
    os.environ["GLIMPSE_CONFIG_FILES"] = os.pathsep.join(
        os.path.abspath(p) for p in (args.config_file or []))
    overrides: dict[str, object] = {"data_dir": conf.data_dir}
    if args.debug:
        overrides["debug"] = True
    os.environ["GLIMPSE_OVERRIDES"] = repr(overrides)
    # Read by the HTTP protocol of every worker (glimpse.api.http_protocol).
    from glimpse.api import http_protocol

    os.environ[http_protocol.TIMEOUT_ENV] = str(conf.client_socket_timeout)
    scheme = "https" if tls else "http"
    logging.getLogger("glimpse").info("Serving on %s://%s:%s with %d worker(s)", scheme,
                                      conf.bind_host, conf.bind_port, conf.workers)
    if granian:
        return _serve_granian(conf, args)
    uvicorn.run(
        "glimpse.asgi:app" if conf.workers > 1 else _app_factory(conf),
        host=conf.bind_host,
        port=conf.bind_port,
        workers=conf.workers if conf.workers > 1 else None,
        # Logging is ours (glimpse.logs, in every worker too): one format for all lines,
        # and one line per request from the API instead of uvicorn's access log.
        log_config=None,
        log_level=(args.log_level or ("debug" if conf.debug or args.debug else "info")),
        access_log=args.access_log,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=conf.graceful_shutdown_timeout or None,
        h11_max_incomplete_event_size=1024 * 1024,
        http=http_protocol.HeaderTimeoutProtocol,
        **tls,
    )
    return 0


# Granian's own lines go through Glimpse's handlers and format (glimpse.logs).
_GRANIAN_LOGGING = {"loggers": {
    "_granian": {"handlers": [], "propagate": True},
    "granian.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
}}


def _serve_granian(conf, args: argparse.Namespace) -> int:  # noqa: ANN001
    """The application under Granian (``--http-server granian``), whose ASGI pathsend
    sends file-store downloads and cache hits from the file itself
    (docs/decisions/0012-http-server-quiet-measurement.md)."""
    from pathlib import Path

    try:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
        from granian.http import HTTP1Settings
    except ImportError as exc:
        raise StartupError("Granian is not installed (a dependency of Glimpse)",
                           "reinstall Glimpse (pip install glimpse), or serve with "
                           "--http-server uvicorn") from exc
    tls: dict[str, object] = {}
    if conf.cert_file:
        tls = {"ssl_cert": Path(conf.cert_file), "ssl_key": Path(conf.key_file),
               "ssl_protocol_min": SSLProtocols.tls12}
        if conf.ca_file:
            tls.update(ssl_ca=Path(conf.ca_file), ssl_client_verify=True)
    level = args.log_level or ("debug" if conf.debug or args.debug else "info")
    from glimpse import crashpoints
    from glimpse.api import granian_worker, http_protocol

    # The limits glimpse.api.http_protocol gives uvicorn, as Granian's own settings: the
    # request head must arrive within client_socket_timeout (0: no limit; a day here),
    # and may be up to MAX_HEADER_BYTES (past Granian's buffer it answers 431).
    http1 = HTTP1Settings(
        header_read_timeout=int((conf.client_socket_timeout or 86400) * 1000),
        max_buffer_size=http_protocol.MAX_HEADER_BYTES + 64 * 1024)

    # Read by every worker: the end of the grace period is the application's own.
    os.environ[granian_worker.GRACE_ENV] = str(conf.graceful_shutdown_timeout)
    if conf.workers == 1 and os.environ.get(crashpoints.ENV):
        # the crash-recovery tests: a crash point takes the node (this process) down too
        os.environ[crashpoints.PARENT_ENV] = str(os.getpid())
    Granian(
        "glimpse.asgi_granian:app",
        address=conf.bind_host,
        port=conf.bind_port,
        interface=Interfaces.ASGI,
        workers=conf.workers,
        loop=Loops.uvloop,
        websockets=False,
        http=HTTPModes.http1,  # as uvicorn (no h2c, no HTTP/2 over TLS)
        http1_settings=http1,
        log_enabled=True,
        log_level="info" if level == "trace" else level,
        log_dictconfig=_GRANIAN_LOGGING if not args.access_log else {"loggers": {
            "_granian": _GRANIAN_LOGGING["loggers"]["_granian"],
            "granian.access": {"handlers": [], "propagate": True}}},
        log_access=bool(args.access_log),
        # After the grace period the lifespan shutdown (glimpse.api.app) still needs
        # time to roll back what was cut short.
        workers_kill_timeout=(conf.graceful_shutdown_timeout or 60) + 30,
        respawn_failed_workers=True,  # as uvicorn's supervisor: a worker that dies is replaced
        **tls,
    ).serve()
    return 0


def _start_metrics(conf, separate_workers: bool) -> None:  # noqa: ANN001
    """Multi-process values for worker processes; the separate port, if one is set."""
    if separate_workers:
        # Before anything imports prometheus_client, glimpse.metrics included: it picks
        # file-backed values at import, and Granian's workers are forked from here
        # (the variable is glimpse.metrics.MULTIPROC_ENV).
        directory = config.data_path(conf, "metrics")
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if conf.metrics.bind_port:
        from prometheus_client import start_http_server

        from glimpse import metrics
        from glimpse.db import engine as db_engine

        start_http_server(conf.metrics.bind_port, addr=conf.metrics.bind_host,
                          registry=metrics.registry(db_engine.from_conf(conf)))
        logging.getLogger("glimpse").info("Metrics on http://%s:%s/metrics",
                                          conf.metrics.bind_host, conf.metrics.bind_port)


def _preflight(conf) -> None:  # noqa: ANN001
    """What each worker reads at start (policy, property protections, stores), read
    once here, so a bad file fails in the parent with one line, not in every worker."""
    from glimpse import policy as policy_mod
    from glimpse.services import runtime
    from glimpse.stores import registry

    try:
        policy = policy_mod.Policy(conf)  # reads the policy file, if there is one
        policy.check_is_admin(_probe_context())
    except ValueError as exc:
        name = conf.oslo_policy.policy_file
        path = conf.find_file(name) or name
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StartupError(f"the policy file {path} is not valid YAML or JSON ({first})",
                           "fix the file named by [oslo_policy] policy_file") from exc
    runtime.load_protections(conf, policy)
    registry.from_conf(conf)


def _probe_context():  # noqa: ANN202
    from glimpse.context import RequestContext

    return RequestContext(roles=("reader",))


def _app_factory(conf):  # noqa: ANN001, ANN202
    from glimpse.api.app import create_app, freeze_startup_objects

    app = create_app(conf)
    freeze_startup_objects()
    return app


def _db(args: argparse.Namespace) -> int:
    from glimpse.db import engine as db_engine

    conf = _conf(args)
    db = db_engine.from_conf(conf)
    try:
        if args.db_command == "sync":
            db_engine.upgrade(db)
            print(db_engine.current_revision(db))
        elif args.db_command == "check":
            current, head = db_engine.current_revision(db), db_engine.head_revision()
            if current == head:
                print(f"the schema is current ({current})")
                return 0
            if current is not None and current not in db_engine.known_revisions():
                print(f"the schema is at {current}, newer than this release ({head}): "
                      "this node can serve during a rolling upgrade; upgrade it")
                return 4
            print(f"the schema is at {current or 'none (empty database)'}, this release "
                  f"needs {head}: run `glimpse db sync`")
            return 3
        else:
            print(db_engine.current_revision(db) or "none")
    finally:
        db.dispose()
    return 0


DEFAULT_METADEFS_DIR = "/etc/glance/metadefs"


def _metadefs(args: argparse.Namespace) -> int:
    from glimpse.errors import BadRequest
    from glimpse.services import metadefs, runtime

    rt = runtime.build(_conf(args), migrate=True)
    try:
        if args.db_command == "load-metadefs":
            path = args.path or DEFAULT_METADEFS_DIR
            files = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.endswith(".json"))
            try:
                report = metadefs.load_definitions(
                    rt, files, merge=args.merge, prefer_new=args.prefer_new,
                    overwrite=args.overwrite)
            except BadRequest as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            for name in report.skipped:
                print(f"Skipping namespace {name}: it already exists (use --merge).")
            print(f"loaded {len(report.loaded)}, merged {len(report.merged)}, "
                  f"skipped {len(report.skipped)} namespaces")
        elif args.db_command == "export-metadefs":
            os.makedirs(args.path, exist_ok=True)
            docs = metadefs.export_definitions(rt)
            for doc in docs:
                with open(os.path.join(args.path, metadefs.file_name(doc["namespace"])), "w",
                          encoding="utf-8") as f:
                    f.write(metadefs.dumps(doc))
            print(f"exported {len(docs)} namespaces to {args.path}")
        else:
            print(f"unloaded {metadefs.unload_definitions(rt)} namespaces")
    finally:
        rt.close()
    return 0


def _scrub(args: argparse.Namespace) -> int:
    from glimpse.services import runtime, scrub

    rt = runtime.build(_conf(args))
    try:
        report = scrub.scrub(rt, ignore_scrub_time=args.now)
    finally:
        rt.close()
    print(f"scrubbed {report.images} images, {report.locations} locations, "
          f"{report.errors} errors")
    return 1 if report.errors else 0


def _doctor(args: argparse.Namespace) -> int:
    import json

    from glimpse.services import recovery, runtime

    rt = runtime.build(_conf(args), recover=False)
    try:
        report = recovery.doctor(rt, fix=args.fix)
    finally:
        rt.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        _print_report(report, args.fix)
    return 1 if report.found else 0


def _print_report(report, fixed: bool) -> None:  # noqa: ANN001
    sections = (
        ("expired leases (operations whose worker died)", report.expired_leases,
         "{operation} of image {image_id} by {owner} on {host}"),
        ("images in a transient status with no live owner", report.stuck_images,
         "{image_id} ({status})"),
        ("orphaned data", report.orphaned_data, "{store}: {url} ({reason}, {size} bytes)"),
        ("locations whose data is missing", report.missing_data, "{image_id}: {url} ({reason})"),
    )
    for title, items, line in sections:
        print(f"{title}: {len(items)}")
        for item in items:
            print("  " + line.format(**item))
    if fixed:
        print("fixed: " + ", ".join(f"{k} {v}" for k, v in report.fixed.items()))
    elif report.found:
        print("run 'glimpse doctor --fix' to repair what can be repaired "
              "(missing data is only reported)")


def _policy(args: argparse.Namespace) -> int:
    from oslo_policy import generator

    generator.generate_sample(args=["--namespace", "glimpse"]
                              + (["--output-file", args.output] if args.output else []))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-file", action="append", metavar="PATH",
                        help="glance-api.conf-style file; repeatable, later files win "
                        "(a glance-image-import.conf beside it is read too)")
    common.add_argument("--data-dir", metavar="DIR",
                        help="[DEFAULT] data_dir: the embedded SQLite database, file store "
                        "and staging area (default ./data)")
    common.add_argument("--debug", action="store_true",
                        help="log at DEBUG level and show the full traceback of a failure")
    parser = argparse.ArgumentParser(prog="glimpse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve", parents=[common], help="run the API server",
        description="Run the Images API server. The schema is migrated first. TLS, "
        "workers, logging and the listen address come from the configuration file; "
        "these flags override it.")
    serve.add_argument("--host", help="[DEFAULT] bind_host: address to listen on")
    serve.add_argument("--port", type=int, help="[DEFAULT] bind_port: port to listen on")
    serve.add_argument("--workers", type=int,
                       help="[DEFAULT] workers: number of worker processes")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info",
                                               "debug", "trace"],
                       help="level of the HTTP server's own lines (default info, debug "
                       "with --debug)")
    serve.add_argument("--http-server", choices=["uvicorn", "granian"],
                       default=DEFAULT_HTTP_SERVER,
                       help=f"the HTTP server (default {DEFAULT_HTTP_SERVER}; "
                       "docs/decisions/0012-http-server-quiet-measurement.md)")
    serve.add_argument("--access-log", action="store_true",
                       help="also log the HTTP server's access lines (Glimpse logs one "
                       "line per request anyway)")
    serve.set_defaults(func=_serve)
    db = sub.add_parser("db", help="database schema and metadata definitions",
                        description="Database schema and metadata definitions.")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    for name, text in (("sync", "upgrade the schema to the latest version"),
                       ("version", "print the schema version"),
                       ("check", "exit 0 if the schema is current, 3 if `db sync` is due, 4 if the "
                                  "schema is newer than this release (rolling upgrade)")):
        p = db_sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=_db)
    load = db_sub.add_parser("load-metadefs", parents=[common],
                             help="load metadata definition files (one namespace each)")
    load.add_argument("path", nargs="?", help=f"directory (default {DEFAULT_METADEFS_DIR})")
    load.add_argument("--merge", action="store_true",
                      help="add to namespaces already loaded instead of skipping them")
    load.add_argument("--prefer-new", action="store_true",
                      help="with --merge, the files win over what is in the database")
    load.add_argument("--overwrite", action="store_true",
                      help="replace namespaces already loaded by the files' versions")
    load.set_defaults(func=_metadefs)
    export = db_sub.add_parser("export-metadefs", parents=[common],
                               help="write every namespace to DIR, one JSON file each")
    export.add_argument("path", help="directory to write to")
    export.set_defaults(func=_metadefs)
    unload = db_sub.add_parser("unload-metadefs", parents=[common],
                               help="delete every metadata definition")
    unload.set_defaults(func=_metadefs)
    # glance-manage's spelling
    sync_alias = sub.add_parser("db_sync", parents=[common],
                                help="same as `db sync` (glance-manage db_sync)")
    sync_alias.set_defaults(func=_db, db_command="sync")
    scrub = sub.add_parser("scrub", parents=[common],
                           help="delete data of images deleted with delayed_delete")
    scrub.add_argument("--now", action="store_true", help="ignore scrub_time")
    scrub.set_defaults(func=_scrub)
    doctor = sub.add_parser(
        "doctor", parents=[common],
        help="find (and with --fix repair) what crashed workers left: expired leases, "
        "stuck images, orphaned data, locations with missing data; exit code 1 if "
        "anything is found; safe while the service runs")
    doctor.add_argument("--fix", action="store_true",
                        help="recover expired leases, reset stuck images, remove orphans")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=_doctor)
    pol = sub.add_parser("policy", help="policy defaults (oslo.policy)",
                         description="Policy rules and their defaults.")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True,
                                 metavar="POLICY_COMMAND")
    sample = pol_sub.add_parser("sample", help="print every rule with its default, as a "
                                "policy.yaml whose lines are all commented out")
    sample.add_argument("--output", metavar="PATH",
                        help="write to this file instead of stdout")
    sample.set_defaults(func=_policy)
    from glimpse.cache import manage as cache_manage  # image cache (issue 16)

    cache_manage.add_parser(sub, common)
    return parser


def explain(exc: BaseException) -> StartupError | None:
    """The operator's version of a start-up failure, or None for a real bug."""
    from oslo_config import cfg
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    from glimpse.domain.property_protections import InvalidPropertyProtections
    from glimpse.logs import LoggingSetupError

    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        extra = {"psycopg": "postgresql", "psycopg2": "postgresql", "pymysql": "mysql",
                 "MySQLdb": "mysql"}.get(exc.name.split(".")[0])
        if extra:
            return StartupError(f"the database driver {exc.name} is not installed "
                                "([database] connection needs it)",
                                f"pip install 'glimpse[{extra}]'")
        return StartupError(f"the Python module {exc.name} is not installed",
                            "reinstall Glimpse with its dependencies (pip install glimpse)")
    if isinstance(exc, NoSuchModuleError | ArgumentError):
        return StartupError(f"[database] connection is not a usable database URL ({exc})",
                            "use sqlite:///PATH, postgresql://... or mysql+pymysql://...")
    if isinstance(exc, OperationalError):
        return StartupError(f"cannot connect to the database: {exc.orig}",
                            "check [database] connection and that the server is up")
    if isinstance(exc, cfg.ConfigFilesNotFoundError):
        return StartupError(f"configuration file not found: {', '.join(exc.config_files)}",
                            "check the --config-file path")
    if isinstance(exc, cfg.ConfigFilesPermissionDeniedError):
        return StartupError("configuration file cannot be read: "
                            f"{', '.join(exc.config_files)}",
                            "make it readable by the user Glimpse runs as")
    if isinstance(exc, cfg.ConfigFileParseError):
        return StartupError(f"configuration file {exc.config_file} cannot be parsed: "
                            f"{exc.msg}", "fix the line it names (INI format: [section], "
                            "name = value)")
    if isinstance(exc, cfg.ConfigSourceValueError | cfg.ConfigFileValueError):
        return StartupError(f"bad option value: {exc}",
                            "fix that option (docs/configuration.md lists every option)")
    if isinstance(exc, InvalidPropertyProtections | LoggingSetupError):
        return StartupError(str(exc), "fix the option or the file it names")
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        return StartupError(f"{exc.strerror}: {exc.filename}",
                            "check the path and the permissions of that file")
    policy_error = _policy_error(exc)
    if policy_error is not None:
        return policy_error
    return None


def _policy_error(exc: BaseException) -> StartupError | None:
    from oslo_policy import policy

    if isinstance(exc, policy.PolicyNotRegistered | policy.InvalidDefinitionError):
        return StartupError(f"policy: {exc}", "fix [oslo_policy] policy_file")
    text = str(exc)
    if "policy" in text.lower() and isinstance(exc, ValueError | OSError):
        return StartupError(f"policy file: {text}", "fix [oslo_policy] policy_file")
    return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        friendly = explain(exc)
        if friendly is None or getattr(args, "debug", False):
            raise
        fix = f"; fix: {friendly.fix}" if friendly.fix else ""
        print(f"glimpse: error: {friendly.cause}{fix} (--debug shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
