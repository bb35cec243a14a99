"""Import plugins and their pipeline, on real files with real qemu-img.

qemu-img is required for the conversion tests: in CI (CI=true) its absence
fails them, elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import gzip
import json
import lzma
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from oslo_config import cfg

from glimpse.config import load_config
from glimpse.errors import (
    BadRequest,
    GlimpseError,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)
from glimpse.imports.plugins import PLUGINS, Pipeline, build_pipeline, register_opts
from glimpse.imports.plugins.base import ImportData
from glimpse.imports.plugins.image_conversion import ImageConversion
from glimpse.imports.plugins.image_decompression import ImageDecompression
from glimpse.imports.plugins.inject_image_metadata import InjectImageMetadata
from glimpse.imports.plugins.no_op import NoOp
from tests import tools

MIB = 1024 * 1024


def qemu_img() -> str:
    return tools.qemu_img()


def qemu(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run([qemu_img(), *args], check=True, capture_output=True, text=True,
                          cwd=cwd).stdout


def qemu_info(path: Path | str) -> dict:
    return json.loads(qemu("info", "--output=json", str(path)))


def make_conf(tmp_path: Path, **options: object) -> cfg.ConfigOpts:
    """Configuration with the plugin options registered; options are 'group.name'."""
    conf = load_config(overrides={"data_dir": str(tmp_path / "data")})
    register_opts(conf)
    for key, value in options.items():
        group, _, name = key.rpartition(".")
        conf.set_override(name, value, group=group or None)
    return conf


def import_data(path: Path, disk_format: str | None = "raw", container_format: str = "bare",
                properties: dict[str, str] | None = None,
                roles: tuple[str, ...] = ("member", "reader")) -> ImportData:
    return ImportData(path=str(path), disk_format=disk_format,
                      container_format=container_format, properties=dict(properties or {}),
                      roles=roles, image_id="9b6b6a2e-2b9c-4f1e-8d4a-6a1f0c2d3e4f")


def guest_bytes(size: int = 2 * MIB) -> bytes:
    """Recognisable disk content: a different pattern in every 64 KiB, some zero runs."""
    blocks = []
    for index in range(size // 65536):
        fill = b"\0" * 65536 if index % 3 == 2 else (b"glimpse-%04d-" % index) * 5042
        blocks.append(fill[:65536])
    return b"".join(blocks)


@pytest.fixture
def raw_disk(tmp_path: Path) -> tuple[Path, bytes]:
    content = guest_bytes()
    path = tmp_path / "source.raw"
    path.write_bytes(content)
    return path, content


def staged(tmp_path: Path, source: Path, fmt: str, name: str = "staged",
           options: str | None = None) -> Path:
    """``source`` (raw) converted by qemu-img to ``fmt``, as a staging file would hold it."""
    dest = tmp_path / name
    extra = ["-o", options] if options else []
    qemu("convert", "-q", "-f", "raw", "-O", fmt, *extra, str(source), str(dest))
    return dest


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


# ------------------------------------------------------------------ image_conversion


@pytest.mark.parametrize(("qemu_format", "disk_format"), [
    ("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vpc", "vhd"), ("vhdx", "vhdx"), ("vdi", "vdi"),
])
def test_conversion_to_raw_keeps_the_guest_disk(tmp_path, raw_disk, qemu_format, disk_format):
    source, content = raw_disk
    path = staged(tmp_path, source, qemu_format)
    virtual_size = qemu_info(path)["virtual-size"]
    plugin = ImageConversion(make_conf(tmp_path))

    result = plugin.run(import_data(path, disk_format, container_format="ovf",
                                    properties={"os_distro": "debian"}))

    assert result.disk_format == "raw"
    assert result.container_format == "bare"
    assert result.properties == {"os_distro": "debian"}
    assert result.path == f"{path}.raw"
    assert not path.exists(), "the original format must not be kept"
    converted = Path(result.path).read_bytes()
    assert len(converted) == virtual_size
    # vpc rounds the disk up to its CHS geometry; the guest data is the same.
    assert converted[:len(content)] == content
    assert converted[len(content):].count(0) == len(converted) - len(content)


def test_conversion_to_qcow2_output_format(tmp_path, raw_disk):
    source, content = raw_disk
    plugin = ImageConversion(make_conf(tmp_path, **{"image_conversion.output_format": "qcow2"}))
    result = plugin.run(import_data(source, "raw"))
    assert result.disk_format == "qcow2"
    info = qemu_info(result.path)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == len(content)
    assert not source.exists()
    back = tmp_path / "back.raw"
    qemu("convert", "-q", "-f", "qcow2", "-O", "raw", result.path, str(back))
    assert back.read_bytes() == content


def test_data_already_in_the_output_format_is_left_alone(tmp_path, raw_disk):
    source, content = raw_disk
    data = import_data(source, "raw", container_format="ovf")
    result = ImageConversion(make_conf(tmp_path)).run(data)
    assert result == data
    assert source.read_bytes() == content
    assert files_in(tmp_path) == {"source.raw"}


def test_iso_images_are_not_converted(tmp_path):
    iso = tmp_path / "disk.iso"
    iso.write_bytes(b"\0" * 32768 + b"\x01CD001\x01" + b"\0" * (2048 - 7) + b"\0" * 65536)
    data = import_data(iso, "iso")
    assert ImageConversion(make_conf(tmp_path)).run(data) == data
    assert iso.exists()


@pytest.mark.parametrize(("qemu_format", "claimed"), [
    ("raw", "qcow2"),      # raw bytes claimed to be qcow2
    ("qcow2", "raw"),      # qcow2 bytes claimed to be raw
    ("qcow2", "vmdk"),
    ("vmdk", "qcow2"),
])
def test_data_that_is_not_its_disk_format_is_refused(tmp_path, raw_disk, qemu_format, claimed):
    source, _ = raw_disk
    path = source if qemu_format == "raw" else staged(tmp_path, source, qemu_format)
    before = files_in(tmp_path)
    with pytest.raises(UnsupportedMediaType, match=f"does not match disk_format {claimed}"):
        ImageConversion(make_conf(tmp_path)).run(import_data(path, claimed))
    assert files_in(tmp_path) == before, "the input stays, no output is left behind"


def test_iso_claimed_as_raw_is_refused(tmp_path):
    iso = tmp_path / "disk.iso"
    iso.write_bytes(b"\0" * 32768 + b"\x01CD001\x01" + b"\0" * 100000)
    with pytest.raises(BadRequest, match="ISO"):
        ImageConversion(make_conf(tmp_path)).run(import_data(iso, "raw"))


def test_qcow2_with_a_backing_file_is_refused(tmp_path, raw_disk):
    source, _ = raw_disk
    base = staged(tmp_path, source, "qcow2", name="base.qcow2")
    top = tmp_path / "top.qcow2"
    qemu("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top))
    with pytest.raises(UnsupportedMediaType, match="unsafe") as caught:
        ImageConversion(make_conf(tmp_path)).run(import_data(top, "qcow2"))
    assert "backing_file" in caught.value.message
    assert top.exists() and not Path(f"{top}.raw").exists()


def test_qcow2_with_an_external_data_file_is_refused(tmp_path):
    image = tmp_path / "df.qcow2"
    qemu("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'outside.raw'}",
         str(image), "1M")
    with pytest.raises(UnsupportedMediaType, match="data_file"):
        ImageConversion(make_conf(tmp_path)).run(import_data(image, "qcow2"))


def test_vmdk_whose_extent_is_another_file_is_refused(tmp_path):
    image = tmp_path / "flat.vmdk"
    qemu("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(image), "1M",
         cwd=tmp_path)
    with pytest.raises(UnsupportedMediaType, match="unsafe"):
        ImageConversion(make_conf(tmp_path)).run(import_data(image, "vmdk"))


def test_qemu_img_failure_is_reported_with_its_message(tmp_path, raw_disk):
    source, _ = raw_disk
    image = staged(tmp_path, source, "qcow2", name="bad-l1.qcow2")
    with image.open("r+b") as handle:   # an L1 table offset that is not cluster-aligned
        handle.seek(40)
        handle.write(struct.pack(">Q", 0x1234))
    with pytest.raises(BadRequest, match="qemu-img: .*L1 table offset invalid"):
        ImageConversion(make_conf(tmp_path)).run(import_data(image, "qcow2"))
    assert image.exists() and not Path(f"{image}.raw").exists()


def test_conversion_stops_at_image_size_cap(tmp_path):
    image = tmp_path / "big.qcow2"
    qemu("create", "-q", "-f", "qcow2", str(image), "64M")
    plugin = ImageConversion(make_conf(tmp_path, image_size_cap=8 * MIB))
    with pytest.raises(RequestEntityTooLarge, match="image_size_cap"):
        plugin.run(import_data(image, "qcow2"))
    assert files_in(tmp_path) == {"big.qcow2"}


@pytest.mark.parametrize("disk_format", ["ami", "ploop", None])
def test_formats_qemu_img_cannot_convert_are_refused(tmp_path, raw_disk, disk_format):
    source, _ = raw_disk
    with pytest.raises(BadRequest, match="cannot be converted"):
        ImageConversion(make_conf(tmp_path)).run(import_data(source, disk_format))
    assert source.exists()


def test_output_format_is_checked_against_glance_choices(tmp_path):
    conf = make_conf(tmp_path)
    with pytest.raises(ValueError):
        conf.set_override("output_format", "vdi", group="image_conversion")


# --------------------------------------------------------------- image_decompression


def gzip_file(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload))
    return path


@pytest.mark.parametrize("kind", ["gzip", "xz", "lzma", "zip"])
def test_decompression(tmp_path, kind):
    payload = guest_bytes(MIB)
    packed = tmp_path / "staged"
    if kind == "gzip":
        packed.write_bytes(gzip.compress(payload))
    elif kind == "xz":
        packed.write_bytes(lzma.compress(payload, format=lzma.FORMAT_XZ))
    elif kind == "lzma":
        packed.write_bytes(lzma.compress(payload, format=lzma.FORMAT_ALONE))
    else:
        with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("disk.raw", payload)
    assert packed.stat().st_size < len(payload)

    result = ImageDecompression(make_conf(tmp_path)).run(import_data(packed, "raw"))

    assert result.path == f"{packed}.uc"
    assert Path(result.path).read_bytes() == payload
    assert not packed.exists()
    assert (result.disk_format, result.container_format) == ("raw", "bare")


def test_uncompressed_data_passes_through(tmp_path, raw_disk):
    source, content = raw_disk
    data = import_data(source)
    assert ImageDecompression(make_conf(tmp_path)).run(data) == data
    assert source.read_bytes() == content


def test_data_that_only_resembles_a_legacy_lzma_header_passes_through(tmp_path):
    # 0x5D then a plausible dictionary size, but not an LZMA stream.
    path = tmp_path / "raw"
    path.write_bytes(b"\x5d\x00\x00\x80\x00" + b"\xff" * 8 + bytes(range(256)) * 64)
    data = import_data(path)
    assert ImageDecompression(make_conf(tmp_path)).run(data) == data


def test_compressed_container_format_is_kept_compressed(tmp_path):
    packed = gzip_file(tmp_path / "staged", guest_bytes(MIB))
    data = import_data(packed, "raw", container_format="compressed")
    assert ImageDecompression(make_conf(tmp_path)).run(data) == data
    assert packed.read_bytes()[:2] == b"\x1f\x8b"


def test_zip_with_more_than_one_member_is_refused(tmp_path):
    packed = tmp_path / "staged"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("disk.raw", b"a" * 1000)
        archive.writestr("readme.txt", b"hello")
    with pytest.raises(BadRequest, match="exactly one"):
        ImageDecompression(make_conf(tmp_path)).run(import_data(packed))
    assert files_in(tmp_path) == {"staged"}


def test_zip_holding_only_a_directory_is_refused(tmp_path):
    packed = tmp_path / "staged"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("images/", b"")
    with pytest.raises(BadRequest, match="directory"):
        ImageDecompression(make_conf(tmp_path)).run(import_data(packed))


@pytest.mark.parametrize("kind", ["gzip", "xz", "zip"])
def test_decompressed_size_is_capped(tmp_path, kind):
    payload = b"\0" * (4 * MIB)   # compresses to a few KiB
    packed = tmp_path / "staged"
    if kind == "gzip":
        packed.write_bytes(gzip.compress(payload))
    elif kind == "xz":
        packed.write_bytes(lzma.compress(payload))
    else:
        with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("disk.raw", payload)
    plugin = ImageDecompression(make_conf(tmp_path, image_size_cap=MIB))
    with pytest.raises(RequestEntityTooLarge, match="image_size_cap"):
        plugin.run(import_data(packed))
    assert files_in(tmp_path) == {"staged"}, "no partial output is left"


def test_truncated_gzip_is_refused(tmp_path):
    packed = tmp_path / "staged"
    whole = gzip.compress(guest_bytes(MIB))
    packed.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(BadRequest, match="decompression failed"):
        ImageDecompression(make_conf(tmp_path)).run(import_data(packed))
    assert files_in(tmp_path) == {"staged"}


# ------------------------------------------------------------- inject_image_metadata


INJECT = {"inject_metadata_properties.inject": {"hw_placement": "rack-7", "os_distro": "forced"}}


def test_injection_for_a_user_without_ignored_roles(tmp_path, raw_disk):
    source, _ = raw_disk
    plugin = InjectImageMetadata(make_conf(tmp_path, **INJECT))
    data = import_data(source, properties={"os_distro": "debian", "mine": "1"},
                       roles=("member", "reader"))
    result = plugin.run(data)
    assert result.properties == {"os_distro": "forced", "mine": "1", "hw_placement": "rack-7"}
    assert data.properties == {"os_distro": "debian", "mine": "1"}, "input left unchanged"
    assert result.path == data.path


@pytest.mark.parametrize("roles", [("admin",), ("member", "admin"), ("Admin", "reader")])
def test_no_injection_when_the_user_has_an_ignored_role(tmp_path, raw_disk, roles):
    source, _ = raw_disk
    plugin = InjectImageMetadata(make_conf(tmp_path, **INJECT))
    data = import_data(source, properties={"os_distro": "debian"}, roles=roles)
    assert plugin.run(data) == data


def test_ignore_user_roles_is_configurable(tmp_path, raw_disk):
    source, _ = raw_disk
    conf = make_conf(tmp_path, **INJECT,
                     **{"inject_metadata_properties.ignore_user_roles": ["member"]})
    plugin = InjectImageMetadata(conf)
    assert plugin.run(import_data(source, roles=("member",))).properties == {}
    assert plugin.run(import_data(source, roles=("admin",))).properties["hw_placement"] == "rack-7"


def test_reserved_and_core_names_are_never_injected(tmp_path, raw_disk):
    source, _ = raw_disk
    conf = make_conf(tmp_path, **{"inject_metadata_properties.inject": {
        "os_glance_import_task": "x", "os_glancefoo": "y", "disk_format": "qcow2",
        "status": "active", "ok": "yes"}})
    result = InjectImageMetadata(conf).run(import_data(source))
    assert result.properties == {"ok": "yes"}
    assert result.disk_format == "raw"


def test_nothing_to_inject_by_default(tmp_path, raw_disk):
    source, _ = raw_disk
    conf = make_conf(tmp_path)
    assert conf.inject_metadata_properties.ignore_user_roles == ["admin"]
    assert conf.inject_metadata_properties.inject == {}
    data = import_data(source)
    assert InjectImageMetadata(conf).run(data) == data


# ------------------------------------------------------------------------ pipeline


def test_plugin_names_are_glances():
    assert set(PLUGINS) == {"image_conversion", "inject_image_metadata",
                            "image_decompression", "no_op"}


def test_no_plugins_by_default(tmp_path, raw_disk):
    source, _ = raw_disk
    conf = make_conf(tmp_path)
    assert conf.image_import_opts.image_import_plugins == []
    pipeline = build_pipeline(conf)
    assert pipeline.plugins == ()
    data = import_data(source)
    assert pipeline.run(data) == data


def test_unknown_plugin_is_a_start_up_error(tmp_path):
    conf = make_conf(tmp_path, **{"image_import_opts.image_import_plugins":
                                  ["no_op", "image_compression"]})
    with pytest.raises(ValueError, match="image_compression"):
        build_pipeline(conf)


def test_plugins_run_in_the_listed_order(tmp_path, raw_disk):
    source, content = raw_disk
    qcow2 = staged(tmp_path, source, "qcow2", name="disk.qcow2")
    packed = gzip_file(tmp_path / "staged", qcow2.read_bytes())
    conf = make_conf(tmp_path, **INJECT, **{"image_import_opts.image_import_plugins": [
        "image_decompression", "no_op", "image_conversion", "inject_image_metadata"]})
    pipeline = build_pipeline(conf)
    assert [type(p) for p in pipeline.plugins] == [
        ImageDecompression, NoOp, ImageConversion, InjectImageMetadata]

    result = pipeline.run(import_data(packed, "qcow2"))

    assert result.disk_format == "raw"
    assert result.path == f"{packed}.uc.raw"
    assert Path(result.path).read_bytes() == content
    assert result.properties["hw_placement"] == "rack-7"
    assert not packed.exists() and not Path(f"{packed}.uc").exists()


def test_conversion_before_decompression_sees_compressed_data(tmp_path, raw_disk):
    source, _ = raw_disk
    qcow2 = staged(tmp_path, source, "qcow2", name="disk.qcow2")
    packed = gzip_file(tmp_path / "staged", qcow2.read_bytes())
    conf = make_conf(tmp_path, **{"image_import_opts.image_import_plugins": [
        "image_conversion", "image_decompression"]})
    with pytest.raises(UnsupportedMediaType, match="does not match disk_format qcow2"):
        build_pipeline(conf).run(import_data(packed, "qcow2"))


def test_each_plugin_sees_the_previous_ones_output(tmp_path, raw_disk):
    source, _ = raw_disk
    seen: list[ImportData] = []

    class Recorder(NoOp):
        def run(self, data: ImportData) -> ImportData:
            seen.append(data)
            return data

    conf = make_conf(tmp_path, **INJECT)
    pipeline = Pipeline([InjectImageMetadata(conf), Recorder(conf)])
    result = pipeline.run(import_data(source))
    assert seen == [result]
    assert seen[0].properties["hw_placement"] == "rack-7"


def test_plugin_failures_are_api_errors(tmp_path):
    packed = tmp_path / "staged"
    packed.write_bytes(gzip.compress(b"x" * 10000)[:30])
    conf = make_conf(tmp_path, **{"image_import_opts.image_import_plugins":
                                  ["image_decompression"]})
    with pytest.raises(GlimpseError) as caught:
        build_pipeline(conf).run(import_data(packed))
    assert caught.value.status == 400


# ------------------------------------------------ glance-image-import.conf beside the main file


def test_glance_image_import_conf_beside_glance_api_conf_is_read(tmp_path, raw_disk):
    source, _ = raw_disk
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "glance-api.conf").write_text(f"[DEFAULT]\ndata_dir = {tmp_path / 'data'}\n")
    # Written the way Glance's documentation writes it: brackets and quotes.
    (etc / "glance-image-import.conf").write_text(
        "[image_import_opts]\n"
        "image_import_plugins = ['image_decompression', 'image_conversion',"
        " 'inject_image_metadata']\n"
        "[image_conversion]\n"
        "output_format = qcow2\n"
        "[inject_metadata_properties]\n"
        "ignore_user_roles = [admin, service]\n"
        "inject = hw_placement:rack-9,trait:gold\n")
    conf = load_config([str(etc / "glance-api.conf")])
    pipeline = build_pipeline(conf)

    assert pipeline.names == ("image_decompression", "image_conversion", "inject_image_metadata")
    assert conf.inject_metadata_properties.ignore_user_roles == ["admin", "service"]
    result = pipeline.run(import_data(source, "raw", roles=("member",)))
    assert result.disk_format == "qcow2"
    assert qemu_info(result.path)["format"] == "qcow2"
    assert result.properties == {"hw_placement": "rack-9", "trait": "gold"}
    assert pipeline.run(import_data(Path(result.path), "qcow2", roles=("service",))
                        ).properties == {}


def test_import_options_in_the_main_file_are_read_too(tmp_path):
    api_conf = tmp_path / "glance-api.conf"
    api_conf.write_text("[image_import_opts]\nimage_import_plugins = no_op, inject_image_metadata\n"
                        "[inject_metadata_properties]\ninject = a:b\n")
    pipeline = build_pipeline(load_config([str(api_conf)]))
    assert pipeline.names == ("no_op", "inject_image_metadata")
