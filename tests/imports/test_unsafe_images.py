"""Unsafe images beyond tests/domain/test_diskformat.py and tests/imports/test_plugins.py:
qcow2 whose backing file is a JSON spec or a host path, vmdk extents naming host
files (also inside a real sparse vmdk's embedded descriptor), hybrid ISOs with a
GPT, vhdx with a broken region table, decompression bombs, and qemu-img info run
under an address-space and CPU-time limit.

Every image is made here, with qemu-img or byte by byte; each is refused at
upload (415, the image left queued) and by the image_conversion plugin, and no
host file is ever read into an image.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import time
from pathlib import Path

import pytest

from glimpse.domain.diskformat import DiskFormatInspector
from glimpse.errors import BadRequest, RequestEntityTooLarge, UnsupportedMediaType
from glimpse.imports.plugins import image_conversion
from glimpse.imports.plugins.image_conversion import ImageConversion
from glimpse.imports.plugins.image_decompression import ImageDecompression
from tests.conftest import as_project
from tests.imports.test_plugins import MIB, files_in, import_data, make_conf, qemu

OWNER = as_project("p-unsafe")


@pytest.fixture
def db_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """SQLite only: what is under test does not depend on the database (the
    rollback of a refused upload is covered on every one by tests/api/test_data.py)."""
    path = tmp_path / "glimpse.sqlite"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"

OCTET = {**OWNER, "Content-Type": "application/octet-stream"}


def inspect(disk_format: str, data: bytes) -> int | None:
    inspector = DiskFormatInspector(disk_format)
    for offset in range(0, len(data), 65536):
        inspector.feed(data[offset:offset + 65536])
    return inspector.finish()


def upload(client, disk_format: str, data: bytes):  # noqa: ANN001, ANN201
    r = client.post("/v2/images", json={"disk_format": disk_format,
                                        "container_format": "bare"}, headers=OWNER)
    image_id = r.json()["id"]
    return image_id, client.put(f"/v2/images/{image_id}/file", content=data, headers=OCTET)


def assert_refused_everywhere(client, tmp_path: Path, disk_format: str, data: bytes,  # noqa: ANN001
                              words: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=words):
        inspect(disk_format, data)
    image_id, r = upload(client, disk_format, data)
    assert r.status_code == 415, r.text
    doc = client.get(f"/v2/images/{image_id}", headers=OWNER).json()
    assert doc["status"] == "queued" and doc["size"] is None, doc
    staged = tmp_path / f"staged.{disk_format}"
    staged.write_bytes(data)
    with pytest.raises((UnsupportedMediaType, BadRequest)):
        ImageConversion(make_conf(tmp_path)).run(import_data(staged, disk_format))
    assert not Path(f"{staged}.raw").exists()


# ---------------------------------------------------------------- qcow2


@pytest.mark.parametrize("backing", [
    'json:{"driver":"file","filename":"/etc/passwd"}',
    'json:{"file":{"driver":"http","url":"http://169.254.169.254/latest"}}',
    "/etc/shadow", "../../../../etc/passwd", "nbd://127.0.0.1:10809/export",
])
def test_qcow2_backing_specs_are_refused(client, tmp_path, backing):
    top = tmp_path / "top.qcow2"
    # -u: qemu-img must not open the backing file while making the image.
    qemu("create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", str(top), "1M")
    assert_refused_everywhere(client, tmp_path, "qcow2", top.read_bytes(), "backing_file")


def test_qcow2_data_file_naming_a_host_path_is_refused(client, tmp_path):
    image = tmp_path / "df.qcow2"
    outside = tmp_path / "d" / "x.raw"  # same length as the host path written below
    outside.parent.mkdir()
    qemu("create", "-q", "-f", "qcow2", "-o", f"data_file={outside},data_file_raw=on",
         str(image), "1M")
    data = image.read_bytes()
    host_path = b"/etc/hostname".ljust(len(str(outside)), b"\0")[:len(str(outside))]
    assert str(outside).encode() in data
    data = data.replace(str(outside).encode(), host_path)
    assert_refused_everywhere(client, tmp_path, "qcow2", data, "data_file")


# ---------------------------------------------------------------- vmdk


def _descriptor(create_type: str, *extents: str) -> bytes:
    lines = ["# Disk DescriptorFile", "version=1", "CID=fffffffe", "parentCID=ffffffff",
             f'createType="{create_type}"', "", "# Extent description", *extents, "",
             'ddb.adapterType = "ide"']
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(("create_type", "extents"), [
    ("monolithicFlat", ['RW 2048 FLAT "/etc/passwd" 0']),
    ("monolithicFlat", ['RW 2048 FLAT "../../../etc/shadow" 0']),
    ("vmfs", ['RW 2048 VMFS "/dev/sda"']),
    ("vmfsRaw", ['RW 2048 VMFSRAW "/dev/sda"']),
    ("twoGbMaxExtentSparse", ['RW 1024 SPARSE "a-s001.vmdk"', 'RW 1024 SPARSE "/etc/passwd"']),
    ("monolithicSparse", ['RW 2048 SPARSE "disk.vmdk"', 'RW 2048 FLAT "/etc/passwd" 0']),
    ("custom", ['RW 2048 FLAT "/proc/self/environ" 0']),
])
def test_vmdk_descriptors_naming_host_files_are_refused(client, tmp_path, create_type,
                                                        extents):
    assert_refused_everywhere(client, tmp_path, "vmdk", _descriptor(create_type, *extents),
                              "unsafe|not match")


def test_sparse_vmdk_with_an_extra_extent_in_its_embedded_descriptor(client, tmp_path):
    """A real monolithicSparse image whose embedded descriptor gains a second extent
    naming a host file: its header is genuine, only the descriptor lies."""
    image = tmp_path / "s.vmdk"
    qemu("create", "-q", "-f", "vmdk", str(image), "1M")
    data = bytearray(image.read_bytes())
    own = b'RW 2048 SPARSE "s.vmdk"\n'
    at = data.find(own)
    assert at > 0
    evil = b'RW 2048 SPARSE "s.vmdk"\nRW 2048 FLAT "/etc/passwd" 0\n'
    tail_at = at + len(own)
    tail = bytes(data[tail_at:data.find(b"\0", tail_at)])
    replacement = evil + tail
    data[at:at + len(replacement)] = replacement
    assert_refused_everywhere(client, tmp_path, "vmdk", bytes(data), "unsafe")


# ---------------------------------------------------------------- ISO with a GPT


def hybrid_iso(extra_mbr_partition: bool = False) -> bytes:
    """An ISO 9660 image that is also a GPT disk (what bootable ISOs look like)."""
    blocks = 64
    data = bytearray(blocks * 2048)
    # Protective MBR: one 0xEE partition from LBA 1, the 0x55AA signature.
    entry = struct.pack("<B3sB3sII", 0, b"\0\2\0", 0xEE, b"\xff\xff\xff", 1,
                        blocks * 4 - 1)
    data[446:462] = entry
    if extra_mbr_partition:  # a second partition next to the protective one
        data[462:478] = struct.pack("<B3sB3sII", 0x80, b"\0\2\0", 0x83, b"\xff\xff\xff",
                                    2048, 4096)
    data[510:512] = b"\x55\xaa"
    data[512:520] = b"EFI PART"
    # Primary volume descriptor at 32 KiB, then the set terminator.
    pvd = bytearray(2048)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[80:88] = struct.pack("<I", blocks) + struct.pack(">I", blocks)
    pvd[128:132] = struct.pack("<H", 2048) + struct.pack(">H", 2048)
    data[32768:34816] = pvd
    data[34816:34823] = b"\xffCD001\x01"
    return bytes(data)


def test_hybrid_iso_is_an_iso_and_nothing_else(client, tmp_path):
    data = hybrid_iso()
    assert inspect("iso", data) == len(data)
    image_id, r = upload(client, "iso", data)
    assert r.status_code == 204, r.text
    for claimed in ("qcow2", "vmdk", "vhdx"):
        with pytest.raises(UnsupportedMediaType, match="does not match"):
            inspect(claimed, data)
    # Claimed raw, the conversion plugin sees the ISO inside and refuses it.
    staged = tmp_path / "staged"
    staged.write_bytes(data)
    with pytest.raises(BadRequest, match="ISO"):
        ImageConversion(make_conf(tmp_path)).run(import_data(staged, "raw"))


def test_hybrid_iso_claimed_qcow2_is_refused_at_upload(client):
    image_id, r = upload(client, "qcow2", hybrid_iso(extra_mbr_partition=True))
    assert r.status_code == 415, r.text
    assert client.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "queued"


# ---------------------------------------------------------------- vhdx


def _vhdx(tmp_path: Path) -> bytearray:
    image = tmp_path / "d.vhdx"
    qemu("create", "-q", "-f", "vhdx", str(image), "1M")
    return bytearray(image.read_bytes())


REGION_TABLE = 192 * 1024


@pytest.mark.parametrize("damage", ["metadata-outside", "huge-count", "bad-signature",
                                    "metadata-garbage"])
def test_vhdx_with_bad_regions_is_refused(client, tmp_path, damage):
    data = _vhdx(tmp_path)
    table = REGION_TABLE
    count = struct.unpack("<I", data[table + 8:table + 12])[0]
    assert data[table:table + 4] == b"regi" and count == 2
    metadata_entry = None
    for i in range(count):
        entry = table + 16 + 32 * i
        offset = struct.unpack("<Q", data[entry + 16:entry + 24])[0]
        if data[offset:offset + 8] == b"metadata":
            metadata_entry = entry
    assert metadata_entry is not None
    if damage == "metadata-outside":  # the metadata region lies past the end of the file
        data[metadata_entry + 16:metadata_entry + 24] = struct.pack("<Q", 1 << 40)
    elif damage == "huge-count":
        data[table + 8:table + 12] = struct.pack("<I", 0xFFFFFFFF)
    elif damage == "bad-signature":
        data[table:table + 4] = b"nope"
    else:
        offset = struct.unpack("<Q", data[metadata_entry + 16:metadata_entry + 24])[0]
        data[offset:offset + 8] = b"notmeta!"
    started = time.monotonic()
    with pytest.raises(UnsupportedMediaType):
        inspect("vhdx", bytes(data))
    assert time.monotonic() - started < 10
    image_id, r = upload(client, "vhdx", bytes(data))
    assert r.status_code == 415, r.text
    staged = tmp_path / "staged.vhdx"
    staged.write_bytes(bytes(data))
    with pytest.raises((UnsupportedMediaType, BadRequest)):
        ImageConversion(make_conf(tmp_path)).run(import_data(staged, "vhdx"))


# ---------------------------------------------------------------- decompression bombs


def _gzip_bomb(path: Path, total: int) -> int:
    """``total`` bytes of zeros as concatenated gzip members (a valid gzip file),
    written without ever holding them: returns the file's size."""
    member = gzip.compress(b"\0" * (64 * MIB), compresslevel=9)
    with path.open("wb") as out:
        for _ in range(total // (64 * MIB)):
            out.write(member)
    return path.stat().st_size


def _zlib_zip_bomb(path: Path, total: int) -> None:
    """One zip entry of ``total`` zero bytes (deflated), streamed."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("disk.raw", "w", force_zip64=True) as entry:
        zeros = b"\0" * (16 * MIB)
        for _ in range(total // (16 * MIB)):
            entry.write(zeros)


@pytest.mark.parametrize("kind", ["gzip", "zip"])
def test_decompression_bomb_stops_at_the_size_limit(tmp_path, kind):
    packed = tmp_path / "staged"
    total = 16 * 1024 * MIB  # 16 GiB once inflated
    if kind == "gzip":
        size = _gzip_bomb(packed, total)
        assert size < 20 * MIB
    else:
        _zlib_zip_bomb(packed, 256 * MIB)  # deflate is slower to build: 256 MiB
    plugin = ImageDecompression(make_conf(tmp_path, image_size_cap=32 * MIB))
    started = time.monotonic()
    with pytest.raises(RequestEntityTooLarge, match="image_size_cap"):
        plugin.run(import_data(packed))
    # Stopped near the limit: inflating everything would take far longer.
    assert time.monotonic() - started < 15
    assert files_in(tmp_path) == {"staged"}, "no partial output is left"


# ---------------------------------------------------------------- qemu-img under limits


def _stand_in(tmp_path: Path, body: str) -> str:
    """A stand-in for qemu-img (a Python script) that reports or tests its limits:
    what is under test is how the plugin runs the program, not qemu-img."""
    script = tmp_path / "fake-qemu-img"
    script.write_text("#!/usr/bin/env python3\nimport json, resource, sys\n" + body)
    script.chmod(0o755)
    return str(script)


def test_qemu_img_info_runs_under_address_space_and_cpu_limits(tmp_path):
    plugin = ImageConversion(make_conf(tmp_path))
    plugin.qemu_img = _stand_in(tmp_path, (
        "print(json.dumps({'format': 'raw', 'virtual-size': 1,\n"
        "    'as': resource.getrlimit(resource.RLIMIT_AS)[0],\n"
        "    'cpu': resource.getrlimit(resource.RLIMIT_CPU)[0]}))\n"))
    info = plugin._qemu_info(str(tmp_path / "any"), "raw")
    assert info["as"] == image_conversion.INFO_ADDRESS_SPACE == 1024 * MIB
    assert info["cpu"] == image_conversion.INFO_CPU_SECONDS == 30


def test_qemu_img_info_that_wants_too_much_memory_fails_cleanly(tmp_path):
    plugin = ImageConversion(make_conf(tmp_path))
    plugin.qemu_img = _stand_in(tmp_path, "blob = bytearray(2 * 1024 ** 3)\nprint('{}')\n")
    with pytest.raises(BadRequest, match="(?s)Image conversion failed: .*MemoryError"):
        plugin._qemu_info(str(tmp_path / "any"), "raw")


def test_qemu_img_info_that_spins_is_stopped_by_the_cpu_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(image_conversion, "INFO_CPU_SECONDS", 1)
    plugin = ImageConversion(make_conf(tmp_path))
    plugin.qemu_img = _stand_in(tmp_path, "while True:\n    pass\n")
    started = time.monotonic()
    with pytest.raises(BadRequest, match="Image conversion failed"):
        plugin._qemu_info(str(tmp_path / "any"), "raw")
    assert time.monotonic() - started < 20  # the CPU limit, not the 60 s timeout


def test_real_qemu_img_info_works_under_the_limits(tmp_path):
    image = tmp_path / "ok.qcow2"
    qemu("create", "-q", "-f", "qcow2", str(image), "5M")
    info = ImageConversion(make_conf(tmp_path))._qemu_info(str(image), "qcow2")
    assert info["format"] == "qcow2" and info["virtual-size"] == 5 * MIB

