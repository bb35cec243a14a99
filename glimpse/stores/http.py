"""Glance's read-only http store: the data stays at an http(s) URL, nothing is written.

Reads honour offset/length with a Range request (and cope with servers that
ignore Range). Redirects are followed by hand, at most MAX_REDIRECTS, and every
target must pass the web-download URI filter ([import_filtering_opts],
glimpse/domain/uri_filter.check_uri), so a location cannot bounce the service
to an address the operator refused. Every request goes through ``_send``, the one
place a connect-time address guard plugs in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from oslo_config import cfg

from glimpse import outbound
from glimpse.errors import GlimpseError
from glimpse.stores.base import (
    Credentials,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreForbidden,
    StoreUnavailable,
)
from glimpse.stores.options import StoreConfig

MAX_REDIRECTS = 5  # as glance_store's http store
READ_SIZE = 1024 * 1024

OPTS = [
    cfg.IntOpt("http_store_timeout", default=60, min=1,
               help="(Glimpse) Seconds to wait to connect to, and then for each read from, "
               "an http store location."),
]


def build(config: StoreConfig) -> HttpStore:
    return HttpStore(config.name, config.description, conf=config.conf,
                     timeout=getattr(config.section, "http_store_timeout", 60))


def _send(client: httpx.Client, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
    """Open one request (streamed, no redirect following): the only place a
    connection is made."""
    request = client.build_request(method, url, headers=headers)
    return client.send(request, stream=True, follow_redirects=False)


class HttpStore(Store):
    type = "http"
    read_only = True

    def __init__(self, name: str, description: str = "", *, conf: Any = None,
                 timeout: float = 60):
        super().__init__(name, description)
        self.conf = conf
        self.timeout = timeout
        # Locations are user-supplied URLs: with a configuration, every connection
        # goes through the address guard of glimpse.outbound (no loopback or
        # link-local address unless [import_filtering_opts] allowed_hosts names it).
        if conf is not None:
            self._client = outbound.client(conf, timeout=httpx.Timeout(timeout))
        else:
            self._client = httpx.Client(timeout=httpx.Timeout(timeout), trust_env=False,
                                        verify=outbound.default_ssl_context())

    def owns(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and bool(parts.hostname)

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        raise StoreForbidden(f"Store {self.name} is read-only")

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        raise StoreForbidden(f"Store {self.name} is read-only")

    def _open(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        """The response at the end of the redirects, status < 300; typed errors."""
        if not self.owns(url):
            raise DataNotFound(f"Not an http location: {url}")
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                response = _send(self._client, method, url, headers)
            except outbound.DestinationRefused as exc:
                raise StoreForbidden(f"HTTP store refuses {_safe(url)}: {exc.reason}") from None
            except httpx.InvalidURL as exc:  # not an httpx.HTTPError
                raise StoreForbidden(f"HTTP store refuses {_safe(url)}: {exc}") from None
            except httpx.TimeoutException as exc:
                raise StoreUnavailable(f"HTTP store timed out on {_safe(url)}") from exc
            except httpx.HTTPError as exc:
                raise StoreUnavailable(f"HTTP store cannot reach {_safe(url)}: {exc}") from exc
            if response.is_redirect:
                response.close()
                target = urljoin(url, response.headers.get("location", ""))
                self._check_redirect(url, target)
                url = target
                continue
            if response.status_code < 300 or response.status_code == 416:
                return response
            response.close()
            raise _status_error(response.status_code, url)
        raise StoreError(f"HTTP store: more than {MAX_REDIRECTS} redirects from {_safe(url)}")

    def _check_redirect(self, source: str, target: str) -> None:
        if not self.owns(target):
            raise StoreForbidden(f"HTTP store: {_safe(source)} redirects to a non-http URL")
        if self.conf is None:
            return
        from glimpse.domain.uri_filter import check_uri  # noqa: PLC0415

        try:
            check_uri(self.conf, target)
        except GlimpseError as exc:
            raise StoreForbidden(f"HTTP store: redirect from {_safe(source)} refused: "
                                 f"{exc.message}") from exc

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        if length == 0:
            if not self.owns(url):
                raise DataNotFound(f"Not an http location: {url}")
            return iter(())
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        response = self._open("GET", url, headers)
        if response.status_code == 416:  # offset at or past the end
            response.close()
            return iter(())
        skip = offset if (headers and response.status_code == 200) else 0
        return _body(response, url, skip, length)

    def size(self, url: str, creds: Credentials | None = None) -> int:
        response = self._open("HEAD", url, {})
        response.close()
        value = response.headers.get("content-length")
        if value is None or not value.isdigit():
            raise StoreError(f"HTTP store: {_safe(url)} does not say its size")
        return int(value)


def _body(response: httpx.Response, url: str, skip: int, length: int | None) -> Iterator[bytes]:
    """The body, without ``skip`` leading bytes, at most ``length`` bytes (for a
    server that answered a Range request with the whole body)."""
    remaining = length
    try:
        for chunk in response.iter_bytes(READ_SIZE):
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk, skip = chunk[skip:], 0
            if remaining is not None:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            if chunk:
                yield chunk
            if remaining == 0:
                return
    except httpx.TimeoutException as exc:
        raise StoreUnavailable(f"HTTP store timed out reading {_safe(url)}") from exc
    except httpx.HTTPError as exc:
        raise StoreUnavailable(f"HTTP store read of {_safe(url)} failed: {exc}") from exc
    finally:
        response.close()


def _status_error(status: int, url: str) -> StoreError:
    if status in (404, 410):
        return DataNotFound(f"Image data not found at {_safe(url)}")
    if status in (401, 403):
        return StoreForbidden(f"HTTP store refused access to {_safe(url)} ({status})")
    if status >= 500:
        return StoreUnavailable(f"HTTP store answered {status} for {_safe(url)}")
    return StoreError(f"HTTP store answered {status} for {_safe(url)}")


def _safe(url: str) -> str:
    """The URL without user information, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if "@" in parts.netloc:
        return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
    return url
