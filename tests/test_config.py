"""glance-api.conf files are read as Glance reads them."""

from __future__ import annotations

from glimpse.config import load_config


def test_bracketed_and_plain_lists(tmp_path):
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text("[DEFAULT]\nenabled_import_methods = [glance-direct,web-download]\n"
                         "[image_format]\ndisk_formats = raw, qcow2\n")
    conf = load_config([str(conf_file)])
    assert conf.enabled_import_methods == ["glance-direct", "web-download"]
    assert conf.image_format.disk_formats == ["raw", "qcow2"]


def test_image_import_conf_beside_main_file_is_read(tmp_path):
    (tmp_path / "glance-api.conf").write_text("[DEFAULT]\n")
    (tmp_path / "glance-image-import.conf").write_text(
        "[DEFAULT]\nenabled_import_methods = [web-download]\n")
    conf = load_config([str(tmp_path / "glance-api.conf")])
    assert conf.enabled_import_methods == ["web-download"]
