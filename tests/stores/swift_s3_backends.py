"""Real Swift and S3 (SeaweedFS) servers for the store tests, and their drivers' hooks
for the conformance suite.

The servers are started once per machine by scripts/backends/<name>.sh into
.tmp/backends of the checkout (GLIMPSE_TEST_BACKENDS_DIR overrides it) and reused by
later runs and by every xdist worker (a file lock serialises the start). With CI=true
a server that does not come up fails the test; elsewhere the test is skipped with the
reason.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
import swiftclient
from botocore.config import Config

from glimpse.stores.base import Credentials, Store
from glimpse.stores.s3 import S3Store
from tests.stores.backends import backends_dir

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS_DIR = backends_dir()  # the one directory of scripts/backends.sh's servers
MIB = 1024 * 1024


def _unavailable(name: str, detail: str) -> None:
    message = f"{name} did not come up: {detail}"
    if IN_CI:
        pytest.fail(message + " - CI requires every store back end", pytrace=False)
    pytest.skip(message)


def keystone_for_swift() -> dict[str, str]:
    """The Keystone the Keystone-auth Swift proxy uses: SWIFT_KEYSTONE_AUTH_URL, _USER,
    _PASSWORD (and _PROJECT) from the environment, else the project's own Keystone
    (scripts/keystone.sh up DIR, named by GLIMPSE_KEYSTONE_DIR as .ci/run and
    scripts/test.sh set it)."""
    names = ("SWIFT_KEYSTONE_AUTH_URL", "SWIFT_KEYSTONE_USER", "SWIFT_KEYSTONE_PASSWORD",
             "SWIFT_KEYSTONE_PROJECT")
    if os.environ.get("SWIFT_KEYSTONE_AUTH_URL"):
        return {n: os.environ[n] for n in names if os.environ.get(n)}
    directory = os.environ.get("GLIMPSE_KEYSTONE_DIR")
    state = Path(directory) / "keystone.env" if directory else None
    if state is None or not state.exists():
        _unavailable("Swift with Keystone auth",
                     "no Keystone: set SWIFT_KEYSTONE_AUTH_URL/_USER/_PASSWORD or "
                     "GLIMPSE_KEYSTONE_DIR (scripts/keystone.sh up DIR)")
    values = dict(line.split("=", 1) for line in state.read_text().splitlines() if "=" in line)
    url = values.get("KEYSTONE_URL") or f"http://127.0.0.1:{values['KEYSTONE_PORT']}/v3"
    return {"SWIFT_KEYSTONE_AUTH_URL": url,
            "SWIFT_KEYSTONE_USER": values["SERVICE_USER"],
            "SWIFT_KEYSTONE_PASSWORD": values["SERVICE_PASSWORD"],
            "SWIFT_KEYSTONE_PROJECT": "service"}


@functools.cache
def backend_env(name: str, keystone: bool = False) -> dict[str, str]:
    """Start (or find running) the back end ``name`` and return its KEY=VALUE lines;
    ``keystone``: Swift's Keystone-auth proxy as well."""
    BACKENDS_DIR.mkdir(parents=True, exist_ok=True)
    script = ROOT / "scripts" / "backends" / f"{name}.sh"
    env = {**os.environ, **(keystone_for_swift() if keystone else {})}
    with open(BACKENDS_DIR / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            done = subprocess.run([str(script), "up", str(BACKENDS_DIR)], capture_output=True,
                                  text=True, timeout=900, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(name, f"{script} up: {exc}")
    if done.returncode != 0:
        _unavailable(name, f"{script} up exited {done.returncode}:\n{done.stderr[-3000:]}")
    env = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            env[key] = value
    return env


# Buckets and containers of earlier runs are removed once they are this old: each
# SeaweedFS bucket holds a volume of its own, and the server has a bounded number.
STALE_AFTER = 3600


@functools.cache
def remove_stale_test_data() -> None:
    now = time.time()
    client = s3_client()
    for bucket in client.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        if not name.startswith("glimpse-") or now - bucket["CreationDate"].timestamp() < \
                STALE_AFTER:
            continue
        remove_bucket(client, name)


def remove_bucket(client, name: str) -> None:  # noqa: ANN001 - a boto3 S3 client
    """Abort the bucket's unfinished uploads, delete its objects and the bucket."""
    try:
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"],
                                          UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)
    except client.exceptions.NoSuchBucket:
        pass  # the test never wrote anything


def discard_s3(store: Store) -> None:
    """Teardown of a store from make_s3: its bucket goes, with all it holds."""
    remove_bucket(s3_client(), store.bucket)


def unique_name(prefix: str, tmp_path: Path) -> str:
    """A bucket / container name of its own for each test's store."""
    digest = hashlib.sha1(f"{tmp_path}:{os.getpid()}".encode()).hexdigest()[:20]
    return f"{prefix}-{digest}"


# ---------------------------------------------------------------- S3 on SeaweedFS


def s3_client():  # noqa: ANN201
    env = backend_env("seaweedfs")
    return boto3.client(
        "s3", endpoint_url=env["S3_SEAWEEDFS_ENDPOINT"], aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"], region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def make_s3(tmp_path: Path, **options) -> S3Store:  # noqa: ANN003
    env = backend_env("seaweedfs")
    remove_stale_test_data()
    settings = {"large_object_size": 5 * MIB, "large_object_chunk_size": 5 * MIB,
                "thread_pools": 3, "bucket_url_format": "path", "create_bucket_on_put": True,
                **options}
    return S3Store("s3", host=env["S3_SEAWEEDFS_ENDPOINT"], access_key=env["S3_ACCESS_KEY"],
                   secret_key=env["S3_SECRET_KEY"], bucket=unique_name("glimpse", tmp_path),
                   description="conformance", **settings)


def s3_leftovers(store: Store) -> list[str]:
    """Every object and every unfinished multipart upload in the store's bucket, listed
    with a client of its own (not through the driver)."""
    assert store.type == "s3"
    client = s3_client()
    try:
        objects = client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    except client.exceptions.NoSuchBucket:
        return []
    return sorted([o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads])


S3_FOREIGN_URLS = ("s3://127.0.0.1:1/glimpse-x/img-inside", "s3://example.com/b/img-inside",
                   "s3+https://127.0.0.1/b/img-inside", "s3://", "s3:///img-inside")


# ---------------------------------------------------------------- Swift (tempauth)


def swift_connection() -> swiftclient.Connection:
    env = backend_env("swift")
    return swiftclient.Connection(authurl=env["SWIFT_AUTH_URL"], user=env["SWIFT_USER"],
                                  key=env["SWIFT_KEY"], auth_version="1", retries=1)


def make_swift(tmp_path: Path, **options) -> Store:  # noqa: ANN003
    from glimpse.stores.swift import SwiftStore

    env = backend_env("swift")
    settings = {"large_object_size": 4 * MIB, "large_object_chunk_size": 2 * MIB,
                "create_container_on_put": True, **options}
    return SwiftStore("swift", auth_address=env["SWIFT_AUTH_URL"], user=env["SWIFT_USER"],
                      key=env["SWIFT_KEY"], auth_version="1",
                      container=unique_name("glimpse", tmp_path), description="conformance",
                      **settings)


def make_swift_keystone(tmp_path: Path, **options) -> Store:  # noqa: ANN003
    """The swift store authenticating with Keystone v3 (the account URL given as
    swift_store_endpoint: that Keystone's catalog has no object-store)."""
    from glimpse.stores.swift import SwiftStore

    env = backend_env("swift", keystone=True)
    settings = {"large_object_size": 4 * MIB, "large_object_chunk_size": 2 * MIB,
                "create_container_on_put": True, **options}
    return SwiftStore("swift-keystone", auth_address=env["SWIFT_KEYSTONE_AUTH_URL"],
                      user=env["SWIFT_KEYSTONE_USER"], key=env["SWIFT_KEYSTONE_KEY"],
                      auth_version="3", endpoint=env["SWIFT_KEYSTONE_ENDPOINT"],
                      container=unique_name("glimpse", tmp_path), description="conformance",
                      **settings)


def swift_keystone_leftovers(store: Store) -> list[str]:
    """Every object in the container, listed with tempauth's reseller admin (not
    through the driver): the Keystone project's account seen from the other proxy."""
    env = backend_env("swift", keystone=True)
    account = env["SWIFT_KEYSTONE_ENDPOINT"].rsplit("/", 1)[1]
    admin = swiftclient.Connection(authurl=env["SWIFT_AUTH_URL"], user=env["SWIFT_ADMIN_USER"],
                                   key=env["SWIFT_ADMIN_KEY"], auth_version="1", retries=1)
    url, token = admin.get_auth()
    try:
        _, objects = swiftclient.get_container(url.rsplit("/", 1)[0] + "/" + account, token,
                                               store.container, full_listing=True)
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return sorted(o["name"] for o in objects)


# ---------------------------------------------------------------- Swift, multi-tenant

# The catalog entry the multi-tenant tests register in the shared Keystone: a service
# type of their own (swift_store_service_type), so nothing else that uses that
# Keystone (tempest) sees an object-store appear.
TENANT_SERVICE_TYPE = "glimpse-test-object-store"


def _keystone_state() -> dict[str, str]:
    directory = os.environ.get("GLIMPSE_KEYSTONE_DIR")
    state = Path(directory) / "keystone.env" if directory else None
    if state is None or not state.exists():
        _unavailable("Swift with Keystone auth", "no Keystone: set GLIMPSE_KEYSTONE_DIR "
                     "(scripts/keystone.sh up DIR)")
    values = dict(line.split("=", 1) for line in state.read_text().splitlines() if "=" in line)
    values.setdefault("KEYSTONE_URL", f"http://127.0.0.1:{values.get('KEYSTONE_PORT')}/v3")
    return values


@functools.cache
def swift_in_catalog() -> dict[str, str]:
    """The Keystone-auth Swift, registered in Keystone's catalog (scripts/keystone_admin.py)
    as TENANT_SERVICE_TYPE with the account URL of each token's own project
    (``.../v1/AUTH_$(project_id)s``); the swift back end's KEY=VALUE lines."""
    env = backend_env("swift", keystone=True)
    state = _keystone_state()
    template = env["SWIFT_KEYSTONE_ENDPOINT"].rsplit("/", 1)[0] + "/AUTH_$(project_id)s"
    # One registration at a time: the xdist workers (and other checkouts sharing this
    # Keystone) would otherwise each replace the endpoints the other just made.
    lock = Path(os.environ["GLIMPSE_KEYSTONE_DIR"]) / "catalog.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "keystone_admin.py"),
             state["KEYSTONE_URL"], state["ADMIN_PASSWORD"], "catalog", template,
             TENANT_SERVICE_TYPE, "glimpse-test-swift"],
            capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        _unavailable("Swift in Keystone's catalog", done.stderr[-2000:])
    return {**env, "KEYSTONE_URL": state["KEYSTONE_URL"]}


def keystone_credentials(user: dict, project: dict) -> Credentials:
    """A project-scoped token of ``user`` (Keystone's ``user`` / ``project`` objects of
    POST /v3/auth/tokens) with its catalog, as a request would carry them."""
    env = swift_in_catalog()
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                     "scope": {"project": project}}}
    request = urllib.request.Request(env["KEYSTONE_URL"] + "/auth/tokens",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 - loopback
        token = answer.headers["X-Subject-Token"]
        doc = json.load(answer)["token"]
    return Credentials(token=token, user_id=doc["user"]["id"],
                       project_id=doc["project"]["id"],
                       service_catalog=tuple(doc.get("catalog") or ()))


@functools.cache
def service_user_credentials() -> Credentials:
    """The Keystone-auth proxy's own user (role admin on project service)."""
    env = swift_in_catalog()
    project, _, user = env["SWIFT_KEYSTONE_USER"].partition(":")
    return keystone_credentials(
        {"name": user, "domain": {"id": "default"}, "password": env["SWIFT_KEYSTONE_KEY"]},
        {"name": project, "domain": {"id": "default"}})


def make_swift_multi_tenant(tmp_path: Path, **options) -> Store:  # noqa: ANN003
    """The swift store with swift_store_multi_tenant: each caller's own account, found in
    the caller's catalog."""
    from glimpse.stores.swift import SwiftStore

    swift_in_catalog()
    settings = {"large_object_size": 4 * MIB, "large_object_chunk_size": 2 * MIB,
                "service_type": TENANT_SERVICE_TYPE, **options}
    return SwiftStore("swift-multi-tenant", multi_tenant=True,
                      container=unique_name("glimpse", tmp_path), description="conformance",
                      **settings)


def reseller_admin() -> tuple[str, str]:
    """The tempauth reseller admin's token and the proxy's /v1 URL: it reads any account."""
    env = backend_env("swift")
    admin = swiftclient.Connection(authurl=env["SWIFT_AUTH_URL"], user=env["SWIFT_ADMIN_USER"],
                                   key=env["SWIFT_ADMIN_KEY"], auth_version="1", retries=1)
    url, token = admin.get_auth()
    return url.rsplit("/", 1)[0], token


def account_holdings(project_id: str, prefix: str) -> list[str]:
    """What the account of ``project_id`` holds in containers named ``prefix...``: each
    object as ``container/object``, an empty container as ``container/``."""
    base, token = reseller_admin()
    url = f"{base}/AUTH_{project_id}"
    try:
        _, containers = swiftclient.get_account(url, token, prefix=prefix, full_listing=True)
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    held = []
    for container in containers:
        _, objects = swiftclient.get_container(url, token, container["name"],
                                               full_listing=True)
        held.extend(f"{container['name']}/{o['name']}" for o in objects)
        if not objects:
            held.append(f"{container['name']}/")
    return sorted(held)


def swift_multi_tenant_leftovers(store: Store) -> list[str]:
    """Everything of the store in the caller's account (its per-image containers and
    their objects), listed with tempauth's reseller admin, not through the driver."""
    return account_holdings(service_user_credentials().project_id, f"{store.container}_")


def swift_leftovers(store: Store) -> list[str]:
    """Every object (images, manifests, segments) in the store's container."""
    assert store.type == "swift"
    try:
        _, objects = swift_connection().get_container(store.container, full_listing=True)
    except swiftclient.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return sorted(o["name"] for o in objects)


SWIFT_FOREIGN_URLS = ("swift+http://127.0.0.1:1/auth/v1.0/glimpse/img-inside",
                      "swift+config://no-such-ref/glimpse/img-inside",
                      "swift://", "swift+http:///img-inside")
