"""The image_decompression plugin: unpacks gzip, xz/lzma and single-file zip data.

The compression is recognised by its magic bytes, never by a name. As in Glance,
images whose container_format is ``compressed`` are left alone (the compressed
data is the image), and a zip archive must hold exactly one file. Beyond
Glance, the decompressed data is capped at ``image_size_cap`` while it is
written (no decompression bombs), and xz/lzma are recognised too. Glance's
optional LHA support is not offered.
"""

from __future__ import annotations

import dataclasses
import gzip
import lzma
import os
import zipfile
import zlib
from collections.abc import Callable
from typing import IO

from glimpse.errors import BadRequest, RequestEntityTooLarge
from glimpse.imports.plugins.base import ImportData, Plugin

_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b\x08"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZIP_MAGIC = b"PK\x03\x04"
_HEAD = 13  # the legacy .lzma header: properties, dictionary size, uncompressed size


class _Refused(Exception):
    """Raised inside the copy loop; turned into the right API error by the caller."""


def _looks_like_legacy_lzma(head: bytes) -> bool:
    """The .lzma ("LZMA alone") header has no magic; accept only what xz writes.

    Property byte 0x5D (lc=3, lp=0, pb=2, used by every common encoder) and a
    dictionary size of 2^n or 2^n + 2^(n-1). Whether the data really is LZMA is
    settled by decoding its start (see ``_detect``).
    """
    if len(head) < _HEAD or head[0] != 0x5D:
        return False
    dict_size = int.from_bytes(head[1:5], "little")
    if dict_size < 4096:
        return False
    top = 1 << (dict_size.bit_length() - 1)
    return dict_size in (top, top + (top >> 1))


def _decodes_as_legacy_lzma(path: str) -> bool:
    with open(path, "rb") as src:
        start = src.read(64 * 1024)
    try:
        lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(start, max_length=4096)
    except lzma.LZMAError:
        return False
    return True


def _detect(path: str) -> str | None:
    with open(path, "rb") as src:
        head = src.read(_HEAD)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if _looks_like_legacy_lzma(head) and _decodes_as_legacy_lzma(path):
        return "lzma"
    return None


def _copy_capped(stream: IO[bytes], dest: IO[bytes], cap: int) -> None:
    written = 0
    while chunk := stream.read(_CHUNK):
        written += len(chunk)
        if written > cap:
            raise _Refused(f"the decompressed image is larger than image_size_cap ({cap} bytes)")
        dest.write(chunk)


def _unzip(src_path: str, dest: IO[bytes], cap: int) -> None:
    with zipfile.ZipFile(src_path) as archive:
        members = archive.infolist()
        if len(members) != 1:
            raise BadRequest(f"Image decompression failed: the zip archive holds "
                             f"{len(members)} entries, an image archive must hold exactly one")
        member = members[0]
        if member.is_dir():
            raise BadRequest("Image decompression failed: the zip archive holds only a directory")
        if member.file_size > cap:
            raise _Refused(f"the decompressed image is larger than image_size_cap ({cap} bytes)")
        with archive.open(member) as stream:
            _copy_capped(stream, dest, cap)


def _stream_with(opener: Callable[[str], IO[bytes]]) -> Callable[[str, IO[bytes], int], None]:
    def run(src_path: str, dest: IO[bytes], cap: int) -> None:
        with opener(src_path) as stream:
            _copy_capped(stream, dest, cap)
    return run


_DECOMPRESSORS: dict[str, Callable[[str, IO[bytes], int], None]] = {
    "gzip": _stream_with(lambda p: gzip.open(p, "rb")),
    "xz": _stream_with(lambda p: lzma.open(p, "rb", format=lzma.FORMAT_XZ)),
    "lzma": _stream_with(lambda p: lzma.open(p, "rb", format=lzma.FORMAT_ALONE)),
    "zip": _unzip,
}


class ImageDecompression(Plugin):
    name = "image_decompression"

    def run(self, data: ImportData) -> ImportData:
        if data.container_format == "compressed":
            return data
        kind = _detect(data.path)
        if kind is None:
            return data
        cap = int(self.conf.image_size_cap)
        dest_path = data.path + ".uc"
        done = False
        try:
            with open(dest_path, "wb") as dest:
                _DECOMPRESSORS[kind](data.path, dest, cap)
            done = True
        except _Refused as exc:
            raise RequestEntityTooLarge(f"Image decompression refused: {exc}") from None
        except (gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile,
                RuntimeError, NotImplementedError) as exc:
            # RuntimeError: an encrypted zip member; NotImplementedError: a zip
            # compression method Python cannot read.
            raise BadRequest(f"Image decompression failed ({kind}): {exc}") from None
        finally:
            if not done:
                _remove(dest_path)
        os.remove(data.path)
        return dataclasses.replace(data, path=dest_path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
