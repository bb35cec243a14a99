"""Policy rules as oslo.policy really evaluates them (no mocks)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from glimpse import errors
from glimpse.context import RequestContext
from glimpse.policy import (
    Policy,
    image_target,
    list_rules,
    metadef_target,
    new_image_target,
    register_opts,
)

OWNER = "project-owner"
OTHER = "project-other"

PolicyFactory = Callable[..., Policy]


@pytest.fixture
def make_policy(tmp_path: Path) -> PolicyFactory:
    """Build a Policy; ``rules`` (if given) are written to a policy file first."""

    def factory(rules: dict[str, str] | None = None, fmt: str = "yaml") -> Policy:
        conf = cfg.ConfigOpts()
        conf([], project="glimpse", default_config_files=[])
        register_opts(conf)
        path = tmp_path / f"policy.{fmt}"
        if rules is not None:
            if fmt == "json":
                path.write_text(json.dumps(rules))
            else:
                path.write_text("".join(f'"{k}": "{v}"\n' for k, v in rules.items()))
        # Absolute paths keep any /etc/glimpse on this machine out of the test.
        conf.set_override("policy_file", str(path), group="oslo_policy")
        conf.set_override("policy_dirs", [], group="oslo_policy")
        return Policy(conf)

    return factory


@pytest.fixture
def pol(make_policy: PolicyFactory) -> Policy:
    return make_policy()


def ctx(project: str | None, *roles: str, **extra: Any) -> RequestContext:
    return RequestContext(user_id="u-" + (project or "none"), project_id=project,
                          roles=roles, **extra)


def member(project: str = OWNER) -> RequestContext:
    return ctx(project, "member", "reader")


def reader(project: str = OWNER) -> RequestContext:
    return ctx(project, "reader")


def admin(project: str = "project-admin") -> RequestContext:
    return ctx(project, "admin", "member", "reader", is_admin=True)


def noauth() -> RequestContext:
    return RequestContext(roles=("admin", "member", "reader"), is_admin=True)


def image(visibility: str = "private", owner: str | None = OWNER, **extra: Any) -> dict:
    return {"id": "img-1", "name": "cirros", "status": "active", "owner": owner,
            "visibility": visibility, **extra}


# --- the rule set -------------------------------------------------------------

REQUIRED_RULES = """
default context_is_admin add_image delete_image get_image get_images modify_image
publicize_image communitize_image download_image upload_image delete_image_location
get_image_location set_image_location add_member delete_member get_member get_members
modify_member manage_image_cache cache_image cache_list cache_delete deactivate reactivate
copy_image get_task get_tasks add_task modify_task tasks_api_access stores_info_detail
metadef_default metadef_admin get_metadef_namespace get_metadef_namespaces
modify_metadef_namespace add_metadef_namespace delete_metadef_namespace get_metadef_object
get_metadef_objects modify_metadef_object add_metadef_object delete_metadef_object
list_metadef_resource_types get_metadef_resource_type add_metadef_resource_type_association
remove_metadef_resource_type_association get_metadef_property get_metadef_properties
modify_metadef_property add_metadef_property remove_metadef_property get_metadef_tag
get_metadef_tags modify_metadef_tag add_metadef_tag add_metadef_tags delete_metadef_tag
delete_metadef_tags service_api download_from_store add_image_location fetch_image_location
list_cached_nodes cache_clean cache_prune
""".split()


def test_list_rules_has_every_glance_rule_once() -> None:
    names = [rule.name for rule in list_rules()]
    assert len(names) == len(set(names))
    assert set(REQUIRED_RULES) <= set(names)


def test_rules_are_project_scoped_except_the_building_blocks() -> None:
    unscoped = {r.name for r in list_rules() if not r.scope_types}
    assert unscoped == {"default", "context_is_admin", "service_api",
                        "metadef_default", "metadef_admin"}
    assert all(r.scope_types == ["project"] for r in list_rules() if r.name not in unscoped)


def test_key_defaults_are_glances_strings() -> None:
    rules = {r.name: r.check_str for r in list_rules()}
    assert rules["context_is_admin"] == "role:admin"
    assert rules["publicize_image"] == "rule:context_is_admin"
    assert rules["add_metadef_namespace"] == "rule:metadef_admin"
    assert rules["modify_image"] == (
        "rule:context_is_admin or (role:member and project_id:%(project_id)s)")
    assert rules["get_image"] == (
        "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or "
        "project_id:%(member_id)s or 'community':%(visibility)s or "
        "'public':%(visibility)s or 'shared':%(visibility)s))")


def test_enforcer_defaults_are_secure_rbac(make_policy: PolicyFactory) -> None:
    pol = make_policy()
    assert pol.enforcer.conf.oslo_policy.enforce_new_defaults is True
    if "enforce_scope" in pol.enforcer.conf.oslo_policy:
        assert pol.enforcer.conf.oslo_policy.enforce_scope is True


# --- images -------------------------------------------------------------------

def test_project_member_manages_own_image(pol: Policy) -> None:
    target = image_target(image())
    for rule in ("get_image", "modify_image", "delete_image", "upload_image",
                 "download_image", "deactivate", "reactivate", "add_member",
                 "communitize_image", "set_image_location"):
        assert pol.check(member(), rule, target), rule


def test_project_member_cannot_touch_other_projects_private_image(pol: Policy) -> None:
    target = image_target(image(owner=OTHER))
    for rule in ("get_image", "modify_image", "delete_image", "download_image",
                 "add_member", "get_members"):
        assert not pol.check(member(), rule, target), rule


def test_reader_reads_but_does_not_write(pol: Policy) -> None:
    target = image_target(image())
    assert pol.check(reader(), "get_image", target)
    assert pol.check(reader(), "get_images", {"project_id": OWNER})
    assert pol.check(reader(), "get_members", target)
    assert pol.check(reader(), "get_image_location", target)
    for rule in ("modify_image", "delete_image", "upload_image", "download_image"):
        assert not pol.check(reader(), rule, target), rule
    assert not pol.check(reader(), "add_image", new_image_target({}, reader()))


def test_add_image_only_for_own_project_unless_admin(pol: Policy) -> None:
    assert pol.check(member(), "add_image", new_image_target({"name": "x"}, member()))
    someone_else = new_image_target({"owner": OTHER}, member())
    assert not pol.check(member(), "add_image", someone_else)
    assert pol.check(admin(), "add_image", someone_else)


def test_publicize_is_admin_only_by_default(pol: Policy) -> None:
    target = image_target(image())
    assert not pol.check(member(), "publicize_image", target)
    assert pol.check(admin(), "publicize_image", target)
    assert pol.check(member(), "communitize_image", target)


def test_public_and_community_images_are_visible_to_everyone(pol: Policy) -> None:
    for visibility in ("public", "community"):
        target = image_target(image(visibility=visibility, owner=OTHER))
        assert pol.check(reader(), "get_image", target)
        assert pol.check(member(), "download_image", target)
        assert not pol.check(member(), "modify_image", target)


def test_shared_image_member_may_read_and_answer_the_share(pol: Policy) -> None:
    shared = image(visibility="shared", owner=OTHER)
    as_member = image_target(shared, member_project_id=OWNER)
    assert as_member["member_id"] == OWNER
    assert pol.check(member(), "get_image", as_member)
    assert pol.check(member(), "download_image", as_member)
    assert pol.check(member(), "get_member", as_member)
    assert pol.check(member(), "modify_member", as_member)
    assert not pol.check(member(), "modify_image", as_member)
    assert not pol.check(member(), "add_member", as_member)
    # The owner may list members but not accept/reject on the consumer's behalf.
    as_owner = image_target(shared)
    assert pol.check(member(OTHER), "get_members", as_owner)
    assert not pol.check(member(OTHER), "modify_member", as_owner)


def test_member_id_only_counts_for_shared_images(pol: Policy) -> None:
    target = image_target(image(visibility="private", owner=OTHER), member_project_id=OWNER)
    assert "member_id" not in target
    assert not pol.check(member(), "get_image", target)
    # A caller-supplied member key cannot smuggle membership in either.
    spoofed = image_target(image(owner=OTHER, member_id=OWNER, member=OWNER))
    assert "member_id" not in spoofed
    assert not pol.check(member(), "get_image", spoofed)


def test_image_target_exposes_attributes_like_glance(pol: Policy) -> None:
    target = image_target(image(properties={"os_distro": "cirros", "name": "shadowed"},
                                locations=[{"url": "file:///x"}], tags=["a"]))
    assert target["project_id"] == target["owner"] == OWNER
    assert target["id"] == target["image_id"] == "img-1"
    assert target["os_distro"] == "cirros"
    assert target["name"] == "cirros"
    assert "locations" not in target
    assert target["tags"] == ["a"]


def test_caller_without_project_never_matches_ownerless_image(pol: Policy) -> None:
    target = image_target(image(owner=None))
    assert "project_id" not in target
    assert not pol.check(ctx(None, "member", "reader"), "modify_image", target)
    assert not pol.check(ctx(None, "reader"), "get_image", target)


def test_admin_passes_on_any_project(pol: Policy) -> None:
    target = image_target(image(owner=OTHER))
    for rule in ("get_image", "modify_image", "delete_image", "delete_image_location",
                 "copy_image", "publicize_image", "cache_image", "manage_image_cache",
                 "tasks_api_access", "list_cached_nodes"):
        assert pol.check(admin(), rule, target), rule


def test_noauth_context_is_admin_everywhere(pol: Policy) -> None:
    ctx_ = noauth()
    assert pol.check_is_admin(ctx_)
    target = image_target(image(owner=OTHER))
    for rule in ("publicize_image", "get_image", "modify_image", "get_images",
                 "cache_list", "stores_info_detail", "add_metadef_namespace"):
        assert pol.check(ctx_, rule, target), rule
    assert pol.check(ctx_, "add_image", new_image_target({}, ctx_))
    assert pol.check(ctx_, "get_metadef_namespaces", metadef_target(ctx_))


def test_check_is_admin(pol: Policy) -> None:
    assert pol.check_is_admin(admin())
    assert not pol.check_is_admin(member())


def test_service_role_rules(pol: Policy) -> None:
    service = ctx("project-service", "service")
    target = image_target(image(status="queued"))
    assert pol.check(service, "fetch_image_location", target)
    assert pol.check(service, "add_image_location", target)
    assert pol.check(service, "stores_info_detail", {})
    assert pol.check(admin(), "fetch_image_location", target)
    assert not pol.check(member(), "fetch_image_location", target)
    assert pol.check(member(), "add_image_location", target)
    assert not pol.check(member(), "stores_info_detail", {})


def test_tasks_api_is_admin_only_but_task_rules_are_open(pol: Policy) -> None:
    assert not pol.check(member(), "tasks_api_access", {})
    assert pol.check(member(), "get_task", {})
    assert pol.check(member(), "add_task", {})


def test_system_scoped_token_is_refused_by_project_rules(pol: Policy) -> None:
    system_admin = ctx(None, "admin", system_scope="all")
    target = image_target(image())
    assert not pol.check(system_admin, "get_image", target)
    with pytest.raises(errors.Forbidden):
        pol.enforce(system_admin, "get_image", target)


# --- enforce ------------------------------------------------------------------

def test_enforce_raises_forbidden_with_glances_message(pol: Policy) -> None:
    with pytest.raises(errors.Forbidden) as raised:
        pol.enforce(member(), "publicize_image", image_target(image()))
    assert raised.value.status == 403
    assert str(raised.value) == "You are not authorized to complete publicize_image action."
    pol.enforce(admin(), "publicize_image", image_target(image()))


def test_unknown_rule_is_an_error_not_the_open_default(pol: Policy) -> None:
    with pytest.raises(oslo_policy.PolicyNotRegistered):
        pol.check(member(), "get_imagez", {})
    with pytest.raises(oslo_policy.PolicyNotRegistered):
        pol.enforce(member(), "get_imagez", {})


def test_added_rules_serve_property_protections(pol: Policy) -> None:
    pol.add_rules({"glance_creator": "role:admin or role:creator",
                   "x_billing:create": "rule:glance_creator"})
    target = image_target(image())
    assert pol.check(ctx(OWNER, "creator"), "x_billing:create", target, registered=False)
    assert not pol.check(member(), "x_billing:create", target, registered=False)
    with pytest.raises(errors.Forbidden):
        pol.enforce(member(), "x_billing:create", target, registered=False)
    with pytest.raises(oslo_policy.PolicyNotRegistered):
        pol.check(member(), "x_billing:create", target)


# --- metadefs -------------------------------------------------------------------

METADEF_WRITES = (
    "add_metadef_namespace", "modify_metadef_namespace", "delete_metadef_namespace",
    "add_metadef_object", "modify_metadef_object", "delete_metadef_object",
    "add_metadef_resource_type_association", "remove_metadef_resource_type_association",
    "add_metadef_property", "modify_metadef_property", "remove_metadef_property",
    "add_metadef_tag", "add_metadef_tags", "modify_metadef_tag", "delete_metadef_tag",
    "delete_metadef_tags",
)


def test_metadef_writes_are_admin_only_by_default(pol: Policy) -> None:
    namespace = {"namespace": "OS::Compute", "owner": OWNER, "visibility": "private"}
    target = metadef_target(member(), namespace)
    for rule in METADEF_WRITES:
        assert not pol.check(member(), rule, target), rule
        assert pol.check(admin(), rule, target), rule


def test_metadef_reads(pol: Policy) -> None:
    public = metadef_target(reader(), {"owner": OTHER, "visibility": "public"})
    private = metadef_target(reader(), {"owner": OTHER, "visibility": "private"})
    own = metadef_target(reader(), {"owner": OWNER, "visibility": "private"})
    for rule in ("get_metadef_namespace", "get_metadef_objects", "get_metadef_tag"):
        assert pol.check(reader(), rule, public), rule
        assert pol.check(reader(), rule, own), rule
        assert not pol.check(reader(), rule, private), rule
    assert pol.check(reader(), "get_metadef_namespaces", metadef_target(reader()))


def test_policy_file_opens_metadef_writes(make_policy: PolicyFactory) -> None:
    pol = make_policy({"metadef_default": "",
                       **{rule: "rule:metadef_default" for rule in METADEF_WRITES}})
    target = metadef_target(member(), {"owner": OWNER, "visibility": "private"})
    for rule in METADEF_WRITES:
        assert pol.check(member(), rule, target), rule
    # Rules not in the file keep their defaults.
    assert not pol.check(member(), "publicize_image", image_target(image()))


# --- policy files -----------------------------------------------------------------

def test_yaml_policy_file_overrides_a_rule(make_policy: PolicyFactory) -> None:
    pol = make_policy({"publicize_image": "role:admin or role:image_manager"})
    target = image_target(image())
    assert pol.check(ctx(OWNER, "image_manager"), "publicize_image", target)
    assert pol.check(admin(), "publicize_image", target)
    assert not pol.check(member(), "publicize_image", target)


def test_json_policy_file_overrides_a_rule(make_policy: PolicyFactory) -> None:
    pol = make_policy({"context_is_admin": "role:cloud_admin"}, fmt="json")
    assert pol.check_is_admin(ctx(OWNER, "cloud_admin"))
    assert not pol.check_is_admin(admin())
    # Everything built on context_is_admin follows the override.
    assert pol.check(ctx(OWNER, "cloud_admin"), "copy_image", image_target(image()))


def test_missing_policy_file_means_defaults(make_policy: PolicyFactory,
                                            tmp_path: Path) -> None:
    pol = make_policy()
    assert not (tmp_path / "policy.yaml").exists()
    assert pol.check(member(), "modify_image", image_target(image()))
    assert not pol.check(member(), "publicize_image", image_target(image()))


def test_policy_file_changes_are_picked_up(make_policy: PolicyFactory,
                                          tmp_path: Path) -> None:
    pol = make_policy({"publicize_image": "role:admin"})
    manager = ctx(OWNER, "image_manager")
    assert not pol.check(manager, "publicize_image", image_target(image()))
    path = tmp_path / "policy.yaml"
    path.write_text('"publicize_image": "role:image_manager"\n')
    later = path.stat().st_mtime + 10
    os.utime(path, (later, later))
    assert pol.check(manager, "publicize_image", image_target(image()))


def test_policy_file_that_appears_later_is_picked_up(make_policy: PolicyFactory,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Policy, "SEARCH_INTERVAL", 0.0)
    pol = make_policy()
    manager = ctx(OWNER, "image_manager")
    for _ in range(2):  # the second answer comes from the remembered decisions
        assert not pol.check(manager, "publicize_image", image_target(image()))
    (tmp_path / "policy.yaml").write_text('"publicize_image": "role:image_manager"\n')
    assert pol.check(manager, "publicize_image", image_target(image()))


def test_remembered_decisions_follow_every_target_key_a_rule_reads(pol: Policy) -> None:
    """Decisions are remembered per target keys the rule formats (owner, member_id,
    visibility), so a target that differs in any of them is decided anew."""
    caller = member(OTHER)
    cases = [
        (image(), False),
        (image(name="another", id="img-2"), False),  # only unread keys differ
        (image(visibility="public"), True),
        (image(visibility="community"), True),
        (image(visibility="shared"), True),  # membership is checked outside policy
        (image(owner=OTHER), True),
        (image(owner=None), False),
        (image(), False),
    ]
    for _ in range(2):
        for doc, allowed in cases:
            assert pol.check(caller, "get_image", image_target(doc)) is allowed, doc
    shared = image(visibility="shared")
    for _ in range(2):
        assert pol.check(caller, "get_member", image_target(shared, member_project_id=OTHER))
        assert not pol.check(caller, "get_member", image_target(shared))
    # The same target, other credentials.
    assert pol.check(member(OWNER), "get_image", image_target(image()))
    assert not pol.check(ctx(OWNER), "get_image", image_target(image()))


def test_config_file_sets_policy_file(tmp_path: Path) -> None:
    rules = tmp_path / "my-policy.yaml"
    rules.write_text('"get_images": "!"\n')
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text(f"[oslo_policy]\npolicy_file = {rules}\n")
    conf = cfg.ConfigOpts()
    conf([], project="glimpse", default_config_files=[str(conf_file)])
    pol = Policy(conf)
    assert not pol.check(admin(), "get_images", {"project_id": OWNER})
