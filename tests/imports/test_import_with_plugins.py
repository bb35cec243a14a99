"""The import flow with plugins configured in glance-image-import.conf beside
the main config file: conversion and metadata injection, end to end."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from tests import tools
from tests.conftest import as_project
from tests.imports.conftest import image, new_image, stage, start_import, wait_task_done

VIRTUAL = 4 * 1024 * 1024


@pytest.fixture
def qcow2(tmp_path) -> bytes:
    qemu_img = tools.qemu_img()
    raw = tmp_path / "guest.raw"
    raw.write_bytes(b"guest sector " * 1000 + b"\0" * (VIRTUAL - 13000))
    out = tmp_path / "guest.qcow2"
    subprocess.run([qemu_img, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True)
    return out.read_bytes()


def test_conversion_and_injection_during_glance_direct(make_app, tmp_path, qcow2):
    (tmp_path / "glance-image-import.conf").write_text(
        "[image_import_opts]\n"
        "image_import_plugins = ['image_conversion', 'inject_image_metadata']\n"
        "[image_conversion]\noutput_format = raw\n"
        "[inject_metadata_properties]\ninject = hw_placement:edge,site:dc1\n")
    client = make_app()
    headers = as_project("plug-p")
    image_id = new_image(client, headers=headers, disk_format="qcow2")
    assert stage(client, image_id, qcow2, headers).status_code == 204
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}},
                        headers).status_code == 202
    task = wait_task_done(client, image_id)
    assert task["status"] == "success", task["message"]
    img = image(client, image_id, headers)
    data = client.get(f"/v2/images/{image_id}/file", headers=headers).content
    assert img["status"] == "active"
    assert img["disk_format"] == "raw"
    assert len(data) == VIRTUAL and data.startswith(b"guest sector ")
    assert img["size"] == VIRTUAL and img["virtual_size"] == VIRTUAL
    assert img["checksum"] == hashlib.md5(data).hexdigest()
    assert img["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert img["hw_placement"] == "edge" and img["site"] == "dc1"
    staging = tmp_path / "data" / "staging"
    assert list(staging.iterdir()) == []
