"""DiskFormatInspector against real images made by qemu-img, and against raw bytes.

qemu-img is required: in CI (CI=true) its absence fails these tests, elsewhere
they are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from glimpse.domain.diskformat import DiskFormatInspector
from glimpse.errors import UnsupportedMediaType
from tests import tools

MIB = 1024 * 1024


def require_qemu_img() -> str:
    """Path of qemu-img; fails the test in CI and skips it elsewhere when absent."""
    return tools.qemu_img()


def make_disk(tmp_path: Path, fmt: str, size: str = "1M", options: str | None = None,
              name: str | None = None) -> Path:
    """Create an empty disk image with ``qemu-img create -f fmt``; return its path."""
    qemu_img = require_qemu_img()
    path = tmp_path / (name or f"disk-{fmt}-{size}.{fmt}")
    cmd = [qemu_img, "create", "-q", "-f", fmt]
    if options:
        cmd += ["-o", options]
    subprocess.run([*cmd, str(path), size], check=True, capture_output=True, cwd=tmp_path)
    return path


def qemu_virtual_size(path: Path) -> int:
    out = subprocess.run([require_qemu_img(), "info", "--output=json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(json.loads(out)["virtual-size"])


def inspect(claimed: str | None, data: bytes, chunk: int = 65536,
            enforce_match: bool = True) -> int | None:
    inspector = DiskFormatInspector(claimed)
    for start in range(0, len(data), chunk):
        inspector.feed(data[start:start + chunk])
    return inspector.finish(enforce_match)


# ---------------------------------------------------------------- real images


@pytest.mark.parametrize(("fmt", "disk_format"), [
    ("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vhdx", "vhdx"), ("vdi", "vdi"), ("vpc", "vhd"),
])
def test_real_images_report_qemu_virtual_size(tmp_path, fmt, disk_format):
    path = make_disk(tmp_path, fmt, "3M")
    assert inspect(disk_format, path.read_bytes()) == qemu_virtual_size(path)


@pytest.mark.parametrize("chunk", [511, 4096, 10 * MIB])
def test_chunk_boundaries_do_not_matter(tmp_path, chunk):
    data = make_disk(tmp_path, "qcow2", "2M").read_bytes()
    assert inspect("qcow2", data, chunk=chunk) == 2 * MIB


def test_header_fed_one_byte_at_a_time(tmp_path):
    data = make_disk(tmp_path, "qcow2", "2M").read_bytes()
    inspector = DiskFormatInspector("qcow2")
    for i in range(1024):
        inspector.feed(data[i:i + 1])
    inspector.feed(data[1024:])
    assert inspector.finish() == 2 * MIB


def test_stream_optimized_vmdk_is_accepted(tmp_path):
    path = make_disk(tmp_path, "vmdk", "1M", "subformat=streamOptimized")
    assert inspect("vmdk", path.read_bytes()) == MIB


def test_raw_virtual_size_is_the_data_size():
    data = os.urandom(12345)
    assert inspect("raw", data) == 12345


def test_raw_with_an_mbr_partition_table_is_still_raw():
    sector = bytearray(512)
    sector[446 + 4] = 0x83           # one Linux partition entry
    sector[446 + 8:446 + 12] = (1).to_bytes(4, "little")
    sector[446 + 12:446 + 16] = (100).to_bytes(4, "little")
    sector[510:512] = b"\x55\xaa"
    data = bytes(sector) + bytes(100 * 512)
    assert inspect("raw", data) == len(data)


def test_not_inspectable_formats_are_not_judged(tmp_path):
    data = make_disk(tmp_path, "qcow2").read_bytes()
    assert inspect("ami", data) is None
    assert inspect(None, os.urandom(1000)) is None


# ---------------------------------------------------------------- mismatch


@pytest.mark.parametrize("claimed", ["qcow2", "vmdk", "vhdx", "vdi", "vhd", "iso"])
def test_random_bytes_claimed_as_a_format_are_refused(claimed):
    with pytest.raises(UnsupportedMediaType, match="does not match"):
        inspect(claimed, os.urandom(256 * 1024))


@pytest.mark.parametrize(("fmt", "claimed"), [
    ("qcow2", "raw"), ("vmdk", "raw"), ("vhdx", "raw"), ("vdi", "raw"),
    ("qcow2", "vmdk"), ("vmdk", "qcow2"), ("vdi", "vhdx"),
])
def test_real_image_claimed_as_another_format_is_refused(tmp_path, fmt, claimed):
    data = make_disk(tmp_path, fmt).read_bytes()
    with pytest.raises(UnsupportedMediaType, match="does not match"):
        inspect(claimed, data)


def test_mismatch_is_tolerated_when_not_enforced(tmp_path):
    data = make_disk(tmp_path, "qcow2").read_bytes()
    assert inspect("vmdk", data, enforce_match=False) is None
    assert inspect("raw", data, enforce_match=False) == len(data)


def test_truncated_qcow2_header_is_refused():
    with pytest.raises(UnsupportedMediaType):
        inspect("qcow2", b"QFI\xfb\x00\x00\x00\x03")


# ---------------------------------------------------------------- unsafe images


def test_qcow2_with_backing_file_is_refused(tmp_path):
    base = make_disk(tmp_path, "qcow2", name="base.qcow2")
    top = make_disk(tmp_path, "qcow2", options=f"backing_file={base},backing_fmt=qcow2",
                    name="top.qcow2")
    with pytest.raises(UnsupportedMediaType, match="backing_file"):
        inspect("qcow2", top.read_bytes())


def test_qcow2_with_external_data_file_is_refused(tmp_path):
    path = make_disk(tmp_path, "qcow2", options="data_file=external.raw",
                     name="with-data-file.qcow2")
    assert (tmp_path / "external.raw").exists()
    with pytest.raises(UnsupportedMediaType, match="data_file"):
        inspect("qcow2", path.read_bytes())


@pytest.mark.parametrize("subformat", ["monolithicFlat", "twoGbMaxExtentSparse",
                                       "twoGbMaxExtentFlat"])
def test_vmdk_descriptor_subformats_are_refused(tmp_path, subformat):
    path = make_disk(tmp_path, "vmdk", options=f"subformat={subformat}",
                     name=f"{subformat}.vmdk")
    descriptor = path.read_bytes()
    assert b"createType" in descriptor
    with pytest.raises(UnsupportedMediaType, match="unsafe"):
        inspect("vmdk", descriptor)


def test_vmdk_descriptor_pointing_outside_is_refused():
    descriptor = (b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                  b'createType="monolithicSparse"\n'
                  b'RW 2048 SPARSE "/etc/shadow"\n')
    with pytest.raises(UnsupportedMediaType, match="unsafe"):
        inspect("vmdk", descriptor)
