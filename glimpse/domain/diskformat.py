"""What the bytes of an image really are: format, virtual size, safety.

Fed chunk by chunk alongside the write (no second pass over the data), using
oslo.utils' format inspectors. Pure computation, no I/O.

Only data whose ``container_format`` is ``bare`` is the disk itself and is
inspected as its ``disk_format`` (as Glance does); an ovf, ova, docker or
aki/ari/ami container wraps the disk, is not inspected and gets no virtual
size. Data that is not what it claims, or is unsafe, is refused with 415
Unsupported Media Type, Glance's answer.
"""

from __future__ import annotations

from oslo_utils.imageutils import format_inspector as fi

from glimpse.errors import UnsupportedMediaType

# Formats whose data has a header we can check against the claimed disk_format.
INSPECTABLE = frozenset({"qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "raw", "qed", "luks"})
# Formats that must never hide inside an image claimed to be raw.
_NOT_RAW = frozenset({"qcow2", "vmdk", "vhd", "vhdx", "vdi", "qed", "luks"})
_HEAD_BYTES = 8 * 1024 * 1024
BARE = "bare"
_HEAD_SLICE = 64 * 1024


class DiskFormatInspector:
    """Runs every known inspector over the stream, then judges the result."""

    def __init__(self, claimed_format: str | None):
        self.claimed = claimed_format
        self._inspectors: dict[str, fi.FileInspector] = {
            name: cls() for name, cls in fi.ALL_FORMATS.items()
        }
        self._broken: set[str] = set()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        # oslo.utils inspectors only look one region definition ahead within a
        # chunk: a large first chunk holding VHDX's header, metadata table and
        # virtual-size entry loses the last of them. Headers live near the
        # start, so feed that part in small slices and the rest whole.
        start = self.size
        self.size += len(chunk)
        if start < _HEAD_BYTES and len(chunk) > _HEAD_SLICE:
            for offset in range(0, len(chunk), _HEAD_SLICE):
                if start + offset >= _HEAD_BYTES:
                    self._eat(chunk[offset:])
                    return
                self._eat(chunk[offset:offset + _HEAD_SLICE])
            return
        self._eat(chunk)

    def _eat(self, chunk: bytes) -> None:
        for name, inspector in self._inspectors.items():
            if name in self._broken:
                continue
            try:
                inspector.eat_chunk(chunk)
            except Exception:  # noqa: BLE001 - any parse failure means "not this format"
                self._broken.add(name)

    def _matching(self) -> list[str]:
        found = []
        for name, inspector in self._inspectors.items():
            if name in self._broken or name == "raw":
                continue
            try:
                if inspector.format_match:
                    found.append(name)
            except fi.ImageFormatError:
                continue
        return found

    def finish(self, enforce_match: bool = True) -> int | None:
        """Check the finished stream; return the virtual size (None if unknown).

        Raises UnsupportedMediaType (415) when the data is not the claimed format or is unsafe.
        """
        for name, inspector in self._inspectors.items():
            if name in self._broken:
                continue
            try:
                inspector.finish()
            except fi.ImageFormatError:
                self._broken.add(name)
        matches = self._matching()
        claimed = self.claimed
        if claimed not in INSPECTABLE:
            return None
        if claimed == "raw":
            # GPT/MBR partition tables and ISO filesystems are raw disks too.
            wrong = sorted(set(matches) & _NOT_RAW)
            if wrong and enforce_match:
                raise UnsupportedMediaType(
                    f"Image data does not match disk_format raw: it looks like {wrong[0]}")
            return self.size
        inspector = self._inspectors.get(claimed)
        if inspector is None or claimed not in matches:
            if enforce_match:
                raise UnsupportedMediaType(f"Image data does not match disk_format {claimed}")
            return None
        try:
            inspector.safety_check()
        except fi.SafetyCheckFailed as exc:
            raise UnsupportedMediaType(
                f"Image has unsafe content and was refused: {exc}") from None
        except fi.ImageFormatError as exc:
            raise UnsupportedMediaType(
                f"Image could not be inspected and was refused: {exc}") from None
        try:
            virtual = inspector.virtual_size
        except fi.ImageFormatError:
            return None
        return int(virtual) if virtual else None


def inspector_for(disk_format: str | None,
                  container_format: str | None) -> DiskFormatInspector | None:
    """The inspector for an image's data, or None when the data is a container."""
    if container_format != BARE:
        return None
    return DiskFormatInspector(disk_format)


def finish(inspector: DiskFormatInspector | None, enforce_match: bool = True) -> int | None:
    """``inspector.finish`` (the virtual size), None when nothing was inspected."""
    return None if inspector is None else inspector.finish(enforce_match)
