"""Image signature verification against a real Barbican (through castellan and
cursive) and a real Keystone, on every database: a tampered upload, the frozen
properties, glance-direct and web-download imports, the legacy tasks import; every
failure leaves the image queued and no data behind. The certificate and key checks,
which do not touch the database, are in test_certificates.py."""

from __future__ import annotations

import time

import pytest

from tests.imports.conftest import (
    image,
    multi_store_config,
    new_image,
    stage,
    start_import,
)
from tests.signatures.conftest import (
    DATA,
    assert_nothing_stored,
    signature_config,
    stored_files,
    upload,
    wait_task_done,
)


def test_one_changed_byte_is_refused_and_nothing_is_stored(client, key_manager, signers,
                                                           tmp_path):
    h = key_manager.headers()
    image_id = new_image(client, h, **signers["RSA-PSS"].properties(DATA, "SHA-256"))
    tampered = bytearray(DATA)
    tampered[len(DATA) // 2] ^= 0x01
    r = upload(client, image_id, bytes(tampered), h)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (f"Signature verification failed for image {image_id}: "
                                   "Signature verification failed")
    assert_nothing_stored(client, image_id, h, tmp_path)
    # The right data still goes in afterwards.
    assert upload(client, image_id, DATA, h).status_code == 204
    assert image(client, image_id, h)["status"] == "active"


def test_signature_properties_frozen_once_active(client, key_manager, signers):
    h = key_manager.headers()
    props = signers["RSA-PSS"].properties(DATA)
    image_id = new_image(client, h, **props)
    patch = {"Content-Type": "application/openstack-images-v2.1-json-patch", **h}
    # While queued they may still be fixed.
    r = client.patch(f"/v2/images/{image_id}", headers=patch, json=[
        {"op": "replace", "path": "/img_signature_hash_method", "value": "SHA-256"}])
    assert r.status_code == 200, r.text
    assert upload(client, image_id, DATA, h).status_code == 204
    for op in ([{"op": "replace", "path": "/img_signature", "value": "AAAA"}],
               [{"op": "remove", "path": "/img_signature_certificate_uuid"}]):
        r = client.patch(f"/v2/images/{image_id}", headers=patch, json=op)
        assert r.status_code == 403, r.text
        assert "cannot be changed" in r.json()["message"]
    # Other properties still change.
    r = client.patch(f"/v2/images/{image_id}", headers=patch, json=[
        {"op": "add", "path": "/purpose", "value": "test"}])
    assert r.status_code == 200
    assert image(client, image_id, h)["img_signature"] == props["img_signature"]


# ---------------------------------------------------------------- imports


@pytest.fixture
def multi(make_app, key_manager, tmp_path):
    return make_app(multi_store_config(tmp_path, ["fast", "cheap"]) + "\n" +
                    signature_config(key_manager))


def test_glance_direct_verified(multi, key_manager, signers, tmp_path):
    h = key_manager.headers()
    image_id = new_image(multi, h, **signers["ECC_SECP521R1"].properties(DATA, "SHA-512"))
    assert stage(multi, image_id, DATA, h).status_code == 204
    r = start_import(multi, image_id, {"method": {"name": "glance-direct"},
                                       "stores": ["fast", "cheap"]}, h)
    assert r.status_code == 202, r.text
    task = wait_task_done(multi, image_id)
    assert task["status"] == "success", task["message"]
    img = image(multi, image_id, h)
    assert img["status"] == "active"
    assert sorted(img["stores"].split(",")) == ["cheap", "fast"]
    assert multi.get(f"/v2/images/{image_id}/file", headers=h).content == DATA


def test_glance_direct_tampered_fails_the_task(multi, key_manager, signers, tmp_path):
    h = key_manager.headers()
    image_id = new_image(multi, h, **signers["RSA-PSS"].properties(DATA, "SHA-256"))
    assert stage(multi, image_id, DATA[:-1] + b"!", h).status_code == 204
    r = start_import(multi, image_id, {"method": {"name": "glance-direct"},
                                       "stores": ["fast"]}, h)
    assert r.status_code == 202, r.text
    task = wait_task_done(multi, image_id)
    assert task["status"] == "failure"
    assert f"Signature verification failed for image {image_id}" in task["message"]
    img = image(multi, image_id, h)
    assert img["status"] == "queued"
    assert img["os_glance_failed_import"] == "fast"
    assert img["os_glance_importing_to_stores"] == ""
    assert stored_files(tmp_path / "stores") == []
    assert stored_files(tmp_path / "staging-multi") == []


def test_glance_direct_unknown_certificate_fails_the_task(multi, key_manager, signers,
                                                          tmp_path):
    h = key_manager.headers()
    props = {**signers["RSA-PSS"].properties(DATA),
             "img_signature_certificate_uuid": "0f6f7b8c-4f56-4c57-8c3a-2f0b5a9e8d11"}
    image_id = new_image(multi, h, **props)
    assert stage(multi, image_id, DATA, h).status_code == 204
    start_import(multi, image_id, {"method": {"name": "glance-direct"}, "stores": ["cheap"]}, h)
    task = wait_task_done(multi, image_id)
    assert task["status"] == "failure"
    assert "Certificate not found with ID" in task["message"]
    img = image(multi, image_id, h)
    assert img["status"] == "queued"
    assert img["os_glance_failed_import"] == "cheap"
    assert stored_files(tmp_path / "stores") == []


ALLOW_LOCAL = ("[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n"
               "allowed_ports = [80,443,{port}]\n")


@pytest.mark.parametrize("tamper", [False, True])
def test_web_download_verified(make_app, key_manager, signers, tmp_path, tamper):
    from tests.imports.conftest import served_at

    h = key_manager.headers()
    with served_at("127.0.0.1", 0) as web:
        app = make_app(signature_config(key_manager) + "\n" + ALLOW_LOCAL.format(port=web.port))
        uri = web.data("/disk.raw", DATA + (b"x" if tamper else b""))
        image_id = new_image(app, h, **signers["DSA"].properties(DATA, "SHA-256"))
        r = start_import(app, image_id, {"method": {"name": "web-download", "uri": uri}}, h)
        assert r.status_code == 202, r.text
        task = wait_task_done(app, image_id)
    img = image(app, image_id, h)
    if tamper:
        assert task["status"] == "failure"
        assert "Signature verification failed" in task["message"]
        assert img["status"] == "queued"
        assert stored_files(tmp_path / "data" / "images") == []
    else:
        assert task["status"] == "success", task["message"]
        assert img["status"] == "active"
        assert app.get(f"/v2/images/{image_id}/file", headers=h).content == DATA


def test_legacy_import_task_verified(make_app, key_manager, signers, tmp_path):
    from tests.imports.conftest import served_at

    # The tasks API is for admins (Glimpse's policy); Barbican sees the user's token.
    h = key_manager.headers("admin,member,reader")
    with served_at("127.0.0.1", 0) as web:
        app = make_app(signature_config(key_manager) + "\n" + ALLOW_LOCAL.format(port=web.port))
        uri = web.data("/disk.raw", DATA)
        props = {"disk_format": "raw", "container_format": "bare",
                 **signers["ECC_SECP384R1"].properties(DATA, "SHA-384")}
        bad = {**props, "img_signature": signers["ECC_SECP384R1"].sign(b"other", "SHA-384")}
        results = {}
        for name, image_properties in (("good", props), ("bad", bad)):
            r = app.post("/v2/tasks", headers=h, json={"type": "import", "input": {
                "import_from": uri, "import_from_format": "raw",
                "image_properties": image_properties}})
            assert r.status_code == 201, r.text
            task_id = r.json()["id"]
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                task = app.get(f"/v2/tasks/{task_id}", headers=h).json()
                if task["status"] in ("success", "failure"):
                    break
                time.sleep(0.1)
            results[name] = task
    assert results["good"]["status"] == "success", results["good"]["message"]
    good_id = results["good"]["result"]["image_id"]
    assert app.get(f"/v2/images/{good_id}/file", headers=h).content == DATA
    assert results["bad"]["status"] == "failure"
    assert "Signature verification failed" in results["bad"]["message"]


def test_unsigned_images_are_not_affected(client, key_manager):
    h = key_manager.headers()
    image_id = new_image(client, h)
    assert upload(client, image_id, DATA, h).status_code == 204
    assert image(client, image_id, h)["status"] == "active"


@pytest.mark.parametrize("tamper", [False, True])
def test_location_import_verified(make_app, key_manager, signers, tmp_path, tamper):
    # POST /v2/images/{id}/locations (Images API 2.17): a signed image's data is read
    # and verified at the location before the image goes active (Glimpse).
    from tests.imports.test_locations_api import Web, config
    from tests.stores.http_server import RangeServer

    web = Web(RangeServer.shared())
    app = make_app(config(tmp_path, web) + "\n" + signature_config(key_manager))
    h = key_manager.headers()
    url = web.data(f"/signed-{tamper}", DATA[:-1] + (b"?" if tamper else DATA[-1:]))
    image_id = new_image(app, h, **signers["ECC_SECP384R1"].properties(DATA, "SHA-256"))
    r = app.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=h)
    assert r.status_code == 202, r.text
    task = wait_task_done(app, image_id)
    img = image(app, image_id, h)
    if tamper:
        assert task["status"] == "failure"
        assert f"Signature verification failed for image {image_id}" in task["message"]
        assert img["status"] == "queued"
        assert img["checksum"] is None
    else:
        assert task["status"] == "success", task["message"]
        assert img["status"] == "active"
        assert app.get(f"/v2/images/{image_id}/file", headers=h).content == DATA
