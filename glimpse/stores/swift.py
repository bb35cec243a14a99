"""OpenStack Swift store (python-swiftclient), tempauth (v1) or Keystone (v3).

Locations, as Glance forms them but never with credentials in them:
``swift+config://<reference>/<container>/<object>`` when the accounts come from
swift_store_config_file, else ``swift+http(s)://<auth address>/<container>/<object>``
(Glance put ``user:key@`` in front of the address; such legacy URLs are understood,
the user part is ignored and the store's own credentials are used).

Small data goes in one PUT, which Swift makes visible only when complete. Larger data
is written as segments ``<object>-<token>-00001`` ... streamed with chunked transfer
encoding (each at most swift_store_large_object_chunk_size), then a Dynamic Large
Object manifest ``<object>`` (``X-Object-Manifest``, as Glance writes it) commits
them. Segments without their manifest are data in progress: ``list_data`` reports
them as ``...?in_progress=<token>`` so a sweep can remove what a crashed worker left.

Multi-tenant (swift_store_multi_tenant, as Glance): each image goes to the account of
the project whose request stores it, with that request's token; the account URL is
swift_store_endpoint or the object-store endpoint of the caller's service catalog.
Each image has a container of its own, ``<swift_store_container>_<image id>``
(created on upload, removed with the image), and its location is the full storage
URL: ``swift+http(s)://<host>/v1/AUTH_<project>/<container>_<id>/<id>``. The
caller's token is only ever sent to the scheme, host and port of the caller's own
object-store endpoint, never to another host a location names. The service holds
no credentials of its own then, so it cannot list the accounts (``list_data``) and
sweeps or the scrubber cannot reach the data without a caller.

Multi-tenant containers carry ACLs (``set_acls``, as Glance's): ``X-Container-Read``
``*:*`` for a public image (any project's token, never anonymous), else
``<project>:*`` for each project that may read it; ``X-Container-Write`` for the
projects given. The projects of swift_store_admin_tenants are in both lists of every
container, whatever the image (Glance puts them in the write list only, where
Swift's keystoneauth does not let them read). Only a token of the account that holds
the container may change its ACLs (Swift ignores the headers from anyone else).
"""

from __future__ import annotations

import http.client
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import swiftclient
import urllib3.exceptions
from requests.exceptions import RequestException

from glimpse.stores.base import (
    Credentials,
    DataEntry,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreForbidden,
    StoreFull,
    StoreUnavailable,
)
from glimpse.stores.parts import Source, check_object_name, is_object_name

LOG = logging.getLogger(__name__)
MIB = 1024 * 1024
READ_SIZE = 1 * MIB
# Data up to this size is read ahead to decide between one PUT and segments; the size
# of an upload is not known in advance and memory must stay bounded.
SINGLE_PUT_BUFFER = 8 * MIB
_SEGMENT = re.compile(r"(?P<obj>.+)-(?P<token>[0-9a-f]{12})-(?P<number>\d{5})")
_TOKEN = re.compile(r"[0-9a-f]{12}")
# What a project id may look like in a container ACL: Keystone's ids are hex, and
# ",", ":", "." or spaces would change the ACL itself (".r:*" lets anyone in).
_ACL_PROJECT = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A stream broken in the middle of a GET: what swift_store_retry_get_count resumes.
_BROKEN_STREAM = (RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                  OSError)


# Keystone sessions (each keeps its token until shortly before it expires), shared by
# every store of the process that uses the same account.
_SESSIONS: dict[tuple, object] = {}
_SESSIONS_LOCK = threading.Lock()


@dataclass(frozen=True)
class SwiftAccount:
    """One set of credentials: a reference of swift_store_config_file, or the
    swift_store_auth_address / _user / _key options."""

    auth_address: str
    user: str
    key: str
    auth_version: str = "3"
    user_domain_id: str | None = None
    user_domain_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None


@dataclass(frozen=True)
class _Location:
    reference: str
    container: str
    obj: str
    in_progress: str | None = None


class SwiftStore(Store):
    type = "swift"

    def __init__(self, name: str, *, accounts: dict[str, SwiftAccount] | None = None,
                 default_reference: str = "ref1", use_references: bool = False,
                 auth_address: str = "", user: str = "", key: str = "",
                 auth_version: str = "3", container: str = "glance",
                 create_container_on_put: bool = False,
                 large_object_size: int = 5 * 1024 * MIB,
                 large_object_chunk_size: int = 200 * MIB, retry_get_count: int = 0,
                 multiple_containers_seed: int = 0, region_name: str | None = None,
                 endpoint: str | None = None,
                 endpoint_type: str = "publicURL", service_type: str = "object-store",
                 insecure: bool = False, cacert: str | None = None, description: str = "",
                 timeout: float = 60, retries: int = 2, multi_tenant: bool = False,
                 admin_tenants: Iterable[str] = ()):
        super().__init__(name, description)
        if accounts is None:
            accounts = {default_reference: SwiftAccount(auth_address, user, key, auth_version)}
        if default_reference not in accounts:
            raise ValueError(f"Store {name}: default_swift_reference '{default_reference}' "
                             "is not a reference of swift_store_config_file")
        if multi_tenant and use_references:
            raise ValueError(f"Store {name}: swift_store_multi_tenant and "
                             "swift_store_config_file are mutually exclusive")
        account = accounts[default_reference]
        if not multi_tenant and (not account.auth_address or not account.user
                                 or not account.key):
            raise ValueError(f"Store {name}: a Swift auth address, user and key are required")
        if multi_tenant and not container:
            raise ValueError(f"Store {name}: swift_store_container must be set")
        self.multi_tenant = multi_tenant
        self.access_lists = multi_tenant  # each image's container has its own ACLs
        self.admin_tenants = tuple(dict.fromkeys(admin_tenants))
        for project in self.admin_tenants:
            if not _ACL_PROJECT.fullmatch(project):
                raise ValueError(f"Store {name}: swift_store_admin_tenants: {project!r} is "
                                 "not a project id (letters, digits, '-' and '_')")
        if not 0 <= multiple_containers_seed <= 32:
            raise ValueError(f"Store {name}: swift_store_multiple_containers_seed must be "
                             "between 0 and 32")
        self.accounts = accounts
        self.default_reference = default_reference
        self.use_references = use_references
        self.container = container
        self.create_container_on_put = create_container_on_put
        self.large_object_size = large_object_size
        self.chunk_size = large_object_chunk_size
        self.retry_get_count = retry_get_count
        self.seed = multiple_containers_seed
        self.os_options = {"region_name": region_name, "endpoint_type": endpoint_type,
                           "service_type": service_type}
        if endpoint:  # swift_store_endpoint: the account URL, instead of the catalog's
            self.os_options["object_storage_url"] = endpoint.rstrip("/")
        self.insecure, self.cacert = insecure, cacert
        self.timeout, self.retries = timeout, retries
        self._tokens: dict[str, tuple[str, str]] = {}
        self._known_containers: set[str] = set()
        self._lock = threading.Lock()

    def properties(self) -> dict:
        """What GET /v2/info/stores/detail shows of this store (Glance's keys, bytes)."""
        return {"container": self.container, "large_object_size": self.large_object_size,
                "large_object_chunk_size": self.chunk_size}

    # ------------------------------------------------------------ URLs

    def _base(self, reference: str) -> str:
        if self.multi_tenant:  # the reference is the account's storage URL
            scheme = "swift+http" if reference.startswith("http://") else "swift+https"
            return f"{scheme}://{reference.split('://', 1)[-1].strip('/')}"
        if self.use_references:
            return f"swift+config://{reference}"
        address = self.accounts[reference].auth_address
        scheme = "swift+http" if address.startswith("http://") else "swift+https"
        return f"{scheme}://{address.split('://', 1)[-1].strip('/')}"

    def _url(self, loc: _Location) -> str:
        url = f"{self._base(loc.reference)}/{loc.container}/{loc.obj}"
        return url if loc.in_progress is None else f"{url}?in_progress={loc.in_progress}"

    def _parse(self, url: str) -> _Location:
        refused = DataNotFound(f"Not a Swift location of store {self.name}")
        try:
            parts = urlsplit(url)
        except ValueError:
            raise refused from None
        if parts.fragment:
            raise refused
        scheme = "swift+https" if parts.scheme == "swift" else parts.scheme
        netloc = parts.netloc.rsplit("@", 1)[-1]  # legacy URLs carry user:key@
        if self.multi_tenant:
            reference, rest = self._tenant_account(scheme, parts.netloc, parts.path)
        elif self.use_references:
            if scheme != "swift+config" or netloc not in self.accounts:
                raise refused
            reference, rest = netloc, parts.path
        else:
            base = self._base(self.default_reference)
            prefix = base.split("://", 1)[1]
            whole = netloc + parts.path
            if scheme != base.split("://", 1)[0] or not whole.startswith(prefix + "/"):
                raise refused
            reference, rest = self.default_reference, whole[len(prefix):]
        pieces = rest.split("/")
        if len(pieces) != 3 or pieces[0] != "" or not is_object_name(pieces[2]):
            raise refused
        container, obj = pieces[1], pieces[2]
        if container != self._container_for(obj):
            raise refused
        in_progress = None
        if parts.query:
            query = parse_qs(parts.query, strict_parsing=True)
            tokens = query.get("in_progress", [])
            if set(query) != {"in_progress"} or len(tokens) != 1 or not _TOKEN.fullmatch(
                    tokens[0]):
                raise refused
            in_progress = tokens[0]
        return _Location(reference, container, obj, in_progress)

    def _tenant_account(self, scheme: str, netloc: str, path: str) -> tuple[str, str]:
        """Multi-tenant: the storage URL a location names, and ``/<container>/<obj>``."""
        refused = DataNotFound(f"Not a Swift location of store {self.name}")
        pieces = path.split("/")
        if (scheme not in ("swift+http", "swift+https") or not netloc or "@" in netloc
                or "%" in path or len(pieces) < 3 or pieces[0] != ""
                or any(p in ("", ".", "..") for p in pieces[1:])):
            raise refused
        account = "/".join(pieces[:-2])
        web = "http" if scheme == "swift+http" else "https"
        return f"{web}://{netloc}{account}", "/" + "/".join(pieces[-2:])

    def owns(self, url: str) -> bool:
        try:
            self._parse(url)
        except StoreError:
            return False
        return True

    def _container_for(self, obj: str) -> str:
        """swift_store_multiple_containers_seed: the first N characters of the image id
        (dashes not counted) pick one of 16**N containers. Multi-tenant: a container
        per image, ``<container>_<image id>``, as Glance names it."""
        if self.multi_tenant:
            return f"{self.container}_{obj}"
        if not self.seed:
            return self.container
        lowered = obj.lower()
        count = self.seed + lowered[:self.seed].count("-")
        return f"{self.container}_{lowered[:count]}"

    # ------------------------------------------------------------ connections

    def _storage_url(self, creds: Credentials | None) -> str:
        """Multi-tenant: the caller's account URL (swift_store_endpoint, else the
        object-store endpoint of the caller's service catalog)."""
        if creds is None or not creds.token:
            raise StoreForbidden("Multi-tenant Swift stores image data with the request's "
                                 "own token, and this request has none")
        url = self.os_options.get("object_storage_url") or creds.endpoint(
            self.os_options["service_type"], self.os_options["endpoint_type"],
            self.os_options["region_name"])
        if not url:
            raise StoreError(f"No {self.os_options['service_type']} endpoint in the "
                             "caller's service catalog (or set swift_store_endpoint)")
        if not url.startswith(("http://", "https://")):
            raise StoreError("The object-store endpoint of the service catalog is not an "
                             "http(s) URL")
        return url.rstrip("/")

    def _check_account(self, loc: _Location, creds: Credentials | None) -> None:
        """Multi-tenant: the caller's token goes only to the caller's own object-store
        endpoint (scheme, host and port), whatever account of it a location names."""
        if not self.multi_tenant:
            return
        mine = urlsplit(self._storage_url(creds))
        theirs = urlsplit(loc.reference)
        if (mine.scheme, mine.netloc) != (theirs.scheme, theirs.netloc):
            raise StoreForbidden(f"The location is on {theirs.netloc}, not on the "
                                 "object-store endpoint of the caller's catalog: the "
                                 "caller's token is not sent there")

    @contextmanager
    def _connection(self, reference: str, retries: int | None = None,
                    creds: Credentials | None = None) -> Iterator[swiftclient.Connection]:
        """A connection that reuses the reference's token (v1: renewed by swiftclient
        on 401; Keystone: by keystoneauth before it expires). Multi-tenant: the
        account URL ``reference`` with the caller's token."""
        common = {"retries": self.retries if retries is None else retries,
                  "starting_backoff": 0.5, "max_backoff": 4, "timeout": self.timeout,
                  "insecure": self.insecure, "cacert": self.cacert}
        if self.multi_tenant:
            if creds is None or not creds.token:
                raise StoreForbidden("Multi-tenant Swift needs the request's token")
            conn = swiftclient.Connection(preauthurl=reference, preauthtoken=creds.token,
                                          **common)
            try:
                yield conn
            finally:
                conn.close()
            return
        account = self.accounts[reference]
        if account.auth_version == "1":
            with self._lock:
                cached = self._tokens.get(reference)
            conn = swiftclient.Connection(
                authurl=account.auth_address, user=account.user, key=account.key,
                auth_version="1", preauthurl=cached[0] if cached else None,
                preauthtoken=cached[1] if cached else None, **common)
        else:
            url, token = self._keystone_token(reference)
            conn = swiftclient.Connection(preauthurl=url, preauthtoken=token, **common)
        try:
            yield conn
        finally:
            if account.auth_version == "1" and conn.url and conn.token:
                with self._lock:
                    self._tokens[reference] = (conn.url, conn.token)
            conn.close()

    def _keystone_token(self, reference: str) -> tuple[str, str]:
        """Token and account URL from Keystone v3 (keystoneauth keeps the token and
        renews it before it expires); the URL is swift_store_endpoint or the catalog's."""
        from keystoneauth1 import exceptions as ks_errors
        from keystoneauth1 import session as ks_session
        from keystoneauth1.identity import v3

        account = self.accounts[reference]
        key = (account, self.insecure, self.cacert)
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(key)
            if session is None:
                project, _, user = account.user.rpartition(":")
                auth = v3.Password(
                    auth_url=account.auth_address, username=user, password=account.key,
                    project_name=project or None,
                    user_domain_id=account.user_domain_id or (
                        None if account.user_domain_name else "default"),
                    user_domain_name=account.user_domain_name,
                    project_domain_id=account.project_domain_id or (
                        None if account.project_domain_name else "default"),
                    project_domain_name=account.project_domain_name)
                verify = False if self.insecure else (self.cacert or True)
                session = ks_session.Session(auth=auth, verify=verify, timeout=self.timeout)
                _SESSIONS[key] = session
        try:
            token = session.get_token()
            url = self.os_options.get("object_storage_url") or session.get_endpoint(
                service_type=self.os_options["service_type"],
                interface=self.os_options["endpoint_type"].removesuffix("URL"),
                region_name=self.os_options["region_name"])
        except ks_errors.Unauthorized as exc:
            raise StoreForbidden("Keystone refused the Swift store's credentials") from exc
        except ks_errors.EndpointNotFound as exc:
            raise StoreError("No object-store endpoint in Keystone's catalog (set "
                             "swift_store_endpoint)") from exc
        except ks_errors.ClientException as exc:
            raise StoreUnavailable(f"Keystone cannot be reached ({type(exc).__name__})") \
                from exc
        if not url:
            raise StoreError("No object-store endpoint in Keystone's catalog")
        return url, token

    def _forget_token(self, reference: str) -> None:
        with self._lock:
            self._tokens.pop(reference, None)
        with _SESSIONS_LOCK:
            session = _SESSIONS.get((self.accounts[reference], self.insecure, self.cacert))
        if session is not None:
            session.invalidate()

    @contextmanager
    def _calls(self, reference: str, what: str, missing: str | None = None,
               ) -> Iterator[None]:
        """Map swiftclient's and the network's errors to typed store errors."""
        try:
            yield
        except swiftclient.ClientException as exc:
            if exc.http_status == 401 and not self.multi_tenant:
                self._forget_token(reference)  # revoked: the next call gets a new one
            raise _mapped(exc, what, missing) from exc
        except (OSError, RequestException, urllib3.exceptions.HTTPError) as exc:
            raise StoreUnavailable(f"Swift cannot be reached ({what}: "
                                   f"{type(exc).__name__})") from exc

    # ------------------------------------------------------------ add

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        obj = check_object_name(image_id)
        reference = self._storage_url(creds) if self.multi_tenant else self.default_reference
        loc = _Location(reference, self._container_for(obj), obj)
        source = Source(chunks)
        head = source.read_ahead(min(SINGLE_PUT_BUFFER, self.chunk_size, self.large_object_size))
        with self._connection(loc.reference, creds=creds) as conn, \
                self._calls(loc.reference, "upload"):
            self._ensure_container(conn, loc.container)
            try:
                if source.exhausted and len(head) < self.large_object_size:
                    conn.put_object(loc.container, loc.obj, head, content_length=len(head))
                    return StoredData(url=self._url(loc), size=len(head))
                size = self._segmented(conn, loc, source, creds)
            except BaseException:
                if self.multi_tenant:  # the image's own container goes too
                    self._drop_container(conn, loc.container, quietly=True)
                raise
        return StoredData(url=self._url(loc), size=size)

    def _segmented(self, conn: swiftclient.Connection, loc: _Location, source: Source,
                   creds: Credentials | None = None) -> int:
        prefix = f"{loc.obj}-{secrets.token_hex(6)}-"
        size = 0
        try:
            number = 1
            while not source.at_end():
                segment = source.take(self.chunk_size)
                conn.put_object(loc.container, f"{prefix}{number:05d}", segment,
                                content_length=None)
                size += segment.count
                number += 1
            # The commit point: until the manifest exists the segments are in progress.
            conn.put_object(loc.container, loc.obj, b"", content_length=0,
                            headers={"X-Object-Manifest": f"{loc.container}/{prefix}"})
        except BaseException:
            self._delete_prefix(loc.reference, loc.container, prefix, quietly=True,
                                creds=creds)
            raise
        return size

    def _ensure_container(self, conn: swiftclient.Connection, container: str) -> None:
        if self.multi_tenant:  # the image's own container, in the caller's account
            conn.put_container(container)
            return
        if container in self._known_containers:
            return
        try:
            conn.head_container(container)
        except swiftclient.ClientException as exc:
            if exc.http_status != 404:
                raise
            if not self.create_container_on_put:
                raise StoreError(f"The container {container} does not exist in Swift (set "
                                 "swift_store_create_container_on_put to create it)") from exc
            conn.put_container(container)
        self._known_containers.add(container)

    @staticmethod
    def _drop_container(conn: swiftclient.Connection, container: str,
                        quietly: bool = False) -> None:
        """Multi-tenant: remove an image's container (one that still holds something,
        409, or is gone already stays as it is; ``quietly``: whatever fails)."""
        try:
            conn.delete_container(container)
        except swiftclient.ClientException as exc:
            if not quietly and exc.http_status not in (404, 409):
                raise
        except (OSError, RequestException, urllib3.exceptions.HTTPError):
            if not quietly:
                raise

    # ------------------------------------------------------------ read

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        loc = self._committed(url, creds)
        return self._stream(loc, offset, length, creds)

    def _committed(self, url: str, creds: Credentials | None = None) -> _Location:
        loc = self._parse(url)
        self._check_account(loc, creds)
        if loc.in_progress is not None:
            raise DataNotFound(f"Image data {loc.obj} is still being uploaded")
        return loc

    def _stream(self, loc: _Location, offset: int, length: int | None,
                creds: Credentials | None = None) -> Iterator[bytes]:
        if length == 0:
            self._head(loc, creds)
            return
        end = None if length is None else offset + length - 1
        position, retries = offset, 0
        while end is None or position <= end:
            headers = {}
            if position or end is not None:
                headers["Range"] = f"bytes={position}-{'' if end is None else end}"
            # retries=0: swiftclient would resume a broken body by itself, ignoring
            # swift_store_retry_get_count (and never for a range read).
            with self._connection(loc.reference, retries=0, creds=creds) as conn:
                try:
                    with self._calls(loc.reference, "download", missing=loc.obj):
                        _, body = conn.get_object(loc.container, loc.obj, headers=headers,
                                                  resp_chunk_size=READ_SIZE)
                except StoreError as exc:
                    if isinstance(exc.__cause__, swiftclient.ClientException) and \
                            exc.__cause__.http_status == 416:
                        return  # offset at or past the end
                    raise
                try:
                    for piece in body:
                        position += len(piece)
                        yield piece
                    return
                except _BROKEN_STREAM as exc:
                    if retries >= self.retry_get_count:
                        raise StoreUnavailable(
                            f"Swift download of {loc.obj} broke off after {position} bytes "
                            f"({type(exc).__name__})") from exc
                    retries += 1  # swift_store_retry_get_count: resume from the last byte
                finally:
                    body.close()

    def _head(self, loc: _Location, creds: Credentials | None = None) -> dict:
        with self._connection(loc.reference, creds=creds) as conn, \
                self._calls(loc.reference, "head", missing=loc.obj):
            return conn.head_object(loc.container, loc.obj)

    def size(self, url: str, creds: Credentials | None = None) -> int:
        return int(self._head(self._committed(url, creds), creds).get("content-length", 0))

    # ------------------------------------------------------------ access lists

    def set_acls(self, url: str, public: bool = False, read_projects: Iterable[str] = (),
                 write_projects: Iterable[str] = (),
                 creds: Credentials | None = None) -> None:
        """Multi-tenant: replace the read and write ACLs of the image's container
        (the admin tenants are always in both). Single-tenant: nothing to do (as
        Glance), the data is only ever read with the store's own account."""
        if not self.multi_tenant:
            return
        loc = self._committed(url, creds)
        if loc.reference != self._storage_url(creds):
            raise StoreForbidden("Only a token of the account that holds the image's "
                                 "container can change its ACLs")
        readers = _acl(self.name, [*read_projects, *self.admin_tenants])
        writers = _acl(self.name, [*write_projects, *self.admin_tenants])
        headers = {"X-Container-Read": "*:*" if public else readers,
                   "X-Container-Write": writers}
        with self._connection(loc.reference, creds=creds) as conn, \
                self._calls(loc.reference, "ACL update", missing=loc.obj):
            conn.post_container(loc.container, headers)

    # ------------------------------------------------------------ delete and list

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        loc = self._parse(url)
        self._check_account(loc, creds)
        if loc.in_progress is not None:
            if not self._delete_prefix(loc.reference, loc.container,
                                       f"{loc.obj}-{loc.in_progress}-", creds=creds):
                raise DataNotFound(f"No segments of {loc.obj} in progress")
            return
        manifest = self._head(loc, creds).get("x-object-manifest")
        with self._connection(loc.reference, creds=creds) as conn, \
                self._calls(loc.reference, "delete", missing=loc.obj):
            conn.delete_object(loc.container, loc.obj)
        if manifest and "/" in manifest:
            container, prefix = manifest.split("/", 1)
            if container == loc.container and prefix.startswith(f"{loc.obj}-"):
                self._delete_prefix(loc.reference, container, prefix, creds=creds)
        if self.multi_tenant:  # as Glance: the image's container goes with it
            with self._connection(loc.reference, creds=creds) as conn, \
                    self._calls(loc.reference, "delete container"):
                self._drop_container(conn, loc.container)

    def _delete_prefix(self, reference: str, container: str, prefix: str,
                       quietly: bool = False, creds: Credentials | None = None) -> int:
        """Delete every object named ``prefix...``; how many there were."""
        try:
            with self._connection(reference, creds=creds) as conn, \
                    self._calls(reference, "delete segments"):
                _, objects = conn.get_container(container, prefix=prefix, full_listing=True)
                for item in objects:
                    try:
                        conn.delete_object(container, item["name"])
                    except swiftclient.ClientException as exc:
                        if exc.http_status != 404:
                            raise
                return len(objects)
        except StoreError:
            if quietly:  # what stays is listed as in progress: the sweep removes it
                return 0
            raise

    def list_data(self) -> Iterator[DataEntry]:
        if self.multi_tenant:
            raise NotImplementedError("a multi-tenant Swift store keeps data in each "
                                      "project's own account, which it cannot list")
        reference = self.default_reference
        with self._connection(reference) as conn, self._calls(reference, "list"):
            if self.seed:
                _, found = conn.get_account(prefix=f"{self.container}_", full_listing=True)
                containers = [c["name"] for c in found]
            else:
                containers = [self.container]
            for container in containers:
                try:
                    _, objects = conn.get_container(container, full_listing=True)
                except swiftclient.ClientException as exc:
                    if exc.http_status == 404:
                        continue
                    raise
                yield from self._entries(conn, reference, container, objects)

    def _entries(self, conn: swiftclient.Connection, reference: str, container: str,
                 objects: list[dict]) -> Iterator[DataEntry]:
        plain: dict[str, dict] = {}
        groups: dict[tuple[str, str], list[dict]] = {}
        for item in objects:
            match = _SEGMENT.fullmatch(item["name"])
            if match and is_object_name(match["obj"]):
                groups.setdefault((match["obj"], match["token"]), []).append(item)
            elif is_object_name(item["name"]):
                plain[item["name"]] = item
        committed: dict[str, int] = {}
        for (obj, token), segments in groups.items():
            total = sum(int(s["bytes"]) for s in segments)
            manifest = None
            if obj in plain:
                manifest = conn.head_object(container, obj).get("x-object-manifest")
            if manifest == f"{container}/{obj}-{token}-":
                committed[obj] = total
                continue
            yield DataEntry(self._url(_Location(reference, container, obj, token)), False,
                            max(_timestamp(s["last_modified"]) for s in segments), total)
        for obj, item in plain.items():
            yield DataEntry(self._url(_Location(reference, container, obj)), True,
                            _timestamp(item["last_modified"]),
                            committed.get(obj, int(item["bytes"])))


def _acl(store: str, projects: Iterable[str]) -> str:
    """``<project>:*`` for each project (any user of it), as Glance writes them; ids
    that could change the ACL's meaning are left out (and logged)."""
    entries = []
    for project in dict.fromkeys(projects):
        if _ACL_PROJECT.fullmatch(project):
            entries.append(f"{project}:*")
        else:
            LOG.warning("store %s: %r is not a project id; left out of the container "
                        "ACL", store, project)
    return ",".join(entries)


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def _mapped(exc: swiftclient.ClientException, what: str, missing: str | None) -> StoreError:
    status = exc.http_status or 0
    if status == 404 and missing is not None:
        return DataNotFound(f"Image data {missing} not found in Swift")
    if status in (401, 403):
        return StoreForbidden(f"Swift refused the {what} ({status})")
    if status in (413, 507):
        return StoreFull(f"Swift has no room for the image ({status})")
    if status >= 500 or status == 0:
        return StoreUnavailable(f"Swift could not complete the {what} ({status or 'no answer'})")
    return StoreError(f"Swift {what} failed ({status})")
