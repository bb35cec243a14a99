"""Local filesystem store: one file per image under one directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from urllib.parse import unquote, urlparse

from glimpse.stores.base import DataNotFound, Store, StoredData, StoreError, StoreFull

READ_SIZE = 1024 * 1024


class FileStore(Store):
    type = "file"

    def __init__(self, name: str, datadir: str, description: str = ""):
        super().__init__(name, description)
        self.datadir = os.path.realpath(datadir)
        os.makedirs(self.datadir, exist_ok=True)

    # The only way from a URL to a path; refuses anything outside datadir.
    def _path(self, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise DataNotFound(f"Not a file store URL: {url}")
        path = os.path.realpath(unquote(parsed.path))
        if os.path.dirname(path) != self.datadir:
            raise DataNotFound(f"Location is outside the store: {url}")
        return path

    def _url(self, path: str) -> str:
        return "file://" + path

    def owns(self, url: str) -> bool:
        try:
            self._path(url)
        except DataNotFound:
            return False
        return True

    def add(self, image_id: str, chunks: Iterable[bytes]) -> StoredData:
        if os.sep in image_id or image_id in ("", ".", ".."):
            raise StoreError(f"Invalid image id for file store: {image_id!r}")
        final = os.path.join(self.datadir, image_id)
        fd, tmp = tempfile.mkstemp(prefix=f".{image_id}.", suffix=".tmp", dir=self.datadir)
        size = 0
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        written = out.write(view)
                        view = view[written:]
                    size += len(chunk)
                os.fdatasync(out.fileno())
            os.replace(tmp, final)
            dir_fd = os.open(self.datadir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            _unlink_quietly(tmp)
            if exc.errno == 28:  # ENOSPC
                raise StoreFull("There is not enough disk space on the image store") from exc
            raise StoreError(f"File store write failed: {exc.strerror}") from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return StoredData(url=self._url(final), size=size)

    def get(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        path = self._path(url)
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            raise StoreError(f"File store read failed: {exc.strerror}") from exc
        return _read(handle, offset, length)

    def size(self, url: str) -> int:
        try:
            return os.stat(self._path(url)).st_size
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            raise StoreError(f"File store stat failed: {exc.strerror}") from exc

    def delete(self, url: str) -> None:
        try:
            os.unlink(self._path(url))
        except FileNotFoundError:
            raise DataNotFound(f"Image data not found at {url}") from None
        except OSError as exc:
            # Callers (delete, scrubber) handle StoreError; a bare OSError would be a 500.
            raise StoreError(f"File store delete failed: {exc.strerror}") from exc

    def local_path(self, url: str) -> str | None:
        path = self._path(url)
        return path if os.path.exists(path) else None


def _read(handle, offset: int, length: int | None) -> Iterator[bytes]:  # noqa: ANN001
    with handle:
        if offset:
            handle.seek(offset)
        remaining = length
        while remaining is None or remaining > 0:
            want = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
            data = handle.read(want)
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
