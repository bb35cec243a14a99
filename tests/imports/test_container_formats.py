"""Which data is inspected as its disk_format: only a ``bare`` container's (Glance).

A VMware appliance (``disk_format=vmdk``, ``container_format=ova``: a tar holding
the .ovf descriptor and a streamOptimized .vmdk, made here with qemu-img and
tar) is a container, not a disk: it is stored as it is and gets no virtual
size. Bare data that is not its disk_format is refused with 415.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.domain.test_diskformat import make_disk, qemu_virtual_size
from tests.imports.conftest import image, new_image, stage, start_import, wait_task_done

OCTET = {"Content-Type": "application/octet-stream"}

OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="disk1.vmdk" ovf:id="file1"/></References>
  <DiskSection><Info>Virtual disks</Info>
    <Disk ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1"
          ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="appliance"><Info>A test appliance</Info></VirtualSystem>
</Envelope>
"""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; CI must provide it", pytrace=False)
        pytest.skip(f"{name} is not installed")
    assert found is not None
    return found


def stream_optimized_vmdk(tmp_path: Path) -> Path:
    raw = tmp_path / "disk1.raw"
    raw.write_bytes(os.urandom(512 * 1024) + bytes(3 * 1024 * 1024 + 512 * 1024))
    vmdk = tmp_path / "disk1.vmdk"
    subprocess.run([_tool("qemu-img"), "convert", "-q", "-f", "raw", "-O", "vmdk",
                    "-o", "subformat=streamOptimized", str(raw), str(vmdk)], check=True)
    return vmdk


def make_ova(tmp_path: Path) -> Path:
    """An OVA as VMware writes it: a tar with the .ovf first, then the disk."""
    vmdk = stream_optimized_vmdk(tmp_path)
    (tmp_path / "appliance.ovf").write_text(OVF)
    ova = tmp_path / "appliance.ova"
    subprocess.run([_tool("tar"), "-cf", str(ova), "-C", str(tmp_path), "--format=ustar",
                    "appliance.ovf", vmdk.name], check=True)
    return ova


def _put(client, image_id: str, data: bytes):  # noqa: ANN001, ANN202
    return client.put(f"/v2/images/{image_id}/file", content=data, headers=OCTET)


def test_ova_with_vmdk_disk_format_is_stored_uninspected(make_app, tmp_path):
    data = make_ova(tmp_path).read_bytes()
    client = make_app()
    image_id = new_image(client, disk_format="vmdk", container_format="ova")
    r = _put(client, image_id, data)
    assert r.status_code == 204, r.text
    img = image(client, image_id)
    assert img["status"] == "active"
    assert img["virtual_size"] is None
    assert img["size"] == len(data)
    assert img["checksum"] == hashlib.md5(data).hexdigest()
    assert client.get(f"/v2/images/{image_id}/file").content == data


def test_the_same_vmdk_bare_is_inspected(make_app, tmp_path):
    vmdk = stream_optimized_vmdk(tmp_path)
    client = make_app()
    image_id = new_image(client, disk_format="vmdk", container_format="bare")
    assert _put(client, image_id, vmdk.read_bytes()).status_code == 204
    assert image(client, image_id)["virtual_size"] == qemu_virtual_size(vmdk) == 4 * 1024 * 1024


@pytest.mark.parametrize(("disk_format", "container_format"), [
    ("vmdk", "ovf"), ("qcow2", "docker"), ("raw", "ova"), ("aki", "aki"), ("ami", "ami"),
])
def test_non_bare_containers_are_not_inspected(make_app, tmp_path, disk_format,
                                               container_format):
    # Data that would be refused as a bare disk of that format is accepted in a container.
    data = os.urandom(100_000)
    client = make_app()
    image_id = new_image(client, disk_format=disk_format, container_format=container_format)
    assert _put(client, image_id, data).status_code == 204
    img = image(client, image_id)
    assert img["status"] == "active" and img["virtual_size"] is None


def test_ova_through_glance_direct_import(make_app, tmp_path):
    data = make_ova(tmp_path).read_bytes()
    client = make_app()
    image_id = new_image(client, disk_format="vmdk", container_format="ova")
    assert stage(client, image_id, data).status_code == 204
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}}).status_code \
        == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "success", task["message"]
    img = image(client, image_id)
    assert img["status"] == "active" and img["virtual_size"] is None
    assert img["size"] == len(data)


@pytest.mark.parametrize(("real", "claimed", "message"), [
    ("qcow2", "vmdk", "does not match disk_format vmdk"),
    ("vmdk", "qcow2", "does not match disk_format qcow2"),
    (None, "vmdk", "does not match disk_format vmdk"),       # random bytes
    ("qcow2", "raw", "does not match disk_format raw: it looks like qcow2"),  # stricter
])
def test_bare_mismatch_is_415_and_image_stays_queued(make_app, tmp_path, real, claimed,
                                                     message):
    data = make_disk(tmp_path, real).read_bytes() if real else os.urandom(300_000)
    client = make_app()
    image_id = new_image(client, disk_format=claimed, container_format="bare")
    r = _put(client, image_id, data)
    assert r.status_code == 415, r.text
    assert r.json()["title"] == "Unsupported Media Type"
    assert message in r.json()["message"]
    img = image(client, image_id)
    assert img["status"] == "queued" and img["size"] is None
    # The same data staged: 415 as well, nothing left staged.
    other = new_image(client, disk_format=claimed, container_format="bare")
    r = stage(client, other, data)
    assert r.status_code == 415, r.text
    assert image(client, other)["status"] == "queued"
