"""Locations across real stores (scripts/backends.sh): an image uploaded to Ceph RBD,
copied to S3 (SeaweedFS) and Swift, shown with every location in the preference
order; the rbd copy removed with DELETE /v2/stores/...; the S3 object deleted
behind Glimpse's back and the download still served, from Swift."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest

from tests.imports.conftest import (  # noqa: F401 - make_app is a fixture
    RAW,
    image,
    make_app,
    new_image,
    start_import,
    wait_task_done,
)
from tests.stores import swift_s3_backends as swift_s3
from tests.stores.backends import backend_env, get_driver

DATA = os.urandom(3 * 1024 * 1024 + 4321)
ADMIN = {
    "X-Identity-Status": "Confirmed",
    "X-Project-Id": "admin-p",
    "X-User-Id": "admin-u",
    "X-Roles": "admin,member,reader",
}


def _config(tmp_path, strategy: str) -> str:
    ceph = backend_env("ceph")
    s3 = swift_s3.backend_env("seaweedfs")
    swift = swift_s3.backend_env("swift")
    return f"""[DEFAULT]
enabled_backends = ceph:rbd, objects:s3, swift:swift
show_multiple_locations = true
show_image_direct_url = true
{strategy}
[glance_store]
default_backend = ceph
[ceph]
rbd_store_pool = {ceph["CEPH_POOL"]}
rbd_store_user = {ceph["CEPH_USER"]}
rbd_store_ceph_conf = {ceph["CEPH_CONF"]}
rbd_store_chunk_size = 1
rados_connect_timeout = 10
weight = 30
[objects]
s3_store_host = {s3["S3_SEAWEEDFS_ENDPOINT"]}
s3_store_access_key = {s3["S3_ACCESS_KEY"]}
s3_store_secret_key = {s3["S3_SECRET_KEY"]}
s3_store_bucket = {swift_s3.unique_name("glimpse-loc", tmp_path)}
s3_store_create_bucket_on_put = true
s3_store_bucket_url_format = path
weight = 20
[swift]
swift_store_auth_address = {swift["SWIFT_AUTH_URL"]}
swift_store_user = {swift["SWIFT_USER"]}
swift_store_key = {swift["SWIFT_KEY"]}
swift_store_auth_version = 1
swift_store_container = {swift_s3.unique_name("glimpse-loc", tmp_path)}
swift_store_create_container_on_put = true
weight = 10
[os_glance_staging_store]
filesystem_store_datadir = {tmp_path / "staging"}
[os_glance_tasks_store]
filesystem_store_datadir = {tmp_path / "tasks"}
"""


@pytest.mark.parametrize(
    "strategy",
    [
        "",  # location_order: by the stores' weight, rbd (30), s3 (20), swift (10)
        "location_strategy = store_type\n[store_type_location_strategy]\n"
        "store_type_preference = rbd,s3,swift",
    ],
)
def test_rbd_copied_to_s3_and_swift(make_app, tmp_path, strategy, caplog):  # noqa: F811
    get_driver("rbd")
    client = make_app(_config(tmp_path, strategy))
    image_id = new_image(client, headers=ADMIN)
    r = client.put(
        f"/v2/images/{image_id}/file", content=DATA, headers={"Content-Type": RAW, **ADMIN}
    )
    assert r.status_code == 204, r.text
    for store in ("swift", "objects"):  # copied in the order least preferred first
        r = start_import(
            client, image_id, {"method": {"name": "copy-image"}, "stores": [store]}, headers=ADMIN
        )
        assert r.status_code == 202, r.text
        assert wait_task_done(client, image_id)["status"] == "success"
    doc = image(client, image_id, ADMIN)
    assert doc["stores"] == "ceph,objects,swift"
    assert [loc["metadata"]["store"] for loc in doc["locations"]] == ["ceph", "objects", "swift"]
    schemes = [loc["url"].split("://")[0] for loc in doc["locations"]]
    assert schemes[0] == "rbd" and schemes[1].startswith("s3") and schemes[2].startswith("swift")
    assert doc["direct_url"] == doc["locations"][0]["url"]

    r = client.delete(f"/v2/stores/ceph/{image_id}", headers=ADMIN)
    assert r.status_code == 204, r.text
    doc = image(client, image_id, ADMIN)
    assert doc["stores"] == "objects,swift"
    rbd = get_driver("rbd")
    assert not any(image_id in url for url in rbd.leftovers(client.runtime.stores.get("ceph")))

    # The S3 object goes away behind Glimpse's back: the download is served from Swift.
    s3_url = doc["locations"][0]["url"]
    bucket, key = s3_url.split("://", 1)[1].split("/", 2)[1:]
    swift_s3.s3_client().delete_object(Bucket=bucket, Key=key)
    with caplog.at_level(logging.WARNING):
        r = client.get(f"/v2/images/{image_id}/file", headers=ADMIN)
    assert r.status_code == 200
    assert hashlib.sha512(r.content).hexdigest() == doc["os_hash_value"]
    assert any("next location" in rec.getMessage() for rec in caplog.records)
    r = client.get(f"/v2/images/{image_id}/file", headers={**ADMIN, "Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == DATA[1000:2000]

    assert client.delete(f"/v2/images/{image_id}", headers=ADMIN).status_code == 204


def test_stores_detail_shows_driver_properties_never_secrets(make_app, tmp_path):  # noqa: F811
    get_driver("rbd")
    text = _config(tmp_path, "")
    client = make_app(text)
    assert [s["id"] for s in client.get("/v2/info/stores").json()["stores"]] == [
        "ceph",
        "objects",
        "swift",
    ]
    r = client.get("/v2/info/stores/detail", headers=ADMIN)
    assert r.status_code == 200, r.text
    detail = {s["id"]: s for s in r.json()["stores"]}
    ceph = backend_env("ceph")
    assert detail["ceph"]["type"] == "rbd" and detail["ceph"]["weight"] == 30
    assert detail["ceph"]["properties"]["pool"] == ceph["CEPH_POOL"]
    assert detail["objects"]["properties"]["s3_store_large_object_chunk_size"] > 0
    assert detail["swift"]["properties"]["container"].startswith("glimpse-loc")
    for secret in (
        swift_s3.backend_env("seaweedfs")["S3_SECRET_KEY"],
        swift_s3.backend_env("swift")["SWIFT_KEY"],
    ):
        assert secret not in r.text
