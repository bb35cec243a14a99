"""The image_conversion plugin: converts imported data with qemu-img (seed 001 §1.4).

Before qemu-img touches the data it is checked twice, as Glance does: by our
format inspector (the bytes must be the claimed disk_format and safe: no qcow2
backing or data file, no vmdk extents naming other files, ...) and by
``qemu-img info`` with the format given explicitly (never probed). Then
``qemu-img convert`` writes ``<path>.<output_format>`` next to the input, the
input is removed, and disk_format becomes the output format (container_format
``bare``); the original format is not kept. Data already in the output format
is left as it is; so are ISO images, as in Glance.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

from oslo_config import cfg

from glimpse.crashpoints import crash_point
from glimpse.domain.diskformat import DiskFormatInspector
from glimpse.errors import BadRequest, RequestEntityTooLarge
from glimpse.imports.plugins.base import ImportData, Plugin

GROUP = "image_conversion"
OUTPUT_FORMATS = ("qcow2", "raw", "vmdk")
# disk_format -> qemu-img's driver name, for the formats qemu-img converts.
QEMU_FORMATS = {
    "raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi",
}
_INFO_TIMEOUT = 60
_READ_CHUNK = 4 * 1024 * 1024
_ISO_SIGNATURES = (b"CD001", b"NSR02", b"NSR03")

conversion_plugin_opts: list[cfg.Opt] = [
    cfg.StrOpt("output_format", default="raw", choices=OUTPUT_FORMATS,
               help="Disk format imported images are converted to."),
    cfg.IntOpt("conversion_timeout", default=3600, min=1,
               help="(Glimpse) Seconds one qemu-img convert may run before the import "
               "fails."),
]


def _inspect(path: str, disk_format: str) -> int | None:
    """Feed the whole file to the inspector; refused (415) if not safe ``disk_format``."""
    inspector = DiskFormatInspector(disk_format)
    with open(path, "rb") as src:
        while chunk := src.read(_READ_CHUNK):
            inspector.feed(chunk)
    return inspector.finish(enforce_match=True)


def _looks_like_iso(path: str) -> bool:
    with open(path, "rb") as src:
        src.seek(32 * 1024)
        descriptor = src.read(6)
    return descriptor[1:6] in _ISO_SIGNATURES


# What ``qemu-img info`` may use, as Glance limits it (1 GiB of address space, 30 s
# of CPU): a crafted header must not make the inspection exhaust the node.
INFO_ADDRESS_SPACE = 1024 * 1024 * 1024
INFO_CPU_SECONDS = 30
# Sets the limits in the child, then becomes the command (no preexec_fn: it is
# not safe in a process with threads).
_LIMITED = ("import os, resource, sys\n"
            "address_space, cpu = int(sys.argv[1]), int(sys.argv[2])\n"
            "resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))\n"
            "resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))\n"
            "os.execv(sys.argv[3], sys.argv[3:])\n")


def limited(args: list[str], address_space: int, cpu_seconds: int) -> list[str]:
    """``args`` run under an address-space and a CPU-time limit."""
    return [sys.executable, "-c", _LIMITED, str(address_space), str(cpu_seconds), *args]


def _run(args: list[str], timeout: int, what: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise BadRequest(f"Image conversion failed: {what} did not finish within "
                         f"{timeout} seconds") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise BadRequest(f"Image conversion failed: {message}")
    return done.stdout


class ImageConversion(Plugin):
    name = "image_conversion"

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        conf.register_opts(conversion_plugin_opts, group=GROUP)

    @classmethod
    def list_opts(cls) -> list[tuple[str, list[cfg.Opt]]]:
        return [(GROUP, list(conversion_plugin_opts))]

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(conf)
        self.output_format: str = conf[GROUP].output_format
        self.timeout: int = conf[GROUP].conversion_timeout
        qemu_img = shutil.which("qemu-img")
        if qemu_img is None:
            raise ValueError("the image_conversion import plugin needs qemu-img "
                             "(Debian package qemu-utils), which is not installed")
        self.qemu_img = qemu_img

    def _qemu_info(self, path: str, qemu_format: str) -> dict:
        out = _run(limited([self.qemu_img, "info", "-f", qemu_format, "--output=json", path],
                           INFO_ADDRESS_SPACE, INFO_CPU_SECONDS),
                   _INFO_TIMEOUT, "qemu-img info")
        try:
            return json.loads(out)
        except ValueError:
            raise BadRequest("Image conversion failed: qemu-img info gave no readable "
                             "answer") from None

    def _check_with_qemu(self, path: str, qemu_format: str) -> dict:
        info = self._qemu_info(path, qemu_format)
        if info.get("format") != qemu_format:
            raise BadRequest(f"Image format mismatch: qemu-img reads the data as "
                             f"{info.get('format', 'unknown')}, not {qemu_format}")
        if "backing-filename" in info or "full-backing-filename" in info:
            raise BadRequest("Image has unsafe content and was refused: "
                             "qcow2 images with a backing file are not allowed")
        specific = (info.get("format-specific") or {}).get("data") or {}
        if specific.get("data-file") is not None:
            raise BadRequest("Image has unsafe content and was refused: "
                             "qcow2 images with an external data-file are not allowed")
        return info

    def run(self, data: ImportData) -> ImportData:
        disk_format = data.disk_format
        if disk_format == "iso":
            _inspect(data.path, "iso")
            return data
        if disk_format is None or disk_format not in QEMU_FORMATS:
            raise BadRequest(f"Image conversion failed: disk_format {disk_format!r} cannot be "
                             f"converted to {self.output_format}")
        qemu_format = QEMU_FORMATS[disk_format]
        _inspect(data.path, disk_format)
        if disk_format == "raw" and _looks_like_iso(data.path):
            # What Glance does: ISO content claimed as another format is refused.
            raise BadRequest("Image data does not match disk_format raw: it is an ISO image")
        info = self._check_with_qemu(data.path, qemu_format)
        if disk_format == self.output_format:
            return data

        cap = int(self.conf.image_size_cap)
        virtual_size = int(info.get("virtual-size") or 0)
        if self.output_format == "raw" and virtual_size > cap:
            raise RequestEntityTooLarge(
                f"Image conversion refused: the raw image would be {virtual_size} bytes, "
                f"more than image_size_cap ({cap} bytes)")
        dest_path = f"{data.path}.{self.output_format}"
        done = False
        try:
            crash_point("import.convert", in_child=True)  # tests: die while qemu-img runs
            _run([self.qemu_img, "convert", "-q", "-f", qemu_format, "-O", self.output_format,
                  data.path, dest_path], self.timeout, "qemu-img convert")
            if os.path.getsize(dest_path) > cap:
                raise RequestEntityTooLarge(
                    f"Image conversion refused: the converted image is larger than "
                    f"image_size_cap ({cap} bytes)")
            _inspect(dest_path, self.output_format)
            done = True
        finally:
            if not done and os.path.isfile(dest_path):
                os.remove(dest_path)
        os.remove(data.path)
        return dataclasses.replace(data, path=dest_path, disk_format=self.output_format,
                                   container_format="bare")
