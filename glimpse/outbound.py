"""HTTP requests to URIs that users choose: web-download, the legacy tasks API's
``import_from`` and the http store's locations.

A user who may name a URI may try to make the service fetch from itself or
from its link (the cloud metadata service at 169.254.169.254). So the host is
resolved here, once, the resolved addresses are judged by
``glimpse.domain.uri_filter.address_refusal``, and the connection is made to
one of exactly those addresses: no second lookup a DNS server could answer
differently (rebinding). The request keeps the URI's host name in its ``Host``
header, and TLS uses it for SNI and certificate verification. Every
connection, including each redirect hop to a new host, goes through the same
check, because the check sits where connections are opened (an httpcore
network backend), not in front of the request.

Environment proxies are not used: through a proxy the address connected to
would be the proxy's, and the destination could not be checked.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx
from oslo_config import cfg

from glimpse.domain import uri_filter

Resolver = Callable[[str, int], list[str]]


class DestinationRefused(Exception):
    """The destination's addresses are not allowed (or cannot be resolved)."""

    def __init__(self, host: str, reason: str):
        super().__init__(reason)
        self.host = host
        self.reason = reason


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, once each."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# The one resolver every outbound request uses; tests put their own in its place.
resolver: Resolver = system_resolver


def _literal(host: str) -> str | None:
    """The address itself when ``host`` is an IP literal (no lookup needed)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


def checked_addresses(conf: cfg.ConfigOpts, host: str, port: int) -> list[str]:
    """Resolve ``host`` and return its addresses if they may be connected to;
    raise DestinationRefused otherwise."""
    name = uri_filter.normalize_host(host)
    literal = _literal(name)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = resolver(name, port)
        except (OSError, UnicodeError) as exc:
            raise DestinationRefused(name, f"host {name!r} cannot be resolved: {exc}") from None
    reason = uri_filter.address_refusal(conf, name, addresses)
    if reason is not None:
        raise DestinationRefused(name, reason)
    return addresses


def check_destination(conf: cfg.ConfigOpts, url: str,
                      purpose: str = uri_filter.WEB_DOWNLOAD) -> None:
    """Everything checked before a URI is accepted (a 400 BadRequest if refused):
    ``[import_filtering_opts]`` on the URI as written, then its host's addresses."""
    uri_filter.check_uri(conf, url, purpose)
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL as exc:
        # What httpx will not fetch (127.000.000.001: leading zeros) is refused
        # here, as a 400, rather than failing later as a 500.
        raise uri_filter.refuse(url, f"the URI cannot be parsed: {exc}", purpose) from None
    try:
        checked_addresses(conf, parts.host, parts.port or _default_port(parts.scheme))
    except DestinationRefused as exc:
        raise uri_filter.refuse(url, exc.reason, purpose) from None


def _default_port(scheme: str) -> int:
    return {"http": 80, "https": 443}.get(scheme, 0)


class _GuardedBackend(httpcore.SyncBackend):
    """Opens each TCP connection to an address it has resolved and checked itself."""

    def __init__(self, conf: cfg.ConfigOpts):
        self.conf = conf

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        addresses = checked_addresses(self.conf, host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address,
                                           socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs, no environment), built once.

    Loading the CA bundle takes tens of milliseconds; a context is safe to share
    between clients and threads once set up, and nothing here changes it."""
    return httpx.create_ssl_context(trust_env=False)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the checked connections of ``_GuardedBackend``."""

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(verify=default_ssl_context(), trust_env=False)
        # httpx builds its pool without a way to pass a network backend; this is
        # the same pool (default TLS context, no retries) with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=default_ssl_context(), network_backend=_GuardedBackend(conf))


def client(conf: cfg.ConfigOpts, **kwargs: Any) -> httpx.Client:
    """An httpx client whose every connection is checked (see the module doc)."""
    return httpx.Client(transport=GuardedTransport(conf), trust_env=False, **kwargs)
