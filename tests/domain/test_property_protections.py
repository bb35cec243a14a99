"""Property protection rules: parsing the file and deciding, in both rule formats.

Policies-format decisions are evaluated by a real glimpse.policy.Policy (oslo.policy).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from oslo_config import cfg

from glimpse.context import RequestContext
from glimpse.domain.property_protections import (
    DISABLED,
    InvalidPropertyProtections,
    PropertyProtections,
    from_text,
    parse,
)
from glimpse.errors import Forbidden
from glimpse.policy import Policy, register_opts

ROLES_FILE = """
[^x_owner_]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

[^x_billing_]
create = admin
read = admin, Member
update = admin
delete = !

[^x_all_]
create = @
read = @
update = @
delete = @

[_code$]
create = billing
read = billing
update = billing
delete = billing

[.*]
create = admin
read = admin
update = admin
delete = admin
"""


def ctx(*roles: str, service_roles: tuple[str, ...] = ()) -> RequestContext:
    return RequestContext(user_id="u", project_id="p", roles=roles,
                          service_roles=service_roles, is_admin="admin" in roles)


ADMIN = ctx("admin", "member", "reader")
MEMBER = ctx("member", "reader")
READER = ctx("reader")


@pytest.fixture
def roles() -> PropertyProtections:
    return from_text(ROLES_FILE, "roles")


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


# ---------------------------------------------------------------- roles format


@pytest.mark.parametrize(("who", "op", "name", "allowed"), [
    (MEMBER, "create", "x_owner_a", True),
    (READER, "create", "x_owner_a", False),
    (MEMBER, "create", "x_billing_id", False),
    (ADMIN, "create", "x_billing_id", True),
    # Role names in the file are case-insensitive ("Member").
    (MEMBER, "read", "x_billing_id", True),
    (READER, "read", "x_billing_id", False),
    # '!' is no one, administrators included.
    (ADMIN, "delete", "x_billing_id", False),
    # '@' is everyone, even a caller without roles.
    (ctx(), "update", "x_all_things", True),
    # The catch-all section.
    (MEMBER, "read", "os_distro", False),
    (ADMIN, "read", "os_distro", True),
    # Not an operation.
    (ADMIN, "list", "os_distro", False),
])
def test_roles_decisions(roles, who, op, name, allowed):
    assert roles.allows(who, op, name) is allowed


def test_first_matching_section_wins_in_file_order(roles):
    # "x_owner_code" matches [^x_owner_] and later [_code$]: the first decides.
    assert roles.section_for("x_owner_code").pattern == "^x_owner_"
    assert roles.allows(MEMBER, "read", "x_owner_code")
    assert not roles.allows(ctx("billing"), "read", "x_owner_code")
    # Without an anchor the expression is searched anywhere in the name, as in Glance.
    assert roles.section_for("product_code").pattern == "_code$"
    assert roles.allows(ctx("billing"), "update", "product_code")


def test_a_property_no_section_matches_is_denied_to_everyone():
    prot = from_text("[^x_]\ncreate = @\nread = @\nupdate = @\ndelete = @\n", "roles")
    assert prot.allows(MEMBER, "read", "x_a")
    for op in ("create", "read", "update", "delete"):
        assert not prot.allows(ADMIN, op, "os_distro")


def test_admin_is_not_exempt_roles_decide(roles):
    # An is_admin context without the listed role is refused.
    is_admin_only = RequestContext(project_id="p", roles=("reader",), is_admin=True)
    assert not roles.allows(is_admin_only, "read", "os_distro")
    assert not roles.allows(is_admin_only, "create", "x_owner_a")


def test_service_roles_count(roles):
    assert roles.allows(ctx("reader", service_roles=("billing",)), "read", "product_code")


def test_empty_value_means_no_one():
    prot = from_text("[.*]\ncreate =\nread = @\nupdate = @\ndelete = @\n", "roles")
    assert not prot.allows(ADMIN, "create", "anything")
    assert prot.allows(ADMIN, "read", "anything")


def test_check_raises_forbidden_with_glance_wording(roles):
    roles.check(MEMBER, "create", "x_owner_a")
    with pytest.raises(Forbidden, match=r"^Attribute 'x_billing_id' is reserved\.$"):
        roles.check(MEMBER, "create", "x_billing_id")
    with pytest.raises(Forbidden, match="'os_distro'"):
        roles.check_create(MEMBER, {"x_owner_a": "1", "os_distro": "2"})
    roles.check_create(ADMIN, {"x_owner_a": "1", "os_distro": "2"})


@pytest.mark.parametrize(("op", "existed", "needs"), [
    ("add", False, "create"),
    ("add", True, "update"),
    ("replace", True, "update"),
    ("remove", True, "delete"),
])
def test_check_patch_maps_operations(op, existed, needs):
    # Each section allows exactly one operation to the "ok" role.
    text = "".join(
        f"[^{o}_]\n" + "".join(f"{k} = {'ok' if k == o else '!'}\n"
                               for k in ("create", "read", "update", "delete"))
        for o in ("create", "read", "update", "delete"))
    prot = from_text(text, "roles")
    prot.check_patch(ctx("ok"), op, f"{needs}_prop", existed)
    other = next(o for o in ("create", "update", "delete") if o != needs)
    with pytest.raises(Forbidden):
        prot.check_patch(ctx("ok"), op, f"{other}_prop", existed)


def test_filter_readable_and_unreadable(roles):
    props = {"x_owner_a": "1", "x_billing_id": "2", "os_distro": "3", "x_all_z": "4"}
    assert roles.filter_readable(MEMBER, props) == {"x_owner_a": "1", "x_billing_id": "2",
                                                    "x_all_z": "4"}
    assert roles.unreadable(MEMBER, props) == {"os_distro": "3"}
    assert roles.filter_readable(ADMIN, props) == props
    assert roles.filter_readable(READER, props) == {"x_all_z": "4"}
    keep = roles.read_filter(READER)
    assert [keep(p) for p in ({"x_all_a": "1"}, {"x_owner_a": "1"})] == [{"x_all_a": "1"}, {}]


def test_disabled_is_a_no_op():
    props = {"anything": "1"}
    assert not DISABLED.enabled
    assert DISABLED.filter_readable(READER, props) is props
    assert DISABLED.unreadable(READER, props) == {}
    assert DISABLED.read_filter(READER)(props) is props
    DISABLED.check(READER, "create", "anything")
    DISABLED.check_create(READER, props)
    DISABLED.check_patch(READER, "remove", "anything", True)
    assert DISABLED.allows(ctx(), "delete", "anything")


def test_an_empty_file_protects_nothing():
    # Glance: no rules at all means every operation is allowed.
    prot = from_text("# nothing here\n", "roles")
    assert not prot.enabled
    assert prot.allows(READER, "create", "anything")


def test_sections_are_case_sensitive_and_keys_are_not():
    prot = from_text("[^Foo$]\nCREATE = @\nRead = @\nupdate = @\ndelete = @\n", "roles")
    assert prot.allows(READER, "create", "Foo")
    assert not prot.allows(READER, "create", "foo")


# ---------------------------------------------------------------- invalid files


@pytest.mark.parametrize(("text", "fmt", "says"), [
    ("[x_(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n", "roles",
     "not a valid regular expression"),
    ("[x_]\ncreate = @\nread = @\nupdate = @\n", "roles", "does not say who may delete"),
    ("[x_]\ncreate = @\nread = @\nupdate = @\ndelete = @\nlist = @\n", "roles",
     "unknown operation(s) list"),
    ("[x_]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n", "roles", "'@'"),
    ("[x_]\ncreate = admin,!\nread = @\nupdate = @\ndelete = @\n", "roles", "'!'"),
    ("[x_]\ncreate = @,admin\nread = @\nupdate = @\ndelete = @\n", "roles", "'@'"),
    ("[x_]\ncreate = a,b\nread = a\nupdate = a\ndelete = a\n", "policies",
     "only one policy rule"),
    ("create = @\n", "roles", "no section headers"),
    ("[x_]\ncreate = @\n[x_]\nread = @\n", "roles", "already exists"),
    ("[x_]\ncreate = @\nread = @\nupdate = @\ndelete = @\n", "acl",
     "must be 'roles' or 'policies'"),
])
def test_invalid_files_are_refused(text, fmt, says):
    with pytest.raises(InvalidPropertyProtections) as info:
        parse(text, fmt, source="/etc/glance/pp.conf")
    message = str(info.value)
    assert message.startswith("Invalid property protection file /etc/glance/pp.conf: ")
    assert says in message


def test_glance_sample_files_parse():
    roles = parse(dedent("""
        [^x_.*]
        create = admin,member,_member_
        read = admin,member,_member_
        update = admin,member,_member_
        delete = admin,member,_member_

        [.*]
        create = admin
        read = admin
        update = admin
        delete = admin
        """), "roles")
    assert [s.pattern for s in roles] == ["^x_.*", ".*"]
    assert roles[0].permissions["read"].roles == {"admin", "member", "_member_"}
    policies = parse(dedent("""
        [^x_.*]
        create = default
        read = default
        update = default
        delete = default

        [.*]
        create = context_is_admin
        read = context_is_admin
        update = context_is_admin
        delete = context_is_admin
        """), "policies")
    assert policies[1].permissions["delete"].policy_rule == ".*:delete"


# ---------------------------------------------------------------- policies format


POLICIES_FILE = """
[^spl_creator_policy$]
create = glance_creator
read = glance_creator
update = context_is_admin
delete = glance_creator

[^x_all_]
create = @
read = @
update = @
delete = !

[^x_undefined_]
create = no_such_rule
read = no_such_rule
update = no_such_rule
delete = no_such_rule

[.*]
create = context_is_admin
read = default
update = context_is_admin
delete = context_is_admin
"""


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    conf = cfg.ConfigOpts()
    conf([], project="glimpse", default_config_files=[])
    register_opts(conf)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text('"glance_creator": "role:admin or role:spl_role"\n')
    conf.set_override("policy_file", str(policy_file), group="oslo_policy")
    conf.set_override("policy_dirs", [], group="oslo_policy")
    return Policy(conf)


@pytest.fixture
def policies(policy: Policy) -> PropertyProtections:
    prot = from_text(POLICIES_FILE, "policies",
                     policy_check=lambda c, rule: policy.check(c, rule, {}, registered=False))
    policy.add_rules(prot.policy_rules())
    return prot


def test_policy_rules_follow_glance_naming(policies):
    rules = policies.policy_rules()
    assert rules["^spl_creator_policy$:create"] == "rule:glance_creator"
    assert rules[".*:read"] == "rule:default"
    # '@' and '!' are decided without the policy engine.
    assert not any(name.startswith("^x_all_") for name in rules)
    assert policies.referenced_policies() == {"glance_creator", "context_is_admin",
                                              "default", "no_such_rule"}


@pytest.mark.parametrize(("who", "op", "name", "allowed"), [
    # glance_creator comes from the operator's policy file.
    (ctx("spl_role"), "create", "spl_creator_policy", True),
    (ctx("member"), "create", "spl_creator_policy", False),
    (ctx("spl_role"), "update", "spl_creator_policy", False),
    (ADMIN, "update", "spl_creator_policy", True),
    # Glance's own rules (default is "" = anyone, context_is_admin is role:admin).
    (READER, "read", "os_distro", True),
    (READER, "create", "os_distro", False),
    (ADMIN, "create", "os_distro", True),
    (ctx(), "create", "x_all_a", True),
    (ADMIN, "delete", "x_all_a", False),
    # A rule nobody defined: oslo.policy falls back to policy_default_rule
    # ("default", which lets anyone through unless the operator narrows it), as in Glance.
    (READER, "read", "x_undefined_a", True),
])
def test_policies_decisions(policies, who, op, name, allowed):
    assert policies.allows(who, op, name) is allowed


def test_policies_format_needs_a_policy_check():
    with pytest.raises(ValueError, match="policy_check"):
        from_text("[.*]\ncreate = a\nread = a\nupdate = a\ndelete = a\n", "policies")
