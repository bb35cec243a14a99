"""The pure address rule of the web-download guard (uri_filter.address_kind and
address_refusal): which resolved addresses may be connected to."""

from __future__ import annotations

import pytest
from oslo_config import cfg

from glimpse.domain.uri_filter import address_kind, address_refusal, register_opts


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("::127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"), ("febf::1", "link-local"),
    ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("not-an-address", "invalid"),
    # Private and public ranges are not this rule's business (Glance allows them).
    ("10.0.0.1", None), ("172.16.5.4", None), ("192.168.1.1", None), ("fd00::1", None),
    ("198.51.100.7", None), ("2001:db8::1", None), ("fec0::1", None),
])
def test_address_kinds(address, kind):
    assert address_kind(address) == kind


def conf(**options: object) -> cfg.ConfigOpts:
    c = cfg.ConfigOpts()
    register_opts(c)
    c([])
    for name, value in options.items():
        c.set_override(name, value, group="import_filtering_opts")
    return c


def test_refusal_reasons():
    assert address_refusal(conf(), "images.example", ["198.51.100.7"]) is None
    assert address_refusal(conf(), "images.example", []) == (
        "host 'images.example' does not resolve to any address")
    assert address_refusal(conf(), "localhost", ["127.0.0.1"]) == (
        "host 'localhost' resolves to 127.0.0.1, which is a loopback address and the host "
        "is not in allowed_hosts")
    assert address_refusal(conf(), "127.0.0.1", ["127.0.0.1"]) == (
        "host '127.0.0.1' is a loopback address and the host is not in allowed_hosts")
    # Any one bad address refuses the name.
    assert "link-local" in address_refusal(conf(), "mixed.example",
                                           ["198.51.100.7", "169.254.169.254"])


def test_allowed_hosts_exempt_the_listed_host_only():
    listed = conf(allowed_hosts=["LocalHost."])
    assert address_refusal(listed, "localhost", ["127.0.0.1"]) is None
    assert address_refusal(listed, "other", ["127.0.0.1"]) is not None


def test_disallowed_hosts_apply_to_addresses():
    blocked = conf(disallowed_hosts=["10.0.0.5", "::ffff:10.0.0.6"])
    assert address_refusal(blocked, "intranet", ["10.0.0.5"]) == (
        "host 'intranet' resolves to 10.0.0.5, which is in disallowed_hosts")
    assert address_refusal(blocked, "mapped", ["::ffff:10.0.0.6"]) is not None
    assert address_refusal(blocked, "fine", ["10.0.0.7"]) is None
