"""Fixtures for the signature tests: the real Barbican and Keystone, a user with a
token, certificates stored in Barbican through its API, and signed data.

Barbican is the one ``scripts/barbican.sh up DIR`` starts, behind the Keystone of
``GLIMPSE_KEYSTONE_DIR`` (see tests/rbac/conftest.py). ``scripts/test.sh`` and
``.ci/run`` start it once per run and set ``GLIMPSE_BARBICAN_DIR``; without that the
fixture starts it itself in .tmp/barbican (kept running for the next run, which
reuses it). No Keystone or no Barbican: skipped with the reason, and with CI=true
failed.

Glimpse runs in-process (noauth, identity headers), with the user's real Keystone
token in X-Auth-Token: castellan hands that token to Barbican, which validates it
against Keystone, exactly as with ``auth_strategy = keystone``.
"""

from __future__ import annotations

import base64
import datetime
import fcntl
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from tests.conftest import IN_CI
from tests.imports.conftest import image, make_app, served_at, wait_for  # noqa: F401 - fixtures
from tests.rbac.conftest import (
    KEYSTONE_TIMEOUT,
    KeystoneAdmin,
    KeystoneSite,
    issue_token,
    keystone_site,
    password_auth,
    read_state,
)

ROOT = Path(__file__).resolve().parents[2]
BARBICAN_DIR_ENV = "GLIMPSE_BARBICAN_DIR"

HASHES = {"SHA-224": hashes.SHA224(), "SHA-256": hashes.SHA256(),
          "SHA-384": hashes.SHA384(), "SHA-512": hashes.SHA512()}


def key_types() -> list[str]:
    """Every key type cursive registers with this cryptography (RSA-PSS, DSA and the
    ECC curves OpenSSL still supports)."""
    from cursive import signature_utils

    return sorted(signature_utils.SignatureKeyType.REGISTERED_TYPES)


def _unavailable(reason: str) -> None:
    hint = (f"start one with `scripts/barbican.sh up DIR` and set {BARBICAN_DIR_ENV}=DIR "
            "(scripts/test.sh does both)")
    if IN_CI:
        pytest.fail(f"{reason}; {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def barbican_url(keystone_dir: str) -> str:
    """The Barbican of GLIMPSE_BARBICAN_DIR, else this clone's own in .tmp/barbican
    (started once, kept running for the next run). ``barbican.sh up`` runs either
    way: it reuses a running one and puts it back into Keystone's catalog, which
    ``openstack secret store`` (docs example) reads. The lock keeps two test
    processes from starting two."""
    directory = os.environ.get(BARBICAN_DIR_ENV) or str(ROOT / ".tmp" / "barbican")
    Path(directory).mkdir(parents=True, exist_ok=True)
    with open(Path(directory) / ".up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "barbican.sh"), "up", directory],
            env={**os.environ, "GLIMPSE_KEYSTONE_DIR": keystone_dir, "KEYSTONE_WAIT": "0"},
            capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        _unavailable(f"scripts/barbican.sh up failed: {done.stderr[-2000:]}")
    state_file = Path(directory) / "barbican.env"
    if not state_file.is_file():
        _unavailable(f"{state_file} does not exist")
    url = read_state(state_file)["BARBICAN_URL"]
    try:
        httpx.get(url, timeout=30)
    except httpx.HTTPError as exc:
        _unavailable(f"Barbican at {url} is not reachable ({exc.__class__.__name__}: {exc})")
    return url


@dataclass
class Signer:
    """A key pair of one key type and the id of its certificate in Barbican."""

    key_type: str
    private_key: Any
    cert_uuid: str

    def sign(self, data: bytes, hash_method: str = "SHA-256") -> str:
        algo = HASHES[hash_method]
        digest = hashes.Hash(algo)
        digest.update(data)
        prehashed = utils.Prehashed(algo)
        value = digest.finalize()
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(value, padding.PSS(mgf=padding.MGF1(algo),
                                              salt_length=padding.PSS.MAX_LENGTH), prehashed)
        elif isinstance(key, dsa.DSAPrivateKey):
            sig = key.sign(value, prehashed)
        else:
            sig = key.sign(value, ec.ECDSA(prehashed))
        return base64.b64encode(sig).decode()

    def properties(self, data: bytes, hash_method: str = "SHA-256") -> dict[str, str]:
        return {"img_signature": self.sign(data, hash_method),
                "img_signature_hash_method": hash_method,
                "img_signature_key_type": self.key_type,
                "img_signature_certificate_uuid": self.cert_uuid}


def private_key_for(key_type: str) -> Any:
    if key_type == "RSA-PSS":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "DSA":
        return dsa.generate_private_key(key_size=2048)
    curve = key_type.removeprefix("ECC_").lower()
    return ec.generate_private_key(getattr(ec, curve.upper())())


def certificate_pem(key: Any, not_before: datetime.datetime,
                    not_after: datetime.datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "glimpse signature test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after))
    return cert.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class KeyManagerSite:
    keystone: KeystoneSite
    barbican: str
    project_id: str
    user_id: str
    password: str
    token: str

    def headers(self, roles: str = "member,reader") -> dict[str, str]:
        """What a request of this user carries (identity headers + its real token)."""
        return {"X-Identity-Status": "Confirmed", "X-Project-Id": self.project_id,
                "X-User-Id": self.user_id, "X-Roles": roles,
                "X-Auth-Token": self.token}

    def store_secret(self, payload: bytes, secret_type: str = "certificate",
                     expiration: str | None = None) -> str:
        """POST /v1/secrets as this user; the new secret's uuid."""
        body: dict[str, Any] = {
            "name": "glimpse-signature-" + uuid.uuid4().hex[:8], "secret_type": secret_type,
            "payload": base64.b64encode(payload).decode(),
            "payload_content_type": "application/octet-stream",
            "payload_content_encoding": "base64"}
        if expiration:
            body["expiration"] = expiration
        r = httpx.post(f"{self.barbican}/v1/secrets", json=body,
                       headers={"X-Auth-Token": self.token}, timeout=KEYSTONE_TIMEOUT)
        assert r.status_code == 201, f"Barbican refused the secret: {r.status_code} {r.text}"
        return r.json()["secret_ref"].rsplit("/", 1)[1]

    def store_certificate(self, key: Any, days: float = 30, start_days: float = -1,
                          expiration: str | None = None) -> str:
        now = datetime.datetime.now(datetime.UTC)
        pem = certificate_pem(key, now + datetime.timedelta(days=start_days),
                              now + datetime.timedelta(days=days))
        return self.store_secret(pem, expiration=expiration)

    def signer(self, key_type: str) -> Signer:
        key = private_key_for(key_type)
        return Signer(key_type, key, self.store_certificate(key))


@pytest.fixture(scope="session")
def key_manager() -> Iterator[KeyManagerSite]:
    site = keystone_site()
    url = barbican_url(os.environ["GLIMPSE_KEYSTONE_DIR"])
    admin = KeystoneAdmin(site)
    run = "glimpse-sig-" + uuid.uuid4().hex[:8]
    project = admin.create_project(run)
    password = uuid.uuid4().hex
    user = admin.create_user(run, password)
    try:
        admin.grant(project, user, admin.role_ids()["member"])
        token, _ = issue_token(site, password_auth(user, password, project))
        yield KeyManagerSite(site, url, project, user, password, token)
    finally:
        admin.delete(f"/users/{user}")
        admin.delete(f"/projects/{project}")
        admin.close()


@pytest.fixture(scope="session")
def signers(key_manager: KeyManagerSite) -> dict[str, Signer]:
    """One key pair and stored certificate per key type (shared by the tests)."""
    return {kind: key_manager.signer(kind) for kind in key_types()}


def signature_config(site: KeyManagerSite, extra: str = "") -> str:
    """glance-api.conf text: castellan's Barbican, this run's."""
    default = ["[DEFAULT]", extra] if extra else []
    # Barbican named here: a shared Keystone's catalog may name another one.
    return "\n".join([*default, "[key_manager]", "backend = barbican",
                      "[barbican]", f"auth_endpoint = {site.keystone.url}",
                      f"barbican_endpoint = {site.barbican}"])


# ---------------------------------------------------------------- shared by the tests

RAW = {"Content-Type": "application/octet-stream"}
DATA = bytes(range(256)) * 4096 + b"the end"  # 1 MiB and a bit: several chunks


@pytest.fixture
def client(make_app, key_manager):  # noqa: ANN001, ANN201, F811
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


def wait_task_done(client, image_id: str) -> dict:  # noqa: ANN001
    """The image's newest task once finished. Longer than the imports' own wait: a
    signed import asks Keystone and Barbican, which on a loaded machine take seconds."""
    def finished() -> dict | None:
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[-1]["status"] in ("success", "failure"):
            return tasks[-1]
        return None

    return wait_for(finished, timeout=180)
