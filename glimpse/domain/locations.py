"""What of a location URL may be shown to a client."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# Glance wrote credentials into these locations (s3://access:secret@host/..., and
# swift+http://user:key@auth/... without swift_store_config_file). Glimpse's drivers
# never do, but databases taken over from Glance still hold such URLs.
_CREDENTIAL_SCHEMES = frozenset({"s3", "s3+http", "s3+https", "swift", "swift+http",
                                 "swift+https"})


def without_credentials(url: str) -> str:
    """``url`` with any ``user:secret@`` of an object-store location removed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme not in _CREDENTIAL_SCHEMES or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
