"""The glimpse command: serve, db sync|version|load-metadefs|export-metadefs|unload-metadefs,
scrub, doctor."""

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
    return config.load_config(args.config_file or [], overrides)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from glimpse.db import engine as db_engine

    conf = _conf(args)
    # Migrate once, in the parent, before any worker starts.
    db = db_engine.from_conf(conf)
    db_engine.upgrade_if_needed(db)
    db.dispose()
    os.environ["GLIMPSE_CONFIG_FILES"] = os.pathsep.join(
        os.path.abspath(p) for p in (args.config_file or []))
    os.environ["GLIMPSE_OVERRIDES"] = repr({
        k: v for k, v in {"data_dir": conf.data_dir}.items()})
    logging.getLogger("glimpse").info("Serving on %s:%s", conf.bind_host, conf.bind_port)
    uvicorn.run(
        "glimpse.asgi:app" if conf.workers > 1 else _app_factory(conf),
        host=conf.bind_host,
        port=conf.bind_port,
        workers=conf.workers if conf.workers > 1 else None,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_keep_alive=75,
        h11_max_incomplete_event_size=1024 * 1024,
    )
    return 0


def _app_factory(conf):  # noqa: ANN001, ANN202
    from glimpse.api.app import create_app
    return create_app(conf)


def _db(args: argparse.Namespace) -> int:
    from glimpse.db import engine as db_engine

    conf = _conf(args)
    db = db_engine.from_conf(conf)
    try:
        if args.db_command == "sync":
            db_engine.upgrade(db)
            print(db_engine.current_revision(db))
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
                        help="glance-api.conf-style file (repeatable)")
    common.add_argument("--data-dir", help="data directory (default ./data)")
    parser = argparse.ArgumentParser(prog="glimpse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the API server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(func=_serve)
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("sync", "upgrade the schema to the latest version"),
                       ("version", "print the schema version")):
        p = db_sub.add_parser(name, parents=[common], help=text)
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
    pol = sub.add_parser("policy", help="policy defaults")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    sample = pol_sub.add_parser("sample", help="print every rule with its default")
    sample.add_argument("--output", help="write to this file instead of stdout")
    sample.set_defaults(func=_policy)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
