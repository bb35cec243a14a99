"""Object names and cutting a stream of chunks into bounded parts, for the s3 and swift
drivers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from glimpse.stores.base import StoreError

# Object names the object-store drivers accept for an image: one plain path segment.
PIECE_SIZE = 1024 * 1024
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def check_object_name(image_id: str) -> str:
    if not _PLAIN_NAME.fullmatch(image_id):
        raise StoreError(f"Invalid image id for an object store: {image_id!r}")
    return image_id


def is_object_name(name: str) -> bool:
    return bool(_PLAIN_NAME.fullmatch(name))


def fixed_parts(chunks: Iterable[bytes], part_size: int) -> Iterator[bytearray]:
    """Yield ``part_size`` bytes at a time (the last part may be shorter, never empty).

    Each part is a bytearray of its own, filled in place: the data is copied once, and
    a part never needs more memory than its size (no growing buffer, no slice copies).
    Not ``bytes`` on purpose: http.client (and botocore) glue a ``bytes`` body to the
    request headers before sending, a second copy of every part in flight."""
    part, filled = bytearray(part_size), 0
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view:
            room = part_size - filled
            piece = view[:room]
            part[filled:filled + len(piece)] = piece
            filled += len(piece)
            view = view[len(piece):]
            if filled == part_size:
                yield part
                part, filled = bytearray(part_size), 0
    if filled:
        del part[filled:]
        yield part


class Source:
    """An upload's chunks, read ahead and handed out in bounded pieces (the swift
    driver streams each segment from it with chunked transfer encoding).

    Pieces are views into the chunks (no copies of what remains of a chunk), and the
    read-ahead head is joined once."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._queued: list[memoryview] = []
        self.exhausted = False

    def _pull(self) -> bool:
        while not self._pending:
            if self._queued:
                self._pending = self._queued.pop(0)
                continue
            chunk = next(self._chunks, None)
            if chunk is None:
                self.exhausted = True
                return False
            self._pending = memoryview(chunk).cast("B")
        return True

    def read_ahead(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (fewer only at the end); they are handed out again."""
        held: list[memoryview] = []
        count = 0
        while count < limit and self._pull():
            held.append(self._pending)
            count += len(self._pending)
            self._pending = memoryview(b"")
        head = b"".join(held)
        del held
        self._pending = memoryview(head)
        if not self.exhausted and len(head) >= limit:
            self._pull_more()
        return head

    def _pull_more(self) -> None:
        """Look one chunk past the head, so ``exhausted`` says whether more follows."""
        chunk = next(self._chunks, None)
        if chunk is None:
            self.exhausted = True
        else:
            self._queued.append(memoryview(chunk).cast("B"))

    def at_end(self) -> bool:
        return not self._pull()

    def take(self, limit: int) -> SourceSlice:
        return SourceSlice(self, limit)

    def _next_piece(self, room: int) -> memoryview | None:
        if room <= 0 or not self._pull():
            return None
        size = min(room, PIECE_SIZE, len(self._pending))
        piece, self._pending = self._pending[:size], self._pending[size:]
        return piece


class SourceSlice:
    """One segment's body: at most ``limit`` bytes of the source, counted."""

    def __init__(self, source: Source, limit: int):
        self._source, self._limit, self.count = source, limit, 0

    def __iter__(self) -> Iterator[memoryview]:
        while True:
            piece = self._source._next_piece(self._limit - self.count)
            if piece is None:
                return
            self.count += len(piece)
            yield piece
