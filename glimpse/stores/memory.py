"""glibc malloc controls for the data path (no-ops where libc is not glibc).

A transfer frees its buffers at the end, but glibc keeps freed heap mapped (up to the
trim threshold the API's allocator tuning sets, per arena), so without a trim each
transfer would leave the worker larger and the next one would start higher.
WrappedStore gives the memory back after every add and every finished get."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

M_ARENA_MAX = -8


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def one_arena() -> None:
    """Limit glibc malloc to one arena for the process."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, 1)


def give_back() -> None:
    """Return free heap memory to the kernel (malloc_trim)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
