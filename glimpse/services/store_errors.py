"""The one mapping from a store's typed error to the status the client sees
(404 / 403 / 413 / 503, never a bare 500)."""

from __future__ import annotations

from glimpse.errors import (
    Forbidden,
    GlimpseError,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
)
from glimpse.stores.base import DataNotFound, StoreError, StoreForbidden, StoreFull


def http_error(exc: StoreError, doing: str) -> GlimpseError:
    """``doing``: what failed, for the message ("Error storing image data")."""
    if isinstance(exc, DataNotFound):
        return NotFound(f"{doing}: {exc}")
    if isinstance(exc, StoreForbidden):
        return Forbidden(f"{doing}: {exc}")
    if isinstance(exc, StoreFull):
        return RequestEntityTooLarge(f"{doing}: {exc}")
    # StoreUnavailable and any other failure of the back end: try again later.
    return ServiceUnavailable(f"{doing}: {exc}")
