"""One fixture factory per store driver, for the conformance suite.

A factory (``@driver("name")``) is called once per test session, when a test first
needs that driver; it starts the driver's real server through
``scripts/backends.sh up`` (reused when up, see ``backend_env``) and returns a
``StoreDriver`` saying how to make a fresh empty store, how to list everything the
back end holds (with the back end's own client, not the driver), and so on.

To add a driver: write one ``@driver("kind")`` function here. Nothing else in the
suite changes.

Servers start once per session into GLIMPSE_BACKENDS_DIR (default .tmp/backends
in the repository), and stay up for the next run. A back end that does not come up
skips its tests with the reason outside CI and fails them in CI.
"""

from __future__ import annotations

import importlib
import os
import site
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from glimpse.stores.base import Credentials, Store

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
MIB = 1024 * 1024


@dataclass
class StoreDriver:
    #: a fresh, empty store (``tmp`` is the test's own directory)
    make: Callable[[Path], Store]
    #: names of everything the back end holds for a store from ``make``, finished or
    #: partial, read with the back end's own client
    leftovers: Callable[[Store], list[str]]
    #: the driver's part / segment / chunk size, for the boundary tests
    chunk_size: int
    #: a store whose server is stopped or unreachable, and a URL of that store
    #: (None: the driver has no server)
    make_unreachable: Callable[[Path], tuple[Store, str]] | None = None
    #: a second store, isolated from the one ``make`` returned (default: make(tmp/other))
    make_other: Callable[[Path], Store] | None = None
    #: read-only drivers: put ``data`` where the store can read it, return its URL
    seed: Callable[[Store, str, bytes], str] | None = None
    #: URLs of the driver's own scheme that name things outside the store
    foreign_urls: tuple[str, ...] = ()
    #: the URL scheme(s) the driver owns, left out of the other-stores URL list
    schemes: tuple[str, ...] = field(default_factory=tuple)
    #: whom the suite's calls are for (add/get/size/delete get it): a real caller's
    #: token and catalog for drivers that use them (multi-tenant swift), else None
    creds: Credentials | None = None
    #: teardown: remove everything a store from ``make`` / ``make_other`` wrote to its
    #: server (the shared dev servers are not emptied between runs); None: nothing to do
    discard: Callable[[Store], None] | None = None

    @property
    def writable(self) -> bool:
        return self.seed is None


FACTORIES: dict[str, Callable[[], StoreDriver]] = {}
# Known before a factory runs (parametrization happens at collection time).
READ_ONLY = {"http"}
SERVERLESS = {"file"}
_BUILT: dict[str, StoreDriver | BaseException] = {}
_LOCK = threading.Lock()


def driver(name: str) -> Callable[[Callable[[], StoreDriver]], Callable[[], StoreDriver]]:
    def register(factory: Callable[[], StoreDriver]) -> Callable[[], StoreDriver]:
        FACTORIES[name] = factory
        return factory
    return register


def get_driver(name: str) -> StoreDriver:
    """The driver's StoreDriver, built once per session; skips (fails in CI) when its
    back end is not available."""
    with _LOCK:
        if name not in _BUILT:
            try:
                _BUILT[name] = FACTORIES[name]()
            except BackendMissing as exc:
                _BUILT[name] = exc
    built = _BUILT[name]
    if isinstance(built, BackendMissing):
        unavailable(str(built))
    assert isinstance(built, StoreDriver)
    return built


class BackendMissing(Exception):
    pass


def unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} - CI requires every store back end", pytrace=False)
    pytest.skip(message)


# ---------------------------------------------------------------- servers

_ENV: dict[str, dict[str, str]] = {}


def backends_dir() -> Path:
    return Path(os.environ.get("GLIMPSE_BACKENDS_DIR") or ROOT / ".tmp" / "backends")


def backend_env(name: str) -> dict[str, str]:
    """Start back end ``name`` (ceph, s3-rgw, swift, s3-seaweedfs) with
    scripts/backends.sh, once per session; its KEY=VALUE lines as a dict."""
    if name not in _ENV:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "backends.sh"), "up", str(backends_dir()), name],
            capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise BackendMissing(f"back end {name} did not come up "
                                 f"(scripts/backends.sh exit {proc.returncode}):\n{tail}")
        _ENV[name] = dict(line.split("=", 1) for line in proc.stdout.splitlines()
                          if "=" in line)
    return _ENV[name]


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


# ---------------------------------------------------------------- file


@driver("file")
def file_driver() -> StoreDriver:
    from glimpse.stores.file import FileStore

    def make(tmp: Path) -> Store:
        return FileStore("file", str(tmp / "store"), "conformance", chunk_size=64 * 1024)

    def leftovers(store: Store) -> list[str]:
        return sorted(os.listdir(store.datadir))  # type: ignore[attr-defined]

    return StoreDriver(make=make, leftovers=leftovers, chunk_size=64 * 1024,
                       foreign_urls=("file:///etc/passwd", "file:///etc/", "file:///",
                                     "file://"),
                       schemes=("file",))


# ---------------------------------------------------------------- rbd


def _ceph_bindings() -> tuple[object, object]:
    """rados and rbd, linked into this venv by scripts/ceph-bindings.sh when missing."""
    try:
        import rados
        import rbd
    except ImportError:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "ceph-bindings.sh"),
                               sys.prefix], capture_output=True, text=True, timeout=600,
                              check=False)
        site.addsitedir(os.path.join(sys.prefix, "lib", "ceph-bindings"))
        importlib.invalidate_caches()
        try:
            import rados
            import rbd
        except ImportError as exc:
            raise BackendMissing(f"Ceph python bindings not importable ({exc}); "
                                 f"scripts/ceph-bindings.sh said: {proc.stderr.strip()}"
                                 ) from exc
    return rados, rbd



@driver("rbd")
def rbd_driver() -> StoreDriver:
    env = backend_env("ceph")  # installs python3-rados / python3-rbd with Ceph
    rados, rbd = _ceph_bindings()
    from glimpse.stores.rbd import RbdStore

    conffile, user = env["CEPH_CONF"], env["CEPH_TEST_USER"]
    admin = rados.Rados(conffile=conffile, rados_id=env["CEPH_ADMIN_USER"])
    admin.connect(timeout=30)
    # Throw-away pools of this worker: a test empties its pool first, and pools
    # of other workers (and the shared `images`) are never touched.
    pools = [f"glimpse-ct-{worker_id()}-a", f"glimpse-ct-{worker_id()}-b"]
    for pool in pools:
        if not admin.pool_exists(pool):
            admin.create_pool(pool)
            with admin.open_ioctx(pool) as ioctx:
                ioctx.application_enable("rbd")

    def empty(pool: str) -> None:
        with admin.open_ioctx(pool) as ioctx:
            for name in rbd.RBD().list(ioctx):
                with rbd.Image(ioctx, name) as image:
                    for snap in list(image.list_snaps()):
                        if image.is_protected_snap(snap["name"]):
                            image.unprotect_snap(snap["name"])
                        image.remove_snap(snap["name"])
                rbd.RBD().remove(ioctx, name)

    def store_on(pool: str) -> Store:
        empty(pool)
        return RbdStore("rbd", pool=pool, user=user, conffile=conffile, chunk_mib=1,
                        connect_timeout=30, description="conformance")

    def leftovers(store: Store) -> list[str]:
        with admin.open_ioctx(store.pool) as ioctx:  # type: ignore[attr-defined]
            return sorted(rbd.RBD().list(ioctx))

    def unreachable(tmp: Path) -> tuple[Store, str]:
        # A copy of the cluster's conf whose monitor address nobody listens on.
        from tests.conftest import free_port

        text = Path(conffile).read_text()
        port = free_port()
        dead = tmp / "dead-ceph.conf"
        dead.write_text("\n".join(
            f"mon host = v2:127.0.0.1:{port}" if line.startswith("mon host") else line
            for line in text.splitlines()))
        store = RbdStore("rbd", pool=pools[0], user=user, conffile=str(dead), chunk_mib=1,
                         connect_timeout=2)
        return store, f"rbd://{fsid}/{pools[0]}/img-gone/snap"

    fsid = env["CEPH_FSID"]
    return StoreDriver(
        make=lambda tmp: store_on(pools[0]),
        make_other=lambda tmp: store_on(pools[1]),
        discard=lambda store: empty(store.pool),  # type: ignore[attr-defined]
        leftovers=leftovers, chunk_size=MIB, make_unreachable=unreachable,
        foreign_urls=(f"rbd://{fsid}/images/img-inside/snap",
                      f"rbd://00000000-0000-0000-0000-000000000000/{pools[0]}/img-inside/snap",
                      f"rbd://{fsid}/{pools[0]}/img-inside", f"rbd://{fsid}/{pools[0]}",
                      "rbd://img-inside", "rbd://"),
        schemes=("rbd",))


# ---------------------------------------------------------------- http (read side)


@driver("http")
def http_driver() -> StoreDriver:
    from glimpse.stores.http import HttpStore
    from tests.stores.http_server import RangeServer

    server = RangeServer.shared()

    def seed(store: Store, image_id: str, data: bytes) -> str:
        return server.put(image_id, data)

    def leftovers(store: Store) -> list[str]:
        return []  # read-only: nothing it could leave behind

    def unreachable(tmp: Path) -> tuple[Store, str]:
        from tests.conftest import free_port

        return HttpStore("http", timeout=2), f"http://127.0.0.1:{free_port()}/gone"

    return StoreDriver(
        make=lambda tmp: HttpStore("http", "conformance", timeout=10),
        leftovers=leftovers, chunk_size=MIB, seed=seed, make_unreachable=unreachable,
        foreign_urls=("http://", "https://", "http:///x"), schemes=("http", "https"))


# ---------------------------------------------------------------- s3 (SeaweedFS) and swift


def _dead_port() -> int:
    from tests.conftest import free_port

    return free_port()


@driver("s3")
def s3_driver() -> StoreDriver:
    from glimpse.stores.s3 import S3Store
    from tests.stores import swift_s3_backends as swift_s3

    def unreachable(tmp: Path) -> tuple[Store, str]:
        port = _dead_port()
        store = S3Store("s3", host=f"http://127.0.0.1:{port}", access_key="k",
                        secret_key="s", bucket="glimpse-gone", bucket_url_format="path",
                        connect_timeout=2, read_timeout=2, retries=0)
        return store, f"s3://127.0.0.1:{port}/glimpse-gone/img-gone"

    return StoreDriver(make=swift_s3.make_s3, leftovers=swift_s3.s3_leftovers,
                       discard=swift_s3.discard_s3,
                       chunk_size=5 * MIB, make_unreachable=unreachable,
                       foreign_urls=swift_s3.S3_FOREIGN_URLS,
                       schemes=("s3", "s3+http", "s3+https"))


def _swift_unreachable(tmp: Path) -> tuple[Store, str]:
    from glimpse.stores.swift import SwiftStore

    port = _dead_port()
    auth = f"http://127.0.0.1:{port}/auth/v1.0"
    store = SwiftStore("swift", auth_address=auth, user="a:b", key="c", auth_version="1",
                       container="glimpse-gone")
    return store, f"swift+http://127.0.0.1:{port}/auth/v1.0/glimpse-gone/img-gone"


@driver("swift")
def swift_driver() -> StoreDriver:
    from tests.stores import swift_s3_backends as swift_s3

    return StoreDriver(make=swift_s3.make_swift, leftovers=swift_s3.swift_leftovers,
                       chunk_size=2 * MIB, make_unreachable=_swift_unreachable,
                       foreign_urls=swift_s3.SWIFT_FOREIGN_URLS,
                       schemes=("swift", "swift+http", "swift+https", "swift+config"))


@driver("swift-keystone")
def swift_keystone_driver() -> StoreDriver:
    from tests.stores import swift_s3_backends as swift_s3

    return StoreDriver(make=swift_s3.make_swift_keystone,
                       leftovers=swift_s3.swift_keystone_leftovers, chunk_size=2 * MIB,
                       make_unreachable=_swift_unreachable,
                       foreign_urls=swift_s3.SWIFT_FOREIGN_URLS,
                       schemes=("swift", "swift+http", "swift+https", "swift+config"))


@driver("swift-multi-tenant")
def swift_multi_tenant_driver() -> StoreDriver:
    """swift_store_multi_tenant against the Keystone-auth proxy: the suite's calls carry
    a real token whose catalog names the caller's own account."""
    from glimpse.stores.swift import SwiftStore
    from tests.stores import swift_s3_backends as swift_s3

    creds = swift_s3.service_user_credentials()

    def unreachable(tmp: Path) -> tuple[Store, str]:
        port = _dead_port()
        account = f"http://127.0.0.1:{port}/v1/AUTH_{creds.project_id}"
        store = SwiftStore("swift-multi-tenant", multi_tenant=True, endpoint=account,
                           container="glimpse-gone", timeout=2, retries=0)
        return store, f"swift+{account}/glimpse-gone_img-gone/img-gone"

    return StoreDriver(make=swift_s3.make_swift_multi_tenant,
                       leftovers=swift_s3.swift_multi_tenant_leftovers, chunk_size=2 * MIB,
                       make_unreachable=unreachable, creds=creds,
                       foreign_urls=(*swift_s3.SWIFT_FOREIGN_URLS,
                                     "swift+http://127.0.0.1:1/v1/AUTH_x/glance/img-inside",
                                     "swift+http://user:key@127.0.0.1:1/v1/AUTH_x/"
                                     "glance_img-inside/img-inside"),
                       schemes=("swift", "swift+http", "swift+https", "swift+config"))


@driver("s3-rgw")
def s3_rgw_driver() -> StoreDriver:
    """The s3 driver against Ceph's RGW (a second real S3 server, signatures checked)."""
    import boto3
    from botocore.config import Config

    from glimpse.stores.s3 import S3Store
    from tests.stores import swift_s3_backends as swift_s3

    env = backend_env("s3-rgw")
    endpoint = env["S3_RGW_ENDPOINT"]
    access, secret = env["S3_RGW_ACCESS_KEY"], env["S3_RGW_SECRET_KEY"]
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                          aws_secret_access_key=secret, region_name="us-east-1",
                          config=Config(signature_version="s3v4",
                                        s3={"addressing_style": "path"}))

    def make(tmp: Path) -> Store:
        return S3Store("s3", host=endpoint, access_key=access, secret_key=secret,
                       bucket=swift_s3.unique_name("glimpse-rgw", tmp), description="conformance",
                       large_object_size=5 * MIB, large_object_chunk_size=5 * MIB,
                       thread_pools=3, bucket_url_format="path", create_bucket_on_put=True)

    def leftovers(store: Store) -> list[str]:
        bucket = store.bucket  # type: ignore[attr-defined]
        try:
            objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        except client.exceptions.NoSuchBucket:
            return []
        return sorted([o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads])

    s3 = s3_driver()
    return StoreDriver(make=make, leftovers=leftovers, chunk_size=5 * MIB,
                       discard=lambda store: swift_s3.remove_bucket(
                           client, store.bucket),  # type: ignore[attr-defined]
                       make_unreachable=s3.make_unreachable,
                       foreign_urls=swift_s3.S3_FOREIGN_URLS, schemes=s3.schemes)
