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
