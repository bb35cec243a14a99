"""The verifier's digest runs in hashlib (so it hashes in parallel with the others)
and needs no key (so the key manager is asked while the data flows), while the
signature check stays cursive's: valid data passes, one changed byte fails, for every
key type and hash method. No key manager here: the public key is handed over as the
finished future the key manager's fetch would be; the certificate step is in
test_certificates.py and test_signatures.py, against the real Barbican."""

from __future__ import annotations

import base64
from concurrent.futures import Future

import pytest
from cursive import signature_utils

from glimpse.services import signatures
from tests.signatures.conftest import HASHES, Signer, key_types, private_key_for

DATA = b"0123456789abcdef" * 65536


@pytest.mark.parametrize("hash_method", list(HASHES))
@pytest.mark.parametrize("key_type", key_types())
def test_cursive_verifier_over_hashlib(key_type, hash_method):
    key = private_key_for(key_type)
    signer = Signer(key_type, key, "unused")
    kind = signature_utils.SignatureKeyType.lookup(key_type)
    algo = signature_utils.get_hash_method(hash_method)

    def verifier(data: bytes) -> signatures.Verifier:
        public_key: Future = Future()
        public_key.set_result(key.public_key())
        v = signatures.Verifier("image-id", base64.b64decode(signer.sign(DATA, hash_method)),
                                algo, kind, public_key)
        assert isinstance(v._digest, signatures._HashlibDigest)
        # cursive's verifiers keep their digest where Verifier hands it over.
        assert hasattr(kind.create_verifier(b"x", algo, key.public_key()), "_hasher")
        for i in range(0, len(data), 100_000):
            v.update(data[i:i + 100_000])
        return v

    verifier(DATA).verify()
    tampered = bytearray(DATA)
    tampered[12345] ^= 0x80
    bad = verifier(bytes(tampered))
    for _ in range(2):  # the outcome is kept: asking again fails again
        with pytest.raises(signatures.SignatureVerificationFailed) as err:
            bad.verify()
        assert err.value.message == ("Signature verification failed for image image-id: "
                                     "Signature verification failed")


def test_a_refused_certificate_stops_the_data_at_the_next_chunk():
    refusal = signatures.SignatureVerificationFailed("image-id", "Certificate not found")
    public_key: Future = Future()
    kind = signature_utils.SignatureKeyType.lookup("RSA-PSS")
    v = signatures.Verifier("image-id", b"sig", signature_utils.get_hash_method("SHA-256"),
                            kind, public_key)
    v.update(DATA)  # the key manager has not answered: the data flows
    public_key.set_exception(refusal)
    with pytest.raises(signatures.SignatureVerificationFailed) as err:
        v.update(DATA)
    assert err.value is refusal
    with pytest.raises(signatures.SignatureVerificationFailed):
        v.verify()


@pytest.mark.parametrize("hashing_algorithm,shared", [("sha512", True), ("sha384", False)])
def test_a_signature_over_the_os_hash_algorithm_reuses_its_digest(hashing_algorithm, shared):
    """With a SHA-512 signature and hashing_algorithm sha512 (Glance's default) the data
    is hashed once for both; the signature is still checked, and still fails on one
    changed byte, and os_hash_value is still the data's sha512."""
    import hashlib

    from glimpse.services.data import DataStream

    key = private_key_for("RSA-PSS")
    signer = Signer("RSA-PSS", key, "unused")
    kind = signature_utils.SignatureKeyType.lookup("RSA-PSS")
    algo = signature_utils.get_hash_method("SHA-512")
    signature = base64.b64decode(signer.sign(DATA, "SHA-512"))

    def stream(data: bytes) -> tuple[DataStream, signatures.Verifier]:
        public_key: Future = Future()
        public_key.set_result(key.public_key())
        v = signatures.Verifier("image-id", signature, algo, kind, public_key)
        s = DataStream((data[i:i + 300_000] for i in range(0, len(data), 300_000)),
                       limit=len(data), limit_error=AssertionError("limit"),
                       hash_algos=("md5", hashing_algorithm), verifier=v)
        assert isinstance(v._digest, signatures._SharedDigest) is shared
        return s, v

    good, _ = stream(DATA)
    assert b"".join(good) == DATA  # the end of the data passes: the signature holds
    assert good.hexdigest(hashing_algorithm) == hashlib.new(hashing_algorithm, DATA).hexdigest()
    assert good.hexdigest("md5") == hashlib.md5(DATA).hexdigest()

    tampered = bytearray(DATA)
    tampered[777_777] ^= 0x01
    bad, verifier = stream(bytes(tampered))
    with pytest.raises(signatures.SignatureVerificationFailed):
        b"".join(bad)
    with pytest.raises(signatures.SignatureVerificationFailed):
        verifier.verify()


def test_a_shared_digest_refuses_another_algorithm_and_direct_data():
    import hashlib

    public_key: Future = Future()
    v = signatures.Verifier("image-id", b"sig", signature_utils.get_hash_method("SHA-256"),
                            signature_utils.SignatureKeyType.lookup("RSA-PSS"), public_key)
    with pytest.raises(ValueError):
        v.share_digest(hashlib.sha512())
    v.share_digest(hashlib.sha256())
    with pytest.raises(RuntimeError):
        v.update(b"data")  # its owner feeds it, never the verifier
