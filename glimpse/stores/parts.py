"""Cutting a stream of chunks into fixed-size parts, shared by the s3 and swift drivers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from glimpse.stores.base import StoreError

# Object names the object-store drivers accept for an image: one plain path segment.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def check_object_name(image_id: str) -> str:
    if not _PLAIN_NAME.fullmatch(image_id):
        raise StoreError(f"Invalid image id for an object store: {image_id!r}")
    return image_id


def is_object_name(name: str) -> bool:
    return bool(_PLAIN_NAME.fullmatch(name))


def fixed_parts(chunks: Iterable[bytes], part_size: int) -> Iterator[bytes]:
    """Yield ``part_size`` bytes at a time (the last part may be shorter, never empty)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= part_size:
            yield bytes(memoryview(buffer)[:part_size])
            del buffer[:part_size]
    if buffer:
        yield bytes(buffer)
