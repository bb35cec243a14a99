"""URI filtering for web-download (seed 000 §6.3): a table of cases, config files, properties.

Every branch of the decision logic has a row: for each level (scheme, host,
port) the missing value, the allowlist refusing, the allowlist winning over a
blocklist, and the blocklist refusing; the port level only when a port is
named. Further rows cover the normalisation of host spellings and the URIs
refused because HTTP libraries would disagree about where they lead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oslo_config import cfg

from glimpse.config import load_config
from glimpse.domain.uri_filter import check_uri, normalize_host, register_opts
from glimpse.errors import BadRequest

GROUP = "import_filtering_opts"


def make_conf(**options: object) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    for name, value in options.items():
        conf.set_override(name, value, group=GROUP)
    return conf


def outcome(conf: cfg.ConfigOpts, url: str) -> str | None:
    """None when the URI is accepted, else the refusal message."""
    try:
        check_uri(conf, url)
    except BadRequest as exc:
        assert exc.status == 400
        return exc.message
    return None


OPEN = {"allowed_schemes": [], "allowed_ports": []}  # every list empty: only shape is checked
SEED_FTP = {"allowed_schemes": ["http", "https", "ftp"]}  # seed 000 §6.3.3

# (options, uri, expected): expected is None for "accepted", else a fragment of the refusal.
CASES = [
    # Defaults (§6.3.2): http/https, ports 80/443 when named, any host.
    ({}, "http://example.com/image.qcow2", None),
    ({}, "https://example.com/image.qcow2", None),
    ({}, "http://example.com:80/image", None),
    ({}, "https://example.com:443/image", None),
    ({}, "https://example.com:80/image", None),
    ({}, "http://example.com:8080/image", "port 8080 is not in allowed_ports"),
    ({}, "ftp://example.org/some/resource", "scheme 'ftp' is not in allowed_schemes"),
    ({}, "file:///etc/passwd", "scheme 'file' is not in allowed_schemes"),
    ({}, "HTTP://example.com/image", None),
    # 1.A missing scheme
    ({}, "example.com/image", "scheme is missing"),
    ({}, "//example.com/image", "scheme is missing"),
    ({}, "example.com:80/image", "scheme 'example.com' is not in allowed_schemes"),
    ({}, "", "the URI is empty"),
    # 1.B allowlist refuses / wins over the blocklist; 1.C blocklist
    ({"allowed_schemes": ["http"], "disallowed_schemes": ["http"]}, "http://example.com/", None),
    ({"allowed_schemes": ["http"], "disallowed_schemes": ["http"]}, "https://example.com/",
     "scheme 'https' is not in allowed_schemes"),
    ({"allowed_schemes": [], "disallowed_schemes": ["ftp"]}, "ftp://example.org/x",
     "scheme 'ftp' is in disallowed_schemes"),
    ({"allowed_schemes": [], "disallowed_schemes": ["ftp"]}, "gopher://example.org/x", None),
    ({"allowed_schemes": [], "disallowed_schemes": []}, "gopher://example.org/x", None),
    # Seed 000 §6.3.3: ftp allowed, but port 21 named explicitly is not in allowed_ports.
    (SEED_FTP, "ftp://example.org/some/resource", None),
    (SEED_FTP, "ftp://example.org:21/some/resource", "port 21 is not in allowed_ports"),
    # 2.A missing host
    ({}, "http:///image", "host is missing"),
    ({}, "http://:80/image", "host is missing"),
    (OPEN, "file:///etc/passwd", "host is missing"),
    # 2.B / 2.C
    ({"allowed_hosts": ["images.example.com"]}, "http://images.example.com/x", None),
    ({"allowed_hosts": ["images.example.com"]}, "http://evil.example.com/x",
     "host 'evil.example.com' is not in allowed_hosts"),
    ({"allowed_hosts": ["a.example"], "disallowed_hosts": ["a.example"]}, "http://a.example/",
     None),
    ({"allowed_hosts": ["a.example"], "disallowed_hosts": ["a.example"]}, "http://b.example/",
     "host 'b.example' is not in allowed_hosts"),
    ({"disallowed_hosts": ["169.254.169.254"]}, "http://169.254.169.254/latest",
     "host '169.254.169.254' is in disallowed_hosts"),
    ({"disallowed_hosts": ["169.254.169.254"]}, "http://example.com/latest", None),
    # 3: the port only when the URI names one; the scheme's default port is never filtered.
    ({"allowed_ports": [8080]}, "http://example.com:8080/", None),
    ({"allowed_ports": [8080]}, "http://example.com:80/", "port 80 is not in allowed_ports"),
    ({"allowed_ports": [8080]}, "http://example.com/", None),
    ({"allowed_ports": [8080], "disallowed_ports": [8080]}, "http://example.com:8080/", None),
    ({"allowed_ports": [], "disallowed_ports": [22]}, "http://example.com:22/",
     "port 22 is in disallowed_ports"),
    ({"allowed_ports": [], "disallowed_ports": [22]}, "http://example.com:2222/", None),
    ({"allowed_ports": [], "disallowed_ports": [80]}, "http://example.com/", None),
    ({"allowed_ports": [], "disallowed_ports": [80]}, "http://example.com:80/",
     "port 80 is in disallowed_ports"),
    ({}, "http://example.com:/image", None),  # empty port: the default port
    ({}, "http://example.com:0/", "port 0 is not in allowed_ports"),
    (OPEN, "http://example.com:70000/", "port is not a number"),
    (OPEN, "http://example.com:http/", "port is not a number"),
    # Levels are checked in order: the first one that refuses is named.
    ({"disallowed_hosts": ["evil.example"]}, "ftp://evil.example:21/", "scheme 'ftp'"),
    ({"disallowed_hosts": ["evil.example"]}, "http://evil.example:21/", "host 'evil.example'"),
    # Host spellings that lead to the same place are judged the same.
    ({"allowed_hosts": ["example.com"]}, "http://EXAMPLE.com./x", None),
    ({"allowed_hosts": ["Example.COM."]}, "http://example.com/x", None),
    ({"disallowed_hosts": ["127.0.0.1"]}, "http://127.1/", "host '127.0.0.1' is in disallowed"),
    ({"disallowed_hosts": ["127.0.0.1"]}, "http://0x7f.0.0.1/", "is in disallowed_hosts"),
    ({"disallowed_hosts": ["127.0.0.1"]}, "http://2130706433/", "is in disallowed_hosts"),
    ({"disallowed_hosts": ["127.0.0.1"]}, "http://0177.0.0.1/", "is in disallowed_hosts"),
    ({"disallowed_hosts": ["127.0.0.1"]}, "http://[::ffff:127.0.0.1]/", "is in disallowed_hosts"),
    ({"disallowed_hosts": ["::1"]}, "http://[0:0::1]:80/", "host '::1' is in disallowed_hosts"),
    ({"disallowed_hosts": ["[::1]"]}, "http://[::1]/", "host '::1' is in disallowed_hosts"),
    ({"allowed_hosts": ["fd00::1"]}, "http://[FD00:0::1]/", None),
    ({"disallowed_hosts": ["127.0.0.1"]}, "http://127.0.0.2/", None),
    # Authorities HTTP libraries read differently are refused whatever the lists say.
    (OPEN, "http://user:secret@example.com/", "user information in the URI is not allowed"),
    (OPEN, "http://example.com\\@evil.example/", "user information"),
    (OPEN, "http://evil.example\\.example.com/", "backslash in the URI authority"),
    (OPEN, "http://exämple.com/", "host must be plain ASCII"),
    (OPEN, "http://%6cocalhost/", "host must be plain ASCII"),
    (OPEN, "http://[fe80::1%25eth0]/", "host must be plain ASCII"),
    (OPEN, "http://example.com/a b", "whitespace or control characters"),
    (OPEN, " http://example.com/", "whitespace or control characters"),
    (OPEN, "http://exam\tple.com/", "whitespace or control characters"),
    (OPEN, "http://[::1/", "cannot be parsed"),
]


@pytest.mark.parametrize(("options", "uri", "expected"), CASES,
                         ids=[f"{i}:{c[1][:40]}" for i, c in enumerate(CASES)])
def test_decision_table(options, uri, expected):
    result = outcome(make_conf(**options), uri)
    if expected is None:
        assert result is None, result
    else:
        assert result is not None, f"{uri} was accepted"
        assert expected in result
        assert result.startswith("URI for web-download does not pass filtering")


def test_refusal_message_hides_credentials():
    message = outcome(make_conf(), "http://admin:hunter2@example.com/image")
    assert message is not None
    assert "hunter2" not in message and "admin" not in message


def test_defaults_match_glance():
    group = make_conf()[GROUP]
    assert group.allowed_schemes == ["http", "https"]
    assert group.disallowed_schemes == []
    assert group.allowed_hosts == []
    assert group.disallowed_hosts == []
    assert group.allowed_ports == [80, 443]
    assert group.disallowed_ports == []


def test_check_uri_registers_the_options_itself():
    conf = cfg.ConfigOpts()
    assert outcome(conf, "ftp://example.org/x") is not None
    assert outcome(conf, "https://example.org/x") is None
    assert conf[GROUP].allowed_ports == [80, 443]


def test_register_opts_twice_is_harmless():
    conf = make_conf(allowed_ports=[8443])
    register_opts(conf)
    assert conf[GROUP].allowed_ports == [8443]


# ------------------------------------------------------------------- config files


def write_conf(tmp_path: Path, body: str) -> cfg.ConfigOpts:
    path = tmp_path / "glance-api.conf"
    path.write_text(body)
    conf = load_config([str(path)], overrides={"data_dir": str(tmp_path)})
    register_opts(conf)
    return conf


def test_glance_bracketed_lists_are_read(tmp_path):
    conf = write_conf(tmp_path, (
        "[import_filtering_opts]\n"
        "allowed_schemes = [http,https,ftp]\n"
        "allowed_ports = [80,443, 8443]\n"
        "disallowed_hosts = [metadata.internal, 169.254.169.254]\n"
        "allowed_hosts = []\n"
    ))
    assert outcome(conf, "ftp://example.org/some/resource") is None
    assert "port 21" in (outcome(conf, "ftp://example.org:21/some/resource") or "")
    assert outcome(conf, "https://example.org:8443/x") is None
    assert "disallowed_hosts" in (outcome(conf, "http://METADATA.internal/x") or "")
    assert conf[GROUP].disallowed_hosts == ["metadata.internal", "169.254.169.254"]


def test_lists_without_brackets_are_read_too(tmp_path):
    conf = write_conf(tmp_path, (
        "[import_filtering_opts]\n"
        "allowed_schemes = https\n"
        "allowed_ports = 8080, 8443\n"
        "allowed_hosts = [::1], images.example.com\n"
    ))
    group = conf[GROUP]
    assert group.allowed_schemes == ["https"]
    assert group.allowed_ports == [8080, 8443]
    assert group.allowed_hosts == ["::1", "images.example.com"]
    assert outcome(conf, "https://[::1]:8443/x") is None
    assert outcome(conf, "http://images.example.com/x") is not None


def test_filter_options_in_glance_image_import_conf_are_read(tmp_path):
    (tmp_path / "glance-image-import.conf").write_text(
        "[import_filtering_opts]\ndisallowed_ports = [8080]\nallowed_ports = []\n")
    conf = write_conf(tmp_path, "[DEFAULT]\n")
    assert "port 8080 is in disallowed_ports" in (outcome(conf, "http://h.example:8080/") or "")
    assert outcome(conf, "http://h.example:8081/") is None


@pytest.mark.parametrize(("option", "value"), [
    ("allowed_ports", "[http]"), ("allowed_ports", "[0]"), ("allowed_ports", "[65536]"),
    ("allowed_hosts", "[not_a host]"),
])
def test_invalid_option_values_are_refused(tmp_path, option, value):
    conf = write_conf(tmp_path, f"[import_filtering_opts]\n{option} = {value}\n")
    with pytest.raises(cfg.ConfigFileValueError):
        check_uri(conf, "http://example.com/")


# ------------------------------------------------------------------ properties

# Small pools, so that the URI's values often are (and often are not) in the lists.
schemes = st.sampled_from(["http", "https", "ftp", "s3", "git+ssh"])
hosts = st.sampled_from(["example.com", "a.example", "images.example.org", "localhost",
                         "cdn-1.example.net"])
ports = st.sampled_from([21, 80, 443, 8080]) | st.integers(min_value=1, max_value=65535)
maybe_port = st.none() | ports
value_lists = {
    "scheme": st.lists(schemes, max_size=3),
    "host": st.lists(hosts, max_size=3),
    "port": st.lists(ports, max_size=3),
}


def uri(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host}{'' if port is None else f':{port}'}/image"


@settings(max_examples=100, deadline=None)
@given(scheme=schemes, host=hosts, port=ports,
       extra_s=value_lists["scheme"], extra_h=value_lists["host"], extra_p=value_lists["port"])
def test_allowlist_wins_over_blocklist(scheme, host, port, extra_s, extra_h, extra_p):
    # Each value is in both lists of its level: the blocklists are ignored.
    both_s, both_h, both_p = [scheme, *extra_s], [host, *extra_h], [port, *extra_p]
    conf = make_conf(allowed_schemes=both_s, disallowed_schemes=both_s,
                     allowed_hosts=both_h, disallowed_hosts=both_h,
                     allowed_ports=both_p, disallowed_ports=both_p)
    assert outcome(conf, uri(scheme, host, port)) is None


@settings(max_examples=100, deadline=None)
@given(scheme=schemes, host=hosts, port=maybe_port,
       bs=value_lists["scheme"], bh=value_lists["host"], bp=value_lists["port"])
def test_blocklists_alone_refuse_exactly_what_they_list(scheme, host, port, bs, bh, bp):
    conf = make_conf(allowed_schemes=[], disallowed_schemes=bs, allowed_hosts=[],
                     disallowed_hosts=bh, allowed_ports=[], disallowed_ports=bp)
    refused = scheme in bs or host in bh or (port is not None and port in bp)
    assert (outcome(conf, uri(scheme, host, port)) is not None) == refused


@settings(max_examples=100, deadline=None)
@given(scheme=schemes, host=hosts, port=maybe_port,
       al_s=value_lists["scheme"], al_h=value_lists["host"], al_p=value_lists["port"],
       bl_s=value_lists["scheme"], bl_h=value_lists["host"], bl_p=value_lists["port"])
def test_each_level_is_decided_by_its_allowlist_when_set(scheme, host, port, al_s, al_h, al_p,
                                                         bl_s, bl_h, bl_p):
    conf = make_conf(allowed_schemes=al_s, disallowed_schemes=bl_s, allowed_hosts=al_h,
                     disallowed_hosts=bl_h, allowed_ports=al_p, disallowed_ports=bl_p)

    def level_ok(value: object, allowed: list, disallowed: list) -> bool:
        return value in allowed if allowed else value not in disallowed

    expected = (level_ok(scheme, al_s, bl_s) and level_ok(host, al_h, bl_h)
                and (port is None or level_ok(port, al_p, bl_p)))
    assert (outcome(conf, uri(scheme, host, port)) is None) == expected


@settings(max_examples=60, deadline=None)
@given(scheme=schemes, host=hosts, al_p=value_lists["port"], bl_p=value_lists["port"])
def test_port_lists_do_not_matter_without_an_explicit_port(scheme, host, al_p, bl_p):
    with_ports = make_conf(allowed_schemes=[scheme], allowed_ports=al_p, disallowed_ports=bl_p)
    assert outcome(with_ports, uri(scheme, host, None)) is None


@settings(max_examples=60, deadline=None)
@given(scheme=schemes, host=hosts, port=maybe_port, blocked=value_lists["host"],
       upper=st.booleans(), dot=st.booleans())
def test_host_spelling_does_not_change_the_verdict(scheme, host, port, blocked, upper, dot):
    conf = make_conf(allowed_schemes=[], allowed_ports=[], disallowed_hosts=blocked)
    spelled = (host.upper() if upper else host) + ("." if dot else "")
    plain = outcome(conf, uri(scheme, host, port)) is None
    assert (outcome(conf, uri(scheme, spelled, port)) is None) == plain


@settings(max_examples=60, deadline=None)
@given(st.ip_addresses(v=4))
def test_numeric_ipv4_spellings_normalise_to_the_dotted_quad(address):
    value = int(address)
    assert normalize_host(str(value)) == str(address)
    assert normalize_host(hex(value)) == str(address)
    assert normalize_host(f"[::ffff:{address}]") == str(address)
