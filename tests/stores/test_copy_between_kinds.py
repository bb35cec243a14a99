"""copy-image between store kinds (file -> rbd and rbd -> file) through the API,
against the real Ceph; the copy's bytes hash the same as the image's checksums."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote

import pytest

from glimpse.config import load_config
from glimpse.stores import registry
from tests.imports.conftest import (  # noqa: F401 - make_app is a fixture
    RAW,
    image,
    make_app,
    new_image,
    start_import,
    wait_task_done,
)
from tests.stores.backends import backend_env, get_driver

DATA = os.urandom(5 * 1024 * 1024 + 12_345)


def _config(tmp_path, env: dict[str, str], default: str) -> str:
    return f"""[DEFAULT]
enabled_backends = local:file, ceph:rbd
[glance_store]
default_backend = {default}
[local]
filesystem_store_datadir = {tmp_path / 'local'}
[ceph]
rbd_store_pool = {env['CEPH_POOL']}
rbd_store_user = {env['CEPH_USER']}
rbd_store_ceph_conf = {env['CEPH_CONF']}
rbd_store_chunk_size = 1
rados_connect_timeout = 10
[os_glance_staging_store]
filesystem_store_datadir = {tmp_path / 'staging'}
[os_glance_tasks_store]
filesystem_store_datadir = {tmp_path / 'tasks'}
"""


@pytest.mark.parametrize(("source", "target"), [("local", "ceph"), ("ceph", "local")])
def test_copy_image_between_file_and_rbd(make_app, tmp_path, source, target):  # noqa: F811
    get_driver("rbd")
    env = backend_env("ceph")
    text = _config(tmp_path, env, source)
    client = make_app(text)
    image_id = new_image(client)
    r = client.put(f"/v2/images/{image_id}/file", content=DATA,
                   headers={"Content-Type": RAW})
    assert r.status_code == 204, r.text
    r = start_import(client, image_id, {"method": {"name": "copy-image"}, "stores": [target]})
    assert r.status_code == 202, r.text
    assert wait_task_done(client, image_id)["status"] == "success"
    shown = image(client, image_id)
    assert sorted(shown["stores"].split(",")) == ["ceph", "local"]
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()  # noqa: S324
    assert shown["os_hash_value"] == hashlib.sha512(DATA).hexdigest()

    conf_file = tmp_path / "check.conf"
    conf_file.write_text(text)
    stores = registry.from_conf(load_config([str(conf_file)], {"data_dir": str(tmp_path)}))
    urls = {"local": f"file://{tmp_path / 'local' / image_id}",
            "ceph": f"rbd://{env['CEPH_FSID']}/{env['CEPH_POOL']}/{quote(image_id)}/snap"}
    for name, url in urls.items():
        data = b"".join(stores.get(name).get(url))
        assert hashlib.md5(data).hexdigest() == shown["checksum"], name  # noqa: S324
        assert hashlib.sha512(data).hexdigest() == shown["os_hash_value"], name

    assert client.delete(f"/v2/images/{image_id}").status_code == 204
    assert not any(e.url == urls["ceph"] for e in stores.get("ceph").list_data())
