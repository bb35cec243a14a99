"""How Glimpse asks the key manager, against the real Barbican and Keystone: with the
caller's own token, unchanged (no token exchange with Keystone), in three Barbican
requests; Barbican alone decides who may read a certificate (a user of another
project cannot use it, even right after its owner did in the same process); the
certificate is fetched while the data is being hashed, not before; the Barbican
endpoint can come from the caller's catalog.

The HTTP requests are observed with a recorder wrapped around python-requests'
HTTPAdapter.send (castellan -> keystoneauth -> requests): it only notes what goes
out and when the answer came back; every request still reaches the real servers.
SQLite only (``db_url``): nothing here depends on the database."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import requests.adapters

from glimpse.context import RequestContext
from glimpse.services import key_manager as km
from glimpse.services import signatures
from tests.conftest import free_port
from tests.imports.conftest import image, new_image
from tests.rbac.conftest import KEYSTONE_TIMEOUT, KeystoneAdmin, issue_token, password_auth
from tests.signatures.conftest import (
    DATA,
    KeyManagerSite,
    assert_nothing_stored,
    signature_config,
    upload,
)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/glimpse.sqlite"


@dataclass
class Sent:
    method: str
    url: str
    token: str | None
    answered_at: float


@pytest.fixture
def sent(monkeypatch) -> list[Sent]:  # noqa: ANN001
    """Every HTTP request this process sends through python-requests, recorded."""
    record: list[Sent] = []
    lock = threading.Lock()
    real_send = requests.adapters.HTTPAdapter.send

    def recording_send(self, request, **kwargs):  # noqa: ANN001, ANN202
        response = real_send(self, request, **kwargs)
        with lock:
            record.append(Sent(request.method, request.url,
                               request.headers.get("X-Auth-Token"), time.monotonic()))
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    return record


def fresh_token(site: KeyManagerSite) -> str:
    """A new token of the test user: one Barbican has never seen."""
    return issue_token(site.keystone, password_auth(site.user_id, site.password,
                                                    site.project_id))[0]


@pytest.fixture(scope="module")
def outsider(key_manager: KeyManagerSite) -> Iterator[KeyManagerSite]:
    """A member of another project, with its own token."""
    admin = KeystoneAdmin(key_manager.keystone)
    run = "glimpse-sig-outsider-" + uuid.uuid4().hex[:8]
    project = admin.create_project(run)
    password = uuid.uuid4().hex
    user = admin.create_user(run, password)
    try:
        admin.grant(project, user, admin.role_ids()["member"])
        token, _ = issue_token(key_manager.keystone, password_auth(user, password, project))
        yield KeyManagerSite(key_manager.keystone, key_manager.barbican, project, user,
                             password, token)
    finally:
        admin.delete(f"/users/{user}")
        admin.delete(f"/projects/{project}")
        admin.close()


def test_the_callers_token_goes_to_barbican_unchanged(client, key_manager, signers, sent):
    h = {**key_manager.headers(), "X-Auth-Token": fresh_token(key_manager)}
    image_id = new_image(client, h, **signers["RSA-PSS"].properties(DATA))
    sent.clear()
    assert upload(client, image_id, DATA, h).status_code == 204
    assert image(client, image_id, h)["status"] == "active"
    # castellan's stock credential made 5: Keystone's version document, POST
    # /v3/auth/tokens (a new token), then these three with the new token.
    cert = signers["RSA-PSS"].cert_uuid
    assert [(s.method, s.url) for s in sent] == [
        ("GET", f"{key_manager.barbican}/"),
        ("GET", f"{key_manager.barbican}/v1/secrets/{cert}"),
        ("GET", f"{key_manager.barbican}/v1/secrets/{cert}/payload"),
    ]
    assert {s.token for s in sent} == {h["X-Auth-Token"]}
    assert not [s for s in sent if s.url.startswith(key_manager.keystone.url)]


def test_another_projects_user_cannot_use_the_certificate(client, key_manager, signers,
                                                          outsider):
    signer = signers["ECC_SECP521R1"]
    props = signer.properties(DATA, "SHA-512")
    # Its owner uses it in this process first: nothing of that answer may serve the
    # outsider.
    mine = new_image(client, key_manager.headers(), **props)
    assert upload(client, mine, DATA, key_manager.headers()).status_code == 204
    # Barbican itself refuses the outsider the secret...
    r = httpx.get(f"{key_manager.barbican}/v1/secrets/{signer.cert_uuid}",
                  headers={"X-Auth-Token": outsider.token}, timeout=KEYSTONE_TIMEOUT)
    assert r.status_code == 403, r.text
    # ... and so does Glimpse, asking with the outsider's token.
    h = outsider.headers()
    theirs = new_image(client, h, **props)
    r = upload(client, theirs, DATA, h)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (
        f"Signature verification failed for image {theirs}: Signature verification for the "
        f"image failed: Unable to retrieve certificate with ID: {signer.cert_uuid}.")
    assert image(client, theirs, h)["status"] == "queued"
    assert image(client, theirs, h)["size"] is None
    # The owner's image is still there; the outsider's data is gone.
    assert image(client, mine, key_manager.headers())["status"] == "active"
    assert client.get(f"/v2/images/{theirs}/file", headers=h).status_code == 204


def test_an_unknown_certificate_stops_the_upload_and_nothing_is_left(client, key_manager,
                                                                       signers, tmp_path):
    h = key_manager.headers()
    missing = str(uuid.uuid4())
    props = {**signers["RSA-PSS"].properties(DATA),
             "img_signature_certificate_uuid": missing}
    image_id = new_image(client, h, **props)
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 400
    assert r.json()["message"].endswith(f"Certificate not found with ID: {missing}.")
    assert_nothing_stored(client, image_id, h, tmp_path)


def test_the_data_is_hashed_while_the_key_manager_is_asked(make_app, key_manager, signers,
                                                           sent):
    client = make_app(signature_config(key_manager))
    ctx = RequestContext(user_id=key_manager.user_id, project_id=key_manager.project_id,
                         roles=("member", "reader"), auth_token=fresh_token(key_manager))
    props = signers["DSA"].properties(DATA, "SHA-256")
    sent.clear()
    verifier = signatures.verifier_for(client.runtime, ctx, "image-id", props)
    assert verifier is not None
    for i in range(0, len(DATA), 65536):
        verifier.update(DATA[i:i + 65536])
    hashed_at = time.monotonic()
    verifier.verify()  # waits for the key, then checks: valid
    # Every byte was hashed before Barbican had answered (a token it had never seen:
    # it asked Keystone first); the key was needed only for the check at the end.
    assert len(sent) == 3
    assert hashed_at < sent[-1].answered_at
    tampered = signatures.verifier_for(client.runtime, ctx, "image-id", props)
    assert tampered is not None
    tampered.update(DATA[:-1] + b"?")
    with pytest.raises(signatures.SignatureVerificationFailed):
        tampered.verify()


def test_barbican_found_in_the_callers_catalog(make_app, key_manager, signers, sent):
    catalog = httpx.get(f"{key_manager.keystone.url}/auth/catalog",
                        headers={"X-Auth-Token": key_manager.token},
                        timeout=KEYSTONE_TIMEOUT).json()["catalog"]
    listed = [e["url"] for s in catalog if s["type"] == "key-manager"
              for e in s["endpoints"] if e["interface"] == "public"]
    assert listed == [key_manager.barbican], (
        "Keystone's catalog names another Barbican than this run's (scripts/barbican.sh "
        f"up puts it back): {listed}")
    client = make_app("\n".join(["[key_manager]", "backend = barbican", "[barbican]",
                                 f"auth_endpoint = {key_manager.keystone.url}"]))
    km._ENDPOINTS.clear()
    h = key_manager.headers()
    catalog_reads = []
    for _ in range(2):
        image_id = new_image(client, h, **signers["RSA-PSS"].properties(DATA))
        sent.clear()
        assert upload(client, image_id, DATA, h).status_code == 204
        catalog_reads.append([s.url for s in sent if s.url.endswith("/auth/catalog")])
        assert sent[-1].url.startswith(key_manager.barbican)
    # Asked once per project, then remembered (a URL, not a secret).
    assert catalog_reads == [[f"{key_manager.keystone.url}/auth/catalog"], []]


def test_unreachable_barbican_is_refused_and_nothing_is_left(make_app, key_manager, signers,
                                                             tmp_path):
    # Nothing listens on this port of 127.0.0.1: castellan cannot reach a Barbican.
    client = make_app("\n".join(["[key_manager]", "backend = barbican", "[barbican]",
                                 f"auth_endpoint = {key_manager.keystone.url}",
                                 f"barbican_endpoint = http://127.0.0.1:{free_port()}"]))
    h = key_manager.headers()
    signer = signers["RSA-PSS"]
    image_id = new_image(client, h, **signer.properties(DATA))
    r = upload(client, image_id, DATA, h)
    assert r.status_code == 400
    assert r.json()["message"].endswith(
        f"Unable to retrieve certificate with ID: {signer.cert_uuid}.")
    assert_nothing_stored(client, image_id, h, tmp_path)


def test_location_import_with_an_unknown_certificate_fails(make_app, key_manager, signers,
                                                           tmp_path):
    # The certificate is now asked for while the location's data is read: its refusal
    # fails the task as a mismatch does, and the image is queued again.
    from tests.imports.test_locations_api import Web, config
    from tests.signatures.conftest import wait_task_done
    from tests.stores.http_server import RangeServer

    web = Web(RangeServer.shared())
    app = make_app(config(tmp_path, web) + "\n" + signature_config(key_manager))
    h = key_manager.headers()
    missing = str(uuid.uuid4())
    url = web.data("/signed-unknown-certificate", DATA)
    props = {**signers["RSA-PSS"].properties(DATA), "img_signature_certificate_uuid": missing}
    image_id = new_image(app, h, **props)
    r = app.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=h)
    assert r.status_code == 202, r.text
    task = wait_task_done(app, image_id)
    assert task["status"] == "failure"
    assert task["message"].endswith(f"Certificate not found with ID: {missing}.")
    img = image(app, image_id, h)
    assert img["status"] == "queued"
    assert img["checksum"] is None
