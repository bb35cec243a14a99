"""Image signature verification, as Glance does it, with cursive and castellan.

An image whose properties hold all four of ``img_signature``,
``img_signature_hash_method``, ``img_signature_key_type`` and
``img_signature_certificate_uuid`` has its data verified while it is written (the
``Verifier`` rides in the same single pass as the hashes, in DataStream). The
certificate is fetched from the key manager (castellan: ``[key_manager] backend``,
Barbican by default, ``[barbican]`` options) with the caller's own token.

What the properties themselves can get wrong (the signature's base64, the hash
method, the key type, no token to ask the key manager with) is refused by
``verifier_for`` before a byte is read. The certificate (found, readable by the
caller, X.509, of the key type, within its dates) is asked for at the same moment,
in the background, while the data starts flowing: the data is hashed for the
signature without needing the key, so the key manager's round trips overlap the
upload instead of preceding it. A refusal of the certificate stops the upload at the
next chunk and is handled as a signature mismatch is (nothing kept, image queued
again); ``Verifier.verify`` checks the signature itself once the last byte has been
seen.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from glimpse.context import RequestContext
from glimpse.errors import BadRequest, Forbidden
from glimpse.services import key_manager

LOG = logging.getLogger(__name__)

SIGNATURE = "img_signature"
HASH_METHOD = "img_signature_hash_method"
KEY_TYPE = "img_signature_key_type"
CERT_UUID = "img_signature_certificate_uuid"
SIGNATURE_PROPERTIES = (SIGNATURE, HASH_METHOD, KEY_TYPE, CERT_UUID)

# Once an image has verified data its signature properties describe that data.
_FROZEN_STATUSES = frozenset({"active", "deactivated"})


class SignatureVerificationFailed(BadRequest):
    """PUT /file answers 400 with this message (Glance's wording); an import task
    fails with it."""

    def __init__(self, image_id: str, reason: str):
        super().__init__(f"Signature verification failed for image {image_id}: {reason}")
        self.reason = reason


def wants_verification(properties: Mapping[str, Any]) -> bool:
    """Glance's rule (cursive.should_create_verifier): all four properties present."""
    return all(name in properties for name in SIGNATURE_PROPERTIES)


def check_change(status: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Refuse adding, changing or removing a signature property of an image whose
    data is already in place (the properties would no longer match what was
    verified)."""
    if (
        name in SIGNATURE_PROPERTIES
        and status in _FROZEN_STATUSES
        and old.get(name) != new.get(name)
    ):
        raise Forbidden(
            f"Property {name} cannot be changed on an image in status "
            f"{status}: it is part of the image's verified signature."
        )


def _refused(image_id: str, reason: str) -> SignatureVerificationFailed:
    """A refusal worded as cursive words its own (Glance shows cursive's text)."""
    from cursive import exception as cursive_exception

    return SignatureVerificationFailed(
        image_id, str(cursive_exception.SignatureVerificationError(reason=reason))
    )


class Verifier:
    """Hashes the data for the signature as it comes (hashlib, in DataStream's hashing
    threads); ``verify`` waits for the signer's public key, has cursive check the
    signature over that digest, and raises SignatureVerificationFailed when the data
    does not match (or the key manager refused the certificate).

    The digest needs no key, so the key manager is asked while the data flows: its
    round trips cost an upload nothing unless they take longer than the data. A
    refusal by the key manager stops the data at the next chunk (``update``)."""

    def __init__(self, image_id: str, signature: bytes, hash_method: Any, key_type: Any,
                 public_key: Future):
        self.image_id = image_id
        self._signature = signature
        self._hash_method = hash_method
        self._key_type = key_type
        self._public_key = public_key
        self._digest = _new_digest(hash_method)
        self._outcome: SignatureVerificationFailed | bool | None = None

    @property
    def hash_name(self) -> str:
        """The hashlib name of the signature's hash method ("sha256", ...)."""
        return self._hash_method.name

    def share_digest(self, running: Any) -> None:
        """Take over a hashlib object that the data already goes through (DataStream's
        os_hash_value when hashing_algorithm is the signature's hash method): the
        signature then costs no second digest of the data. ``update`` is then no
        longer to be given the data; ``poll`` stands in for it."""
        if running.name != self.hash_name:
            raise ValueError(f"a {running.name} digest cannot serve a {self.hash_name} "
                             "signature")
        self._digest = _SharedDigest(running)

    def update(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.poll()

    def poll(self) -> None:
        """Raise the key manager's refusal of the certificate as soon as it is known."""
        if self._public_key.done() and self._public_key.exception() is not None:
            raise self._public_key.exception()  # type: ignore[misc]

    def verify(self) -> None:
        """Check once (the digest is final then); later calls repeat the outcome."""
        if self._outcome is None:
            from cryptography.exceptions import InvalidSignature

            public_key = self._public_key.result()  # the key manager's refusal raises
            verifier = self._key_type.create_verifier(self._signature, self._hash_method,
                                                      public_key)
            # cursive's verifiers (RSA-PSS, DSA, ECC) keep their running digest in
            # ``_hasher`` and only finalize() it in verify(): handing them the digest
            # computed so far leaves the signature check itself to cursive.
            if not hasattr(verifier, "_hasher"):
                raise RuntimeError("cursive's verifier has no _hasher: this cursive "
                                   "release is not supported")
            verifier._hasher = self._digest
            try:
                verifier.verify()
                self._outcome = True
                LOG.info("Successfully verified signature for image %s", self.image_id)
            except InvalidSignature:
                LOG.warning("Signature verification failed for image %s", self.image_id)
                self._outcome = SignatureVerificationFailed(
                    self.image_id, "Signature verification failed"
                )
        if isinstance(self._outcome, SignatureVerificationFailed):
            raise self._outcome


def verifier_for(
    rt: Any, ctx: RequestContext | None, image_id: str, properties: Mapping[str, Any]
) -> Verifier | None:
    """The verifier for an image's data, or None when the image is not signed.
    Raises SignatureVerificationFailed for what is wrong in the properties themselves;
    the certificate's refusals come from the verifier."""
    factory = verifier_factory(rt, ctx, image_id, properties)
    return factory() if factory is not None else None


def verifier_factory(
    rt: Any, ctx: RequestContext | None, image_id: str, properties: Mapping[str, Any]
) -> Callable[[], Verifier] | None:
    """Like ``verifier_for``, but a maker of fresh verifiers (one per attempt to read
    the data) that share one question to the key manager, asked now, in the
    background."""
    if not wants_verification(properties):
        return None
    from cursive import exception as cursive_exception
    from cursive import signature_utils

    try:
        # cursive's own parsing, in cursive's order (and with its messages).
        signature = signature_utils.get_signature(properties[SIGNATURE])
        hash_method = signature_utils.get_hash_method(properties[HASH_METHOD])
        key_type = signature_utils.SignatureKeyType.lookup(properties[KEY_TYPE])
    except cursive_exception.SignatureVerificationError as exc:
        raise SignatureVerificationFailed(image_id, str(exc)) from None
    cert_uuid = str(properties[CERT_UUID])
    if ctx is None or not ctx.auth_token:
        # No token (noauth, trusted headers without one, a recovered task): the key
        # manager cannot be asked on the caller's behalf.
        raise _refused(image_id, f"Unable to retrieve certificate with ID: {cert_uuid}")
    public_key = _fetch_pool().submit(_public_key, rt, ctx, image_id, cert_uuid, signature,
                                      hash_method, key_type)

    def make() -> Verifier:
        return Verifier(image_id, signature, hash_method, key_type, public_key)

    return make


@functools.cache
def _fetch_pool() -> ThreadPoolExecutor:
    # Key manager requests only wait on the network; one pool for the process.
    return ThreadPoolExecutor(16, thread_name_prefix="glimpse-keymanager")


def _public_key(rt: Any, ctx: RequestContext, image_id: str, cert_uuid: str,
                signature: bytes, hash_method: Any, key_type: Any) -> Any:
    """The signer's public key, once everything about it is checked (the certificate
    found, X.509, in its dates, of the key type, a verifier can be made with it)."""
    certificate = _certificate(rt, ctx, image_id, cert_uuid)
    public_key = certificate.public_key()
    if not isinstance(public_key, key_type.public_key_type):
        raise _refused(image_id, f"Invalid public key type for signature key type: {key_type.name}")
    if key_type.create_verifier(signature, hash_method, public_key) is None:
        raise _refused(image_id, "Error occurred while creating the verifier")
    return public_key


class _HashlibDigest:
    """cryptography's Hash interface (update, finalize) over hashlib, which lets go of
    the GIL while it hashes a large chunk: the verifier's digest then runs truly in
    parallel with md5 and os_hash_value in DataStream's hashing threads."""

    def __init__(self, name: str):
        self._hash = hashlib.new(name)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def finalize(self) -> bytes:
        return self._hash.digest()


class _SharedDigest:
    """cryptography's Hash interface over a hashlib object someone else feeds: only
    read at the end (hashlib's digest() leaves the object usable, so its owner still
    gets its own hexdigest())."""

    def __init__(self, running: Any):
        self._hash = running

    def update(self, data: bytes) -> None:
        raise RuntimeError("a shared digest is fed by its owner")

    def finalize(self) -> bytes:
        return self._hash.digest()


def _new_digest(hash_method: Any) -> Any:
    if hash_method.name in hashlib.algorithms_available:
        return _HashlibDigest(hash_method.name)
    from cryptography.hazmat.primitives import hashes

    return hashes.Hash(hash_method)


def _certificate(rt: Any, ctx: RequestContext, image_id: str, cert_uuid: str) -> Any:
    """The X.509 certificate ``cert_uuid`` from the key manager, as the caller sees it
    (glimpse.services.key_manager: castellan, with the caller's token as it is).

    cursive.get_certificate would read the process-global oslo.config object;
    Glimpse has one configuration per runtime, so the castellan key manager is
    built from it, with the same outcomes and messages."""
    from castellan.common import exception as km_exception
    from cryptography import x509
    from keystoneauth1 import exceptions as ksa_exceptions

    try:
        managed = key_manager.fetch(rt.conf, ctx, cert_uuid)
    except km_exception.ManagedObjectNotFoundError:
        raise _refused(image_id, f"Certificate not found with ID: {cert_uuid}") from None
    # castellan wraps what fails while it builds its client; a connection lost
    # between its requests comes out as keystoneauth's own error.
    except (km_exception.KeyManagerError, ksa_exceptions.ClientException) as exc:
        LOG.error("Unable to retrieve certificate with ID %s: %s", cert_uuid, exc)
        raise _refused(image_id, f"Unable to retrieve certificate with ID: {cert_uuid}") from None
    if managed.format != "X.509":
        raise _refused(image_id, f"Invalid certificate format: {managed.format}")
    # castellan hands certificates over DER-encoded.
    certificate = x509.load_der_x509_certificate(managed.encoded)
    if rt.conf.verify_signature_certificate_dates:
        now = datetime.datetime.now(datetime.UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise _refused(
                image_id,
                f"Certificate {cert_uuid} is not valid at this time (valid from "
                f"{certificate.not_valid_before_utc.isoformat()} to "
                f"{certificate.not_valid_after_utc.isoformat()})",
            )
    return certificate
