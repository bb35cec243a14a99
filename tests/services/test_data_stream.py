"""DataStream: the one wrapper that counts, limits, inspects and hashes incoming data."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from glimpse.domain.diskformat import DiskFormatInspector
from glimpse.errors import RequestEntityTooLarge
from glimpse.imports.tasks import ImportFailed
from glimpse.services.data import PARALLEL_HASH_MIN, DataStream

MIB = 1024 * 1024


def _pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    start, i = 0, 0
    while start < len(data):
        size = sizes[i % len(sizes)]
        yield data[start:start + size]
        start += size
        i += 1


def test_parallel_digests_match_hashlib_for_mixed_chunk_sizes():
    # Large chunks are hashed in helper threads, small ones inline: the digests
    # must come out as if everything had been hashed in order in one thread.
    data = os.urandom(11 * MIB + 12345)
    sizes = [3 * MIB, 1000, PARALLEL_HASH_MIN, 0, PARALLEL_HASH_MIN - 1, 2 * MIB + 7]
    stream = DataStream(_pieces(data, sizes), limit=len(data), limit_error=ValueError("big"),
                        hash_algos=("md5", "sha512", "sha256"))
    passed = b"".join(stream)
    assert passed == data
    assert stream.size == len(data)
    assert stream.hexdigest("md5") == hashlib.md5(data).hexdigest()
    assert stream.hexdigest("sha512") == hashlib.sha512(data).hexdigest()
    assert stream.hexdigest("sha256") == hashlib.sha256(data).hexdigest()


def test_digests_of_many_large_chunks_stay_in_order():
    chunks = [bytes([i]) * (PARALLEL_HASH_MIN + i) for i in range(40)]
    stream = DataStream(iter(chunks), limit=10**9, limit_error=ValueError("big"),
                        hash_algos=("md5", "sha512"))
    stream.consume()
    whole = b"".join(chunks)
    assert stream.hexdigest("md5") == hashlib.md5(whole).hexdigest()
    assert stream.hexdigest("sha512") == hashlib.sha512(whole).hexdigest()


@pytest.mark.parametrize("error", [RequestEntityTooLarge("too big"), ImportFailed("quota")])
def test_limit_raises_the_configured_error_mid_stream(error):
    passed: list[bytes] = []
    stream = DataStream(iter([b"a" * MIB, b"b" * MIB, b"c" * MIB]), limit=2 * MIB,
                        limit_error=error, hash_algos=("md5",))
    with pytest.raises(type(error)) as raised:
        for chunk in stream:
            passed.append(chunk)
    assert raised.value is error
    assert len(passed) == 2


def test_inspector_sees_every_byte():
    data = os.urandom(3 * MIB)
    inspector = DiskFormatInspector("raw")
    stream = DataStream(_pieces(data, [MIB // 3]), limit=len(data), limit_error=ValueError(),
                        inspector=inspector)
    stream.consume()
    assert inspector.size == len(data)
    assert inspector.finish() == len(data)


def test_count_accounts_for_data_not_read():
    stream = DataStream(iter(()), limit=100, limit_error=RequestEntityTooLarge("over"))
    assert not stream.measures
    stream.count(60)
    assert stream.size == 60
    with pytest.raises(RequestEntityTooLarge):
        stream.count(41)
    assert DataStream(iter(()), limit=1, limit_error=ValueError(), hash_algos=("md5",)).measures
