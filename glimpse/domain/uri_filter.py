"""Which URIs the web-download import method may fetch.

The decision follows Glance's ``[import_filtering_opts]`` logic exactly, level
by level: scheme, then host, then port (the port only when the URI names one).
At each level an allowlist, when set, decides alone; otherwise a blocklist,
when set, refuses what it lists. A URI without a port uses its scheme's
default port, which is never filtered.

What Glimpse adds, without changing that logic, is normalisation, so that two
spellings of one destination cannot be judged differently: host names are
compared lower-cased without a trailing dot, IPv6 literals without brackets and
in their compressed form, and numeric IPv4 shorthands (``127.1``,
``0x7f.0.0.1``, ``2130706433``, ``::ffff:127.0.0.1``) as the dotted quad a
resolver would connect to. URIs whose authority different HTTP libraries parse
differently (user information, backslashes, percent-escapes or non-ASCII in
the host, control characters) are refused outright.

``check_uri`` judges the URI as written; ``address_refusal`` judges the
addresses its host resolves to (the resolving and connecting are I/O and live
in ``glimpse.outbound``): loopback, link-local (the cloud metadata address
169.254.169.254 among them) and unspecified addresses, also in their
IPv4-mapped IPv6 forms, are refused unless the host is in ``allowed_hosts``,
and ``disallowed_hosts`` applies to each resolved address as well.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from oslo_config import cfg, types

from glimpse.config import list_opt
from glimpse.errors import BadRequest

GROUP = "import_filtering_opts"

_NUMERIC_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")
_HOST_CHECK = types.HostAddress()


def normalize_host(host: str) -> str:
    """The canonical spelling of a host name or IP literal, for comparisons."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.rstrip(".")
    if _NUMERIC_IPV4.match(text):
        try:
            return socket.inet_ntoa(socket.inet_aton(text))
        except OSError:
            return text
    if ":" in text:
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            return text
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else address.compressed
    return text


class _Scheme(types.String):
    def __init__(self) -> None:
        super().__init__(quotes=True, type_name="scheme")

    def __call__(self, value: Any) -> str:
        return str(super().__call__(value)).strip().lower()


class _Host(types.String):
    """A host name or IP address (IPv6 with or without brackets), normalised."""

    def __init__(self) -> None:
        super().__init__(quotes=True, type_name="host address")

    def __call__(self, value: Any) -> str:
        # Brackets are never part of a host; stripping them loosely also copes
        # with "[::1], [::2]" written without the list's own brackets.
        bare = str(super().__call__(value)).strip().lstrip("[").rstrip("]")
        _HOST_CHECK(bare)  # raises ValueError for something that is not a host
        return normalize_host(bare)


_PORT = types.Integer(min=1, max=65535)

import_filtering_opts: list[cfg.Opt] = [
    list_opt("allowed_schemes", _Scheme(), ["http", "https"],
             "URI schemes web-download may use. When set, disallowed_schemes is ignored."),
    list_opt("disallowed_schemes", _Scheme(), [],
             "URI schemes web-download refuses (only when allowed_schemes is empty)."),
    list_opt("allowed_hosts", _Host(), [],
             "Hosts web-download may fetch from. When set, disallowed_hosts is ignored. "
             "A host that resolves to a loopback, link-local or unspecified address is "
             "refused unless it is listed here."),
    list_opt("disallowed_hosts", _Host(), [],
             "Hosts web-download refuses (only when allowed_hosts is empty), by name and "
             "by the addresses names resolve to."),
    list_opt("allowed_ports", _PORT, [80, 443],
             "Ports a web-download URI may name explicitly. When set, disallowed_ports is "
             "ignored. A URI without a port (the scheme's default) is not port-filtered."),
    list_opt("disallowed_ports", _PORT, [],
             "Ports a web-download URI may not name (only when allowed_ports is empty)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(import_filtering_opts, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, list(import_filtering_opts))]


def _group(conf: cfg.ConfigOpts) -> Any:
    try:
        group = conf[GROUP]
        group.allowed_schemes  # noqa: B018 - probe that the options exist
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
        register_opts(conf)
        group = conf[GROUP]
    return group


def _redact(url: str) -> str:
    """The URI as it may appear in a message: without any user information."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" in parts.netloc:
        return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
    return url


WEB_DOWNLOAD = "web-download"
LEGACY_IMPORT = "legacy import task"


def _refuse(url: str, reason: str, purpose: str = WEB_DOWNLOAD) -> BadRequest:
    return BadRequest(f"URI for {purpose} does not pass filtering: {_redact(url)} ({reason})")


def refuse(url: str, reason: str, purpose: str = WEB_DOWNLOAD) -> BadRequest:
    """The error for a URI refused for ``reason`` (the same words at every check)."""
    return _refuse(url, reason, purpose)


def check_legacy_location(uri: object) -> str:
    """The tasks API's ``import_from``: http(s) only, with Glance's messages."""
    if not uri or not isinstance(uri, str):
        raise BadRequest(f"Invalid location: {uri}")
    if uri.startswith(("http://", "https://")):
        return uri
    if uri.startswith(("file:///", "filesystem:///")):
        raise BadRequest("File based imports are not allowed. Please use a non-local source "
                         "of image data.")
    raise BadRequest("The given uri is not valid. Please specify a valid uri from the "
                     "following list of supported uri ['http']")


def _judge(level: str, value: object, allowed: list[Any], disallowed: list[Any]) -> str | None:
    """Seed 000 §6.3.1 steps B and C for one level; the reason it refuses, or None."""
    if allowed:
        if value not in allowed:
            return f"{level} {value!r} is not in allowed_{level}s"
        return None
    if value in disallowed:
        return f"{level} {value!r} is in disallowed_{level}s"
    return None


def check_uri(conf: cfg.ConfigOpts, url: str, purpose: str = WEB_DOWNLOAD) -> None:
    """Refuse (BadRequest) a URI that [import_filtering_opts] does not allow."""
    try:
        _check_uri(conf, url)
    except BadRequest as exc:
        if purpose == WEB_DOWNLOAD:
            raise
        raise BadRequest(exc.message.replace(f"URI for {WEB_DOWNLOAD} ", f"URI for {purpose} ",
                                             1)) from None


def _check_uri(conf: cfg.ConfigOpts, url: str) -> None:
    group = _group(conf)
    # Read every list now, so a bad value in the config fails every check alike.
    allowed_schemes, disallowed_schemes = group.allowed_schemes, group.disallowed_schemes
    allowed_hosts, disallowed_hosts = group.allowed_hosts, group.disallowed_hosts
    allowed_ports, disallowed_ports = group.allowed_ports, group.disallowed_ports
    if not url:
        raise _refuse(url, "the URI is empty")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise _refuse(url, "the URI contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _refuse(url, f"the URI cannot be parsed: {exc}") from None

    scheme = parts.scheme.lower()
    if not scheme:
        raise _refuse(url, "scheme is missing")
    reason = _judge("scheme", scheme, allowed_schemes, disallowed_schemes)
    if reason:
        raise _refuse(url, reason)

    netloc = parts.netloc
    if "@" in netloc:
        raise _refuse(url, "user information in the URI is not allowed")
    if "\\" in netloc:
        raise _refuse(url, "backslash in the URI authority is not allowed")
    raw_host = parts.hostname
    if not raw_host:
        raise _refuse(url, "host is missing")
    if "%" in raw_host or not raw_host.isascii():
        raise _refuse(url, "host must be plain ASCII without percent-escapes "
                      "(use the punycode form)")
    host = normalize_host(raw_host)
    if not host:
        raise _refuse(url, "host is missing")
    reason = _judge("host", host, allowed_hosts, disallowed_hosts)
    if reason:
        raise _refuse(url, reason)

    try:
        port = parts.port
    except ValueError:
        raise _refuse(url, "port is not a number between 0 and 65535") from None
    if port is None:
        return
    reason = _judge("port", port, allowed_ports, disallowed_ports)
    if reason:
        raise _refuse(url, reason)


# IPv6 prefixes that carry an IPv4 address in their last 32 bits and may be
# connected to as that address (IPv4-mapped, the deprecated IPv4-compatible
# form, and the NAT64 well-known prefix).
_EMBEDS_IPV4 = tuple(ipaddress.IPv6Network(net) for net in
                     ("::ffff:0:0/96", "::/96", "64:ff9b::/96"))
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
        return None
    for net in _EMBEDS_IPV4:
        if address in net:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_kind(text: str) -> str | None:
    """``loopback``, ``link-local`` or ``unspecified`` for an address that reaches
    this host or its link (or an unparsable one: ``invalid``); None otherwise.
    Private (RFC 1918, ULA) addresses are not special here, as in Glance."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            text.split("%", 1)[0])
    except ValueError:
        return "invalid"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address)
                                  and address in _THIS_NETWORK):
        return "unspecified"
    return None


def address_refusal(conf: cfg.ConfigOpts, host: str, addresses: list[str]) -> str | None:
    """Why the addresses ``host`` resolved to may not be connected to, or None.

    A host listed in ``allowed_hosts`` is the operator's explicit choice and is
    never refused here. Otherwise every address must be neither loopback,
    link-local nor unspecified, and none may be in ``disallowed_hosts``; a name
    that resolves to nothing is refused too."""
    group = _group(conf)
    name = normalize_host(host)
    if name in group.allowed_hosts:
        return None
    if not addresses:
        return f"host {name!r} does not resolve to any address"
    disallowed = group.disallowed_hosts
    for text in addresses:
        kind = address_kind(text)
        shown = normalize_host(text.split("%", 1)[0])
        if kind is not None:
            where = "" if shown == name else f" resolves to {shown}, which"
            article = "an" if kind[0] in "aeiou" else "a"
            return (f"host {name!r}{where} is {article} {kind} address and the host is not "
                    "in allowed_hosts")
        if not group.allowed_hosts and shown in disallowed:
            return f"host {name!r} resolves to {shown}, which is in disallowed_hosts"
    return None
