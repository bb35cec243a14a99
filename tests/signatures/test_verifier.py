"""The verifier's digest runs in hashlib (so it hashes in parallel with the others),
while the signature check stays cursive's: valid data passes, one changed byte fails,
for every key type and hash method. No key manager here: the certificate step is in
test_signatures.py, against the real Barbican."""

from __future__ import annotations

import base64

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
        raw = kind.create_verifier(base64.b64decode(signer.sign(DATA, hash_method)), algo,
                                   key.public_key())
        signatures._digest_with_hashlib(raw, algo)
        assert isinstance(raw._hasher, signatures._HashlibDigest)
        v = signatures.Verifier("image-id", raw)
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
