"""Image signature verification against a real Barbican (through castellan and
cursive) and a real Keystone: uploads, glance-direct and web-download imports, the
legacy tasks import; every failure leaves the image queued and no data behind."""

from __future__ import annotations

import base64
import datetime
import time
from pathlib import Path

import pytest

from tests.imports.conftest import (
    image,
    multi_store_config,
    new_image,
    stage,
    start_import,
    wait_task_done,
)
from tests.signatures.conftest import HASHES, key_types, signature_config

RAW = {"Content-Type": "application/octet-stream"}
DATA = bytes(range(256)) * 4096 + b"the end"  # 1 MiB and a bit: several chunks


@pytest.fixture
def client(make_app, key_manager):
    return make_app(signature_config(key_manager))


def upload(client, image_id: str, data: bytes, headers: dict[str, str]):
    return client.put(f"/v2/images/{image_id}/file", content=data,
                      headers={**RAW, **headers})


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_nothing_stored(client, image_id: str, headers: dict[str, str], tmp_path: Path):
    img = image(client, image_id, headers)
    assert img["status"] == "queued"
    assert img["size"] is None and img["checksum"] is None
    assert client.get(f"/v2/images/{image_id}/file", headers=headers).status_code == 204
    assert stored_files(tmp_path / "data" / "images") == []


# Each key type with a hash method, in turn, so that every key type and every hash
# method is covered by a real upload (the full matrix would repeat the same code).
PAIRS = [(kind, list(HASHES)[i % len(HASHES)]) for i, kind in enumerate(key_types())]


def test_cursive_knows_the_documented_key_types():
    kinds = key_types()
    assert {"RSA-PSS", "DSA", "ECC_SECP384R1", "ECC_SECP521R1"} <= set(kinds)
    assert {h for _k, h in PAIRS} == set(HASHES)
    assert {k for k, _h in PAIRS} == set(kinds)


@pytest.mark.parametrize("key_type,hash_method", PAIRS)
def test_signed_upload_is_verified(client, key_manager, signers, key_type, hash_method):
    h = key_manager.headers()
    props = signers[key_type].properties(DATA, hash_method)
    image_id = new_image(client, h, **props)
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 204, r.text
    img = image(client, image_id, h)
    assert img["status"] == "active"
    assert img["img_signature_key_type"] == key_type
    assert client.get(f"/v2/images/{image_id}/file", headers=h).content == DATA


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


def test_signature_by_another_key_is_refused(client, key_manager, signers, tmp_path):
    h = key_manager.headers()
    other = key_manager.signer("ECC_SECP384R1")
    props = signers["ECC_SECP384R1"].properties(DATA, "SHA-384")
    props["img_signature"] = other.sign(DATA, "SHA-384")  # right type, wrong key
    image_id = new_image(client, h, **props)
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 400
    assert "Signature verification failed" in r.json()["message"]
    assert_nothing_stored(client, image_id, h, tmp_path)


@pytest.mark.parametrize("change,reason", [
    ({"img_signature": "not base64!"},
     "The signature data was not properly encoded using base64"),
    ({"img_signature_hash_method": "MD5"}, "Invalid signature hash method: MD5"),
    ({"img_signature_key_type": "ECC_SECP256K1"}, "Invalid signature key type: ECC_SECP256K1"),
    ({"img_signature_key_type": "DSA"}, "Invalid public key type for signature key type: DSA"),
    ({"img_signature_certificate_uuid": "9b1f3d3e-1c4a-4e53-9f57-8d8f0d6c2a11"},
     "Certificate not found with ID: 9b1f3d3e-1c4a-4e53-9f57-8d8f0d6c2a11"),
])
def test_refused_before_any_data_is_stored(client, key_manager, signers, tmp_path, change,
                                           reason):
    h = key_manager.headers()
    props = {**signers["RSA-PSS"].properties(DATA), **change}
    image_id = new_image(client, h, **props)
    reads = []

    def body():
        reads.append(1)
        yield DATA

    r = client.put(f"/v2/images/{image_id}/file", content=body(), headers={**RAW, **h})
    assert r.status_code == 400, r.text
    # Glance's words: its own prefix, then cursive's.
    assert r.json()["message"] == (f"Signature verification failed for image {image_id}: "
                                   f"Signature verification for the image failed: {reason}.")
    assert_nothing_stored(client, image_id, h, tmp_path)


def test_secret_that_is_not_a_certificate_is_refused(client, key_manager, signers, tmp_path):
    h = key_manager.headers()
    opaque = key_manager.store_secret(b"just some bytes", secret_type="opaque")
    props = {**signers["RSA-PSS"].properties(DATA), "img_signature_certificate_uuid": opaque}
    image_id = new_image(client, h, **props)
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 400
    assert r.json()["message"].endswith("Invalid certificate format: Opaque.")
    assert_nothing_stored(client, image_id, h, tmp_path)


def test_expired_certificate_is_refused(make_app, client, key_manager, signers, tmp_path):
    h = key_manager.headers()
    signer = signers["RSA-PSS"]
    expired = key_manager.store_certificate(signer.private_key, days=-1, start_days=-30)
    props = {**signer.properties(DATA), "img_signature_certificate_uuid": expired}
    image_id = new_image(client, h, **props)
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 400
    assert f"Certificate {expired} is not valid at this time" in r.json()["message"]
    assert_nothing_stored(client, image_id, h, tmp_path)
    # As Glance (which does not look at the dates) when told so.
    lenient = make_app(signature_config(key_manager, "verify_signature_certificate_dates = "
                                        "false"))
    assert upload(lenient, image_id, DATA, h).status_code == 204


def test_expired_barbican_secret_is_missing(client, key_manager, signers, tmp_path):
    h = key_manager.headers()
    signer = signers["DSA"]
    soon = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3))
    cert = key_manager.store_certificate(signer.private_key,
                                         expiration=soon.strftime("%Y-%m-%dT%H:%M:%S"))
    props = {**signer.properties(DATA, "SHA-224"), "img_signature_certificate_uuid": cert}
    image_id = new_image(client, h, **props)
    time.sleep(max(0.0, (soon - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1.5)
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 400
    assert r.json()["message"].endswith(f"Certificate not found with ID: {cert}.")
    assert_nothing_stored(client, image_id, h, tmp_path)


def test_no_token_no_certificate(client, key_manager, signers, tmp_path):
    # Without the user's token the key manager cannot be asked on its behalf.
    h = {k: v for k, v in key_manager.headers().items() if k != "X-Auth-Token"}
    image_id = new_image(client, h, **signers["RSA-PSS"].properties(DATA))
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 400
    cert = signers["RSA-PSS"].cert_uuid
    assert r.json()["message"].endswith(f"Unable to retrieve certificate with ID: {cert}.")
    assert_nothing_stored(client, image_id, h, tmp_path)


def test_three_properties_are_not_a_signature(client, key_manager, signers):
    h = key_manager.headers()
    props = signers["RSA-PSS"].properties(DATA)
    del props["img_signature_certificate_uuid"]
    props["img_signature"] = base64.b64encode(b"garbage").decode()
    image_id = new_image(client, h, **props)
    assert upload(client, image_id, DATA, h).status_code == 204  # not verified, as Glance


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
            deadline = time.monotonic() + 60
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
