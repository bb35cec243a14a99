"""The file store's glance_store options and the registry's config forms."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from glimpse.config import load_config
from glimpse.stores import registry
from glimpse.stores.base import StoreForbidden

MIB = 1024 * 1024


def _stores(tmp_path: Path, text: str) -> registry.StoreRegistry:
    path = tmp_path / "glance-api.conf"
    path.write_text(f"[DEFAULT]\ndata_dir = {tmp_path}\n" + text)
    return registry.from_conf(load_config([str(path)]))


def test_datadirs_highest_priority_with_room_wins(tmp_path, monkeypatch):
    low, high, higher_full = tmp_path / "low", tmp_path / "high", tmp_path / "full"
    stores = _stores(tmp_path, f"""enabled_backends = fs:file
[fs]
filesystem_store_datadirs = {low}:10
filesystem_store_datadirs = {high}:200
filesystem_store_datadirs = {higher_full}:300
""")
    from glimpse.stores import file as file_mod

    real = file_mod._free
    monkeypatch.setattr(file_mod, "_free",
                        lambda path: 0 if path == str(higher_full) else real(path))
    store = stores.get("fs")
    stored = store.add("img-prio", iter([b"data"]))
    assert Path(store.local_path(stored.url)).parent == high
    assert store.owns(stored.url) and b"".join(store.get(stored.url)) == b"data"
    assert store.properties()["data_dirs"] == [f"{low}:10", f"{high}:200", f"{higher_full}:300"]


def test_file_perm_chunk_size_and_thin_provisioning(tmp_path):
    stores = _stores(tmp_path, f"""enabled_backends = fs:file
[fs]
filesystem_store_datadir = {tmp_path / 'fs'}
filesystem_store_file_perm = 640
filesystem_store_chunk_size = 4096
filesystem_thin_provisioning = true
""")
    store = stores.get("fs")
    data = [b"head" * 1024, bytes(64 * MIB), b"tail" * 1024]
    stored = store.add("img-thin", iter(data))
    path = store.local_path(stored.url)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.stat(path).st_size == stored.size == 64 * MIB + 8192
    assert os.stat(path).st_blocks * 512 < 4 * MIB  # the zero run is a hole
    pieces = list(store.get(stored.url, 0, 3 * 4096))
    assert [len(p) for p in pieces] == [4096, 4096, 4096]
    assert b"".join(store.get(stored.url, 4096, 10)) == bytes(10)
    assert store.properties() == {"data_dir": str(tmp_path / "fs"), "chunk_size": 4096,
                                  "thin_provisioning": True}


def test_metadata_file_goes_into_location_metadata(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"id": "nfs-share-1", "mountpoint": str(tmp_path / "fs")}))
    stores = _stores(tmp_path, f"""enabled_backends = fs:file
[fs]
filesystem_store_datadir = {tmp_path / 'fs'}
filesystem_store_metadata_file = {meta}
""")
    stored = stores.get("fs").add("img-meta", iter([b"x"]))
    assert stored.metadata == {"id": "nfs-share-1", "mountpoint": str(tmp_path / "fs")}


def test_bad_metadata_file_stops_start_up(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"id": 7}))
    with pytest.raises(ValueError, match="'id' and 'mountpoint'"):
        _stores(tmp_path, f"""enabled_backends = fs:file
[fs]
filesystem_store_metadata_file = {meta}
""")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory that refuses writes: a read-only tmpfs when root (permission bits do
    not stop root), else mode 0555."""
    target = tmp_path / "mnt"
    target.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)],
                       check=True)
        yield target
        subprocess.run(["umount", str(target)], check=True)
    else:
        target.chmod(0o555)
        yield target
        target.chmod(0o755)


def test_unwritable_data_dir_makes_the_store_read_only(tmp_path, read_only_dir):
    """Seed 001 §1.2: a share that failed to mount under a read-only mount point.
    The store says so and writes nowhere else."""
    datadir = read_only_dir / "images"
    stores = _stores(tmp_path, f"""enabled_backends = good:file, nfs:file
[glance_store]
default_backend = good
[good]
filesystem_store_datadir = {tmp_path / 'good'}
[nfs]
filesystem_store_datadir = {datadir}
""")
    store = stores.get("nfs")
    assert store.read_only and "not writable" in store.read_only_reason
    assert "nfs" not in stores.writable_names()
    with pytest.raises(StoreForbidden, match="read-only"):
        store.add("img-ro", iter([b"x"]))
    assert not datadir.exists()
    assert sorted(os.listdir(tmp_path / "good")) == []


def test_single_store_form_and_the_old_default_spelling(tmp_path, caplog):
    """[DEFAULT] default_store / filesystem_store_datadir (seed 004 §5.4.4) still work,
    with a deprecation warning naming [glance_store]."""
    caplog.set_level(logging.WARNING)
    stores = _stores(tmp_path, f"""default_store = file
filesystem_store_datadir = {tmp_path / 'old'}
""")
    assert stores.default_name == "file"
    stored = stores.default.add("img-old", iter([b"x"]))
    assert Path(stores.default.local_path(stored.url)).parent == tmp_path / "old"
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "deprecated" in warned and "glance_store" in warned


def test_single_store_builds_every_listed_type(tmp_path):
    stores = _stores(tmp_path, "[glance_store]\nstores = file, http\ndefault_store = file\n")
    assert sorted(stores.names()) == ["file", "http"]
    assert stores.writable_names() == ["file"]
    assert stores.for_url("http://127.0.0.1:9/x").type == "http"


def test_unknown_store_type_is_a_clear_start_up_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown store type 'tape'"):
        _stores(tmp_path, "enabled_backends = t:tape\n")
