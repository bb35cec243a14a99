"""The key and certificate side of signature verification, against the real Barbican
and Keystone: every key type and hash method, a wrong key, each refusal that comes
before the data (bad base64, unknown hash method or key type, key type and
certificate that do not match, a missing, non-certificate, expired or unreachable
certificate). None of this touches the database beyond an image row, so these run
on SQLite only (``db_url`` below); the flows in test_signatures.py run on every
database."""

from __future__ import annotations

import base64
import datetime
import time
from pathlib import Path

import pytest

from tests.imports.conftest import image, new_image
from tests.signatures.conftest import (
    DATA,
    HASHES,
    RAW,
    assert_nothing_stored,
    key_types,
    signature_config,
    upload,
)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/glimpse.sqlite"


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


