"""``glimpse cache ...``: manage one node's image cache through that node's API.

Each node has its own cache, so every command talks to one node: ``--host`` (a URL,
or a host name with ``--port``) picks it; by default the node of the configuration
file (worker_self_reference_url, else bind_host:bind_port). A token comes from
``--os-auth-token`` / ``OS_AUTH_TOKEN``, or is requested from Keystone with the
usual ``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_PASSWORD``, ``OS_PROJECT_NAME`` (and
domain) variables; with neither, no token is sent (auth_strategy = noauth).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any

import httpx

COMMANDS = {
    "list-cached": "list the images in the node's cache",
    "list-queued": "list the images queued for caching on the node",
    "queue-image": "queue an image for caching (the node caches it at once)",
    "delete-cached-image": "remove an image from the node's cache (and queue)",
    "delete-all-cached-images": "empty the node's cache",
    "delete-queued-image": "remove an image from the node's queue (and cache)",
    "delete-all-queued-images": "empty the node's queue",
    "prune": "remove least recently used images until the cache is under "
             "image_cache_max_size (for cron; the server also does it by itself)",
    "clean": "remove invalid and stalled partial cache files (for cron)",
}
WITH_IMAGE = {"queue-image", "delete-cached-image", "delete-queued-image"}


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    cache = sub.add_parser("cache", help="manage one API node's image cache",
                           description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    cache_sub = cache.add_subparsers(dest="cache_command", required=True,
                                     metavar="CACHE_COMMAND")
    for name, text in COMMANDS.items():
        p = cache_sub.add_parser(name, parents=[common], help=text, description=text)
        if name in WITH_IMAGE:
            p.add_argument("image_id", metavar="IMAGE_ID", help="the image's id")
        p.add_argument("--host", dest="node",
                       help="the node: a URL (http://node1:9292) or a host name")
        p.add_argument("--port", dest="node_port", type=int,
                       help="the node's port when --host is a host name (default 9292)")
        p.add_argument("--os-auth-token", default=os.environ.get("OS_AUTH_TOKEN"),
                       help="a Keystone token (default $OS_AUTH_TOKEN)")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
        p.set_defaults(func=run)


def node_url(args: argparse.Namespace, conf: Any) -> str:
    node = args.node
    if node:
        if "://" in node:
            return node.rstrip("/")
        return f"http://{node}:{args.node_port or 9292}"
    if conf.worker_self_reference_url:
        return conf.worker_self_reference_url.rstrip("/")
    host = conf.bind_host if conf.bind_host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{args.node_port or conf.bind_port}"


def _token(args: argparse.Namespace) -> str | None:
    if args.os_auth_token:
        return args.os_auth_token
    if not os.environ.get("OS_AUTH_URL"):
        return None
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    env = os.environ.get
    auth = v3.Password(auth_url=env("OS_AUTH_URL"), username=env("OS_USERNAME"),
                       password=env("OS_PASSWORD"), project_name=env("OS_PROJECT_NAME"),
                       user_domain_name=env("OS_USER_DOMAIN_NAME", "Default"),
                       project_domain_name=env("OS_PROJECT_DOMAIN_NAME", "Default"))
    return session.Session(auth=auth).get_token()


def _when(stamp: float | None) -> str:
    if not stamp:
        return "N/A"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
           + " |", line]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
            + " |" for row in rows]
    out.append(line)
    return "\n".join(out)


class CacheCommandError(Exception):
    pass


def request(args: argparse.Namespace, base: str, method: str, path: str,
            headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {"Accept": "application/json", **(headers or {})}
    token = _token(args)
    if token:
        sent["X-Auth-Token"] = token
    try:
        resp = httpx.request(method, base + path, headers=sent, timeout=args.timeout)
    except httpx.HTTPError as exc:
        raise CacheCommandError(f"cannot reach {base}: {exc}") from exc
    if resp.status_code >= 400:
        try:
            message = resp.json()["message"]
        except Exception:  # noqa: BLE001 - not Glance's JSON error: show the text
            message = resp.text.strip()
        raise CacheCommandError(f"{method} {path} on {base}: {resp.status_code} {message}")
    return resp


def run(args: argparse.Namespace) -> int:
    from glimpse import config

    conf = config.load_config(args.config_file or [])
    base = node_url(args, conf)
    command = args.cache_command
    try:
        if command in ("list-cached", "list-queued"):
            state = request(args, base, "GET", "/v2/cache").json()
            if command == "list-cached":
                rows = [[e["image_id"], _when(e.get("last_accessed")),
                         _when(e.get("last_modified")), str(e["size"]), str(e["hits"])]
                        for e in state["cached_images"]]
                print(_table(["ID", "Last Accessed (UTC)", "Last Modified (UTC)", "Size",
                              "Hits"], rows) if rows else f"No cached images on {base}.")
            else:
                queued = state["queued_images"]
                print(_table(["ID"], [[i] for i in queued]) if queued
                      else f"No queued images on {base}.")
        elif command == "queue-image":
            request(args, base, "PUT", f"/v2/cache/{args.image_id}")
            print(f"Queued image {args.image_id} for caching on {base}.")
        elif command in ("delete-cached-image", "delete-queued-image"):
            request(args, base, "DELETE", f"/v2/cache/{args.image_id}")
            print(f"Removed image {args.image_id} from the cache and queue of {base}.")
        elif command in ("delete-all-cached-images", "delete-all-queued-images"):
            target = "cache" if command == "delete-all-cached-images" else "queue"
            request(args, base, "DELETE", "/v2/cache",
                    {"x-image-cache-clear-target": target})
            print(f"Emptied the {target} of {base}.")
        elif command == "prune":
            done = request(args, base, "POST", "/v2/cache/prune").json()
            print(f"Pruned {done['total_files_pruned']} image(s), "
                  f"{done['total_bytes_pruned']} bytes, on {base}.")
        elif command == "clean":
            request(args, base, "POST", "/v2/cache/clean")
            print(f"Cleaned the cache of {base}.")
    except CacheCommandError as exc:
        print(f"glimpse cache {command}: {exc}", file=sys.stderr)
        return 1
    return 0
