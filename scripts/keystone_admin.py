#!/usr/bin/env python3
"""The few Keystone admin calls the test scripts need, with the standard library only.

    keystone_admin.py URL ADMIN_PASSWORD provision SERVICE_USER SERVICE_PASSWORD
        service project, the service user with roles admin and service on it
    keystone_admin.py URL ADMIN_PASSWORD catalog IMAGE_URL [SERVICE_TYPE [NAME]]
        an ``image`` service (name glance, RegionOne) whose public, internal and
        admin endpoints are IMAGE_URL (replaced when they point elsewhere);
        SERVICE_TYPE (default image) lets runs sharing one Keystone each have a
        catalog entry of their own; another type (key-manager for
        scripts/barbican.sh) with NAME registers that service instead

URL is the identity v3 endpoint (http://127.0.0.1:PORT/v3). Loopback only.
Every step is idempotent, so a re-run against a running Keystone is harmless.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT = 120


class Keystone:
    def __init__(self, url: str, admin_password: str):
        host = urllib.parse.urlsplit(url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            sys.exit(f"keystone_admin: refusing a non-loopback Keystone URL {url}")
        self.url = url.rstrip("/")
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": admin_password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }}
        status, headers, _ = self.call("POST", "/auth/tokens", body, token=None)
        if status != 201:
            sys.exit(f"keystone_admin: admin token refused ({status})")
        self.token = headers["X-Subject-Token"]

    def call(self, method: str, path: str, body: Any = None,
             token: str | None = "") -> tuple[int, Any, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("X-Auth-Token", token or self.token)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
                return resp.status, resp.headers, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return exc.code, exc.headers, parsed

    def expect(self, method: str, path: str, ok: tuple[int, ...], body: Any = None) -> Any:
        status, _, parsed = self.call(method, path, body)
        if status not in ok:
            sys.exit(f"keystone_admin: {method} {path} answered {status}: {parsed}")
        return parsed

    def find(self, collection: str, name: str) -> dict[str, Any] | None:
        query = urllib.parse.urlencode({"name": name})
        found = self.expect("GET", f"/{collection}?{query}", (200,))[collection]
        return found[0] if found else None

    def ensure_role(self, name: str) -> str:
        role = self.find("roles", name)
        if role is None:
            role = self.expect("POST", "/roles", (201,), {"role": {"name": name}})["role"]
        return role["id"]


def provision(ks: Keystone, user: str, password: str) -> None:
    project = ks.find("projects", "service")
    if project is None:
        project = ks.expect("POST", "/projects", (201,), {"project": {
            "name": "service", "domain_id": "default", "description": "Service project"}})[
            "project"]
    found = ks.find("users", user)
    if found is None:
        found = ks.expect("POST", "/users", (201,), {"user": {
            "name": user, "password": password, "domain_id": "default"}})["user"]
    else:
        ks.expect("PATCH", f"/users/{found['id']}", (200,), {"user": {"password": password}})
    for role in ("admin", "member", "reader", "service"):
        role_id = ks.ensure_role(role)
        if role in ("admin", "service"):
            ks.expect("PUT", f"/projects/{project['id']}/users/{found['id']}/roles/{role_id}",
                      (204,))
    print(f"keystone_admin: service user {user} ready on project service")


def catalog(ks: Keystone, image_url: str, service_type: str = "image",
            name: str = "glance") -> None:
    query = urllib.parse.urlencode({"type": service_type})
    services = ks.expect("GET", f"/services?{query}", (200,))["services"]
    if services:
        service_id = services[0]["id"]
    else:
        service_id = ks.expect("POST", "/services", (201,), {"service": {
            "type": service_type, "name": name,
            "description": f"{name} ({service_type})"}})["service"]["id"]
    endpoints = ks.expect("GET", f"/endpoints?service_id={service_id}", (200,))["endpoints"]
    for interface in ("public", "internal", "admin"):
        mine = [e for e in endpoints if e["interface"] == interface]
        if any(e["url"] == image_url for e in mine):
            continue
        for e in mine:  # 404: another caller removed it first
            ks.expect("DELETE", f"/endpoints/{e['id']}", (204, 404))
        ks.expect("POST", "/endpoints", (201,), {"endpoint": {
            "service_id": service_id, "interface": interface, "url": image_url,
            "region_id": "RegionOne"}})
    print(f"keystone_admin: catalog {service_type} -> {image_url}")


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit(__doc__)
    url, admin_password, command, *args = argv
    ks = Keystone(url, admin_password)
    if command == "provision" and len(args) == 2:
        provision(ks, *args)
    elif command == "catalog" and len(args) in (1, 2, 3):
        catalog(ks, *args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
