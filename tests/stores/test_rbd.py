"""rbd store specifics, against the real single-node Ceph of scripts/backends.sh."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glimpse.config import load_config
from glimpse.stores import registry
from glimpse.stores.base import StoreError
from tests.stores.backends import backend_env, get_driver
from tests.stores.memory import PeakRss

MIB = 1024 * 1024


@pytest.fixture
def rbd_store(tmp_path):
    return get_driver("rbd").make(tmp_path)


@pytest.fixture
def ceph():
    get_driver("rbd")  # skips (fails in CI) when Ceph or the bindings are missing
    return backend_env("ceph")


def _rbd_cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["rbd", "-c", env["CEPH_CONF"], "-n", "client.admin", *args],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def test_image_has_layering_and_a_protected_snap(rbd_store, ceph):
    stored = rbd_store.add("img-layout", iter([b"x" * 5000]))
    assert stored.url == f"rbd://{ceph['CEPH_FSID']}/{rbd_store.pool}/img-layout/snap"
    info = json.loads(_rbd_cli(ceph, "info", f"{rbd_store.pool}/img-layout", "--format", "json"))
    assert "layering" in info["features"]
    assert info["order"] == 20  # rbd_store_chunk_size = 1 (MiB)
    snaps = json.loads(_rbd_cli(ceph, "snap", "ls", f"{rbd_store.pool}/img-layout",
                                "--format", "json"))
    assert [s["name"] for s in snaps] == ["snap"]
    assert _rbd_cli(ceph, "info", f"{rbd_store.pool}/img-layout@snap").count("protected: True")


def test_thin_provisioning_leaves_zero_runs_unwritten(tmp_path, ceph):
    """A sparse 1 GiB raw image with 10 MiB of data takes about 10 MiB in the pool
    (rbd diff lists only the written extents)."""
    store = get_driver("rbd").make(tmp_path)
    store.sparse_writes = True
    data = bytes(range(256)) * (MIB // 256)
    zeros = bytes(MIB)

    def sparse() -> object:
        for i in range(1024):
            yield data if i % 100 == 0 and i < 1000 else zeros  # 10 MiB of data

    stored = store.add("img-thin", sparse())
    assert stored.size == 1024 * MIB
    extents = json.loads(_rbd_cli(ceph, "diff", f"{store.pool}/img-thin", "--format", "json"))
    used = sum(e["length"] for e in extents)
    assert 10 * MIB <= used <= 12 * MIB, used
    assert b"".join(store.get(stored.url, 100 * MIB, MIB)) == data
    assert b"".join(store.get(stored.url, 101 * MIB, MIB)) == zeros


def test_without_thin_provisioning_zeros_are_written(rbd_store, ceph):
    rbd_store.add("img-thick", iter([bytes(4 * MIB)]))
    extents = json.loads(_rbd_cli(ceph, "diff", f"{rbd_store.pool}/img-thick", "--format",
                                  "json"))
    assert sum(e["length"] for e in extents) == 4 * MIB


def test_in_progress_data_is_named_as_such_until_committed(rbd_store, ceph):
    seen: list[list] = []

    def watching() -> object:
        yield b"a" * MIB
        seen.append(list(rbd_store.list_data()))
        yield b"b" * MIB

    stored = rbd_store.add("img-progress", watching())
    (during,) = seen[0]
    assert not during.complete and "glimpse-partial.img-progress." in during.url
    (after,) = rbd_store.list_data()
    assert after.complete and after.url == stored.url and after.size == 2 * MIB
    assert after.modified > 0


def test_existing_image_id_is_refused_and_kept(rbd_store):
    url = rbd_store.add("img-dup", iter([b"first"])).url
    with pytest.raises(StoreError):
        rbd_store.add("img-dup", iter([b"second"]))
    assert b"".join(rbd_store.get(url)) == b"first"
    assert [e.complete for e in rbd_store.list_data()] == [True]


def _rbd_conf(tmp_path: Path, env: dict[str, str], extra: str = "") -> Path:
    path = tmp_path / "glance-api.conf"
    path.write_text(f"""[DEFAULT]
data_dir = {tmp_path}
enabled_backends = ceph:rbd, local:file
[glance_store]
default_backend = ceph
[ceph]
rbd_store_pool = {env['CEPH_POOL']}
rbd_store_user = {env['CEPH_USER']}
rbd_store_ceph_conf = {env['CEPH_CONF']}
rbd_store_chunk_size = 4
rados_connect_timeout = 10
{extra}
""")
    return path


def test_glance_options_and_the_production_user(tmp_path, ceph):
    """Built from a glance-api.conf section; the glance user (caps `profile rbd
    pool=images`) writes, reads and deletes in the images pool."""
    conf = load_config([str(_rbd_conf(tmp_path, ceph))])
    stores = registry.from_conf(conf)
    store = stores.get("ceph")
    assert store.type == "rbd" and store.properties()["chunk_size"] == 4
    stored = store.add("img-glance-user", iter([b"q" * 10_000]))
    try:
        assert stored.url.startswith(f"rbd://{ceph['CEPH_FSID']}/images/img-glance-user/")
        assert stores.for_url(stored.url) is store
        assert b"".join(store.get(stored.url)) == b"q" * 10_000
    finally:
        store.delete(stored.url)


def test_single_store_form(tmp_path, ceph):
    path = tmp_path / "glance-api.conf"
    path.write_text(f"""[DEFAULT]
data_dir = {tmp_path}
[glance_store]
stores = rbd, file, http
default_store = rbd
rbd_store_pool = {ceph['CEPH_POOL']}
rbd_store_user = {ceph['CEPH_USER']}
rbd_store_ceph_conf = {ceph['CEPH_CONF']}
""")
    stores = registry.from_conf(load_config([str(path)]))
    assert stores.default_name == "rbd" and stores.default.type == "rbd"
    assert sorted(stores.names()) == ["file", "http", "rbd"]


def test_missing_bindings_stop_start_up_with_a_clear_message(tmp_path):
    """Glance's pain: uploads failing with "'NoneType' object has no attribute 'Rados'".
    Here the service does not start, and says what to install."""
    conf_path = tmp_path / "glance-api.conf"
    conf_path.write_text(f"[DEFAULT]\ndata_dir = {tmp_path}\nenabled_backends = ceph:rbd\n")
    code = (
        "import sys; sys.modules['rados'] = None; sys.modules['rbd'] = None\n"
        "from glimpse.config import load_config\n"
        "from glimpse.stores import registry\n"
        f"registry.from_conf(load_config([{str(conf_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode != 0
    assert "RbdBindingsMissing" in proc.stderr
    assert "python3-rados and python3-rbd" in proc.stderr


def test_transfers_keep_memory_flat(rbd_store):
    """256 MiB in and out in 1 MiB pieces: the process grows by well under what the
    transfer moves (before the driver bounded its pieces and malloc arenas it grew by
    about 90 MiB writing and 100-165 MiB reading)."""
    import os

    from glimpse.stores.rbd import RbdStore

    # Glance's default object size (8 MiB), on the conformance suite's emptied pool.
    store = RbdStore("rbd", pool=rbd_store.pool, user=rbd_store.user,
                     conffile=rbd_store.conffile, chunk_mib=8, connect_timeout=30)
    block = os.urandom(1024 * 1024)
    with PeakRss() as write:
        stored = store.add("memory", (bytes(block) for _ in range(256)))
    assert stored.size == 256 * 1024 * 1024
    with PeakRss() as read:
        got = sum(len(piece) for piece in store.get(stored.url))
    assert got == stored.size
    assert write.growth < 80, f"writing grew RSS by {write.growth:.0f} MiB"
    store.delete(stored.url)
    assert read.growth < 60, f"reading grew RSS by {read.growth:.0f} MiB"
