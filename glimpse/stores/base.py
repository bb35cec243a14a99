"""The one small interface every store driver implements.

Drivers are synchronous and run in worker threads; the API layer bridges
them to the event loop. Every driver passes tests/stores/test_conformance.py.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


class StoreError(Exception):
    """A driver failed; the message is safe to show to the client."""


class DataNotFound(StoreError):
    pass


class StoreFull(StoreError):
    """No space left (or the back end's quota is exhausted): 413."""


class StoreForbidden(StoreError):
    """The back end refused the credentials or the operation: 403."""


class StoreUnavailable(StoreError):
    """The back end cannot be reached or answered with a server error: 503."""


@dataclass(frozen=True)
class Credentials:
    """Who a request acts for, handed to add / get / size / delete by the services.

    Only drivers that keep image data in the caller's own account read it (Swift with
    swift_store_multi_tenant: the user's token against the object-store endpoint of
    the user's service catalog); every other driver ignores it. None where there is
    no caller (sweeps, the scrubber)."""

    token: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    #: the caller's service catalog: Keystone v3's (a token's ``catalog``) or the v2
    #: form keystonemiddleware passes as X-Service-Catalog
    service_catalog: tuple = field(default=(), compare=False)

    @classmethod
    def of(cls, ctx: object | None) -> Credentials | None:
        """The credentials of a request context (glimpse.context.RequestContext)."""
        if ctx is None:
            return None
        return cls(token=getattr(ctx, "auth_token", None),
                   user_id=getattr(ctx, "user_id", None),
                   project_id=getattr(ctx, "project_id", None),
                   service_catalog=tuple(getattr(ctx, "service_catalog", None) or ()))

    def endpoint(self, service_type: str, interface: str = "public",
                 region: str | None = None) -> str | None:
        """The URL of the first ``service_type`` endpoint of ``interface`` (public,
        internal, admin; ``publicURL`` etc. are accepted) in ``region`` (any if None)."""
        interface = interface.removesuffix("URL")
        for service in self.service_catalog:
            if not isinstance(service, dict) or service.get("type") != service_type:
                continue
            for endpoint in service.get("endpoints") or ():
                if not isinstance(endpoint, dict):
                    continue
                where = endpoint.get("region_id") or endpoint.get("region")
                if region and where != region:
                    continue
                if "interface" in endpoint:  # Keystone v3
                    url = endpoint.get("url") if endpoint["interface"] == interface else None
                else:  # v2: publicURL, internalURL, adminURL
                    url = endpoint.get(f"{interface}URL")
                if isinstance(url, str) and url:
                    return url
        return None


@dataclass
class StoredData:
    url: str
    size: int
    metadata: dict = field(default_factory=dict)


@dataclass
class DataEntry:
    """One piece of data found in a store by ``list_data``, for sweeps and doctor."""

    url: str
    #: False while an ``add`` is still writing it (or a crashed one left it behind)
    complete: bool
    #: when it was last written, seconds since the epoch
    modified: float
    size: int | None = None


class Store(abc.ABC):
    #: driver type as Glance names it: file, http, s3, swift, rbd
    type: str = ""
    read_only: bool = False
    #: zero runs are not written (holes, thin provisioning)
    sparse_writes: bool = False
    #: the driver can copy data inside the back end without streaming it
    server_side_copy: bool = False
    #: the back end keeps an access list per image that other projects' own
    #: credentials are checked against (multi-tenant Swift): see ``set_acls``
    access_lists: bool = False

    def __init__(self, name: str, description: str = ""):
        self.name = name
        self.description = description

    @abc.abstractmethod
    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        """Store all of ``chunks``. Returns only once the data is durable; on any
        error (including one raised by ``chunks``) nothing is left behind.
        ``creds``, here and below: whom the request is for (most drivers ignore it)."""

    @abc.abstractmethod
    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        """Yield the bytes of ``url`` from ``offset``, ``length`` bytes or to the end."""

    @abc.abstractmethod
    def size(self, url: str, creds: Credentials | None = None) -> int:
        """Size in bytes of the data at ``url``; DataNotFound if absent."""

    @abc.abstractmethod
    def delete(self, url: str, creds: Credentials | None = None) -> None:
        """Remove the data at ``url``; DataNotFound if it is already gone."""

    def set_acls(self, url: str, public: bool = False, read_projects: Iterable[str] = (),
                 write_projects: Iterable[str] = (),
                 creds: Credentials | None = None) -> None:
        """Replace the access list of the data at ``url``: every project may read it
        (``public``) or the ``read_projects``; ``write_projects`` may write. Only
        drivers with ``access_lists`` keep one; the others have nothing to do."""
        return None

    def add_file(self, image_id: str, path: str) -> StoredData | None:
        """Store the data of the local file ``path`` (complete, and never changed
        afterwards) without streaming it, when the driver can do that cheaply (the
        file store: a hard link on the same filesystem); durable on return, like
        ``add``. None when it cannot: the caller then streams the file to ``add``."""
        return None

    def owns(self, url: str) -> bool:
        """Whether ``url`` names data this store holds."""
        return False

    def list_data(self) -> Iterator[DataEntry]:
        """Every piece of image data this store holds, committed or in progress.

        In-progress data carries a name that marks it as such until ``add``
        commits it, so a sweep can find what a crashed worker left behind without
        the database. Drivers that cannot list raise NotImplementedError."""
        raise NotImplementedError(f"store type {self.type!r} cannot list its data")

    def local_path(self, url: str) -> str | None:
        """A local file holding the data, for zero-copy serving; None if not local."""
        return None

    def properties(self) -> dict:
        """What /v2/info/stores/detail shows of this store (Glance's per-type keys)."""
        return {}
