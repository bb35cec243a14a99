"""Property protections through the HTTP API, in both rule formats.

Expected answers are Glance's (its functional tests for property protections):
403 "Attribute '<name>' is reserved." for a forbidden create/update/delete,
properties the caller may not read left out of every image document, and such
properties treated as absent (409) by replace and remove.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import load_config
from glimpse.db import repository as repo
from glimpse.domain.property_protections import InvalidPropertyProtections
from glimpse.services import runtime as runtime_mod
from tests.conftest import as_project, start_server

PATCH = "application/openstack-images-v2.1-json-patch"
PROJECT = "p-owner"
MEMBER = as_project(PROJECT)
ADMIN = as_project(PROJECT, roles="admin,member,reader")
BILLING = as_project(PROJECT, roles="member,reader,billing")

ROLES_FILE = """
[^x_owner_]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

[^x_billing_]
create = admin,billing
read = admin,member,billing
update = billing
delete = admin

[^x_none_read$]
create = admin
read = !
update = !
delete = !

[^x_all_]
create = @
read = @
update = @
delete = @

[.*]
create = admin
read = admin
update = admin
delete = admin
"""


@pytest.fixture
def roles_client(app_factory, tmp_path: Path) -> TestClient:
    path = tmp_path / "property-protections-roles.conf"
    path.write_text(ROLES_FILE)
    return app_factory(property_protection_file=str(path))


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/v2/images", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def patch(client: TestClient, image_id: str, headers: dict[str, str],
          *ops: dict[str, Any]) -> Any:
    return client.patch(f"/v2/images/{image_id}", json=list(ops),
                        headers={**headers, "Content-Type": PATCH})


def show(client: TestClient, image_id: str, headers: dict[str, str]) -> dict[str, Any]:
    r = client.get(f"/v2/images/{image_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def assert_reserved(r: Any, name: str) -> None:
    assert r.status_code == 403, r.text
    # The body is JSON or text depending on Accept; the message is Glance's either way.
    assert f"Attribute '{name}' is reserved." in r.text


def stored_properties(client: TestClient, image_id: str) -> dict[str, str]:
    """What the database holds, whatever the caller may read."""
    rt = client.app.state.runtime
    with rt.db.read() as session:
        image = repo.get_image(session, image_id)
    assert image is not None
    return image.properties


# ---------------------------------------------------------------- roles format


def test_create_needs_create_permission_for_each_property(roles_client):
    c = roles_client
    # The catch-all [.*] is admin only, and admin is just a role: a member may
    # not create "foo", even alongside a property it may create.
    r = c.post("/v2/images", json={"name": "i", "x_owner_a": "1", "foo": "bar"},
               headers=MEMBER)
    assert_reserved(r, "foo")
    assert_reserved(c.post("/v2/images", json={"x_billing_code": "1"}, headers=MEMBER),
                    "x_billing_code")
    # Core attributes are never protected, although [.*] matches their names.
    image = create(c, MEMBER, name="i", x_owner_a="1", min_ram=64, disk_format="raw",
                   container_format="bare", visibility="private", protected=False)
    assert (image["name"], image["x_owner_a"], image["min_ram"]) == ("i", "1", 64)
    assert create(c, BILLING, x_billing_code="42")["x_billing_code"] == "42"
    # '@' lets in a caller whatever its roles.
    assert create(c, as_project(PROJECT, roles="member,joe_soap"),
                  x_all_a="1")["x_all_a"] == "1"
    # Nothing of the refused creates was stored.
    images = c.get("/v2/images", headers=ADMIN).json()["images"]
    assert len(images) == 3


def test_properties_the_caller_may_not_read_are_left_out(roles_client):
    c = roles_client
    image = create(c, ADMIN, name="i", visibility="public", x_owner_a="1",
                   x_billing_code="2", os_distro="cirros", x_none_read="secret")
    # Nobody may read x_none_read, not even its admin creator: the 201 leaves it out.
    assert "x_none_read" not in image
    assert image["os_distro"] == "cirros"
    image_id = image["id"]
    admin_view = show(c, image_id, ADMIN)
    assert {"x_owner_a", "x_billing_code", "os_distro"} <= set(admin_view)
    assert "x_none_read" not in admin_view
    member_view = show(c, image_id, MEMBER)
    assert (member_view["x_owner_a"], member_view["x_billing_code"]) == ("1", "2")
    assert "os_distro" not in member_view and "x_none_read" not in member_view
    # Another project's reader of the public image: only what its roles allow.
    stranger = show(c, image_id, as_project("p-other", roles="reader"))
    assert not {"x_owner_a", "x_billing_code", "os_distro", "x_none_read"} & set(stranger)
    assert stranger["name"] == "i"  # core attributes are always shown
    # Lists filter the same way.
    listed = c.get("/v2/images", headers=MEMBER).json()["images"]
    assert [i["id"] for i in listed] == [image_id]
    assert "os_distro" not in listed[0] and listed[0]["x_billing_code"] == "2"
    assert "os_distro" in c.get("/v2/images", headers=ADMIN).json()["images"][0]
    assert stored_properties(c, image_id)["x_none_read"] == "secret"
    # Filtering on a property the caller may not read matches nothing, so the
    # filter cannot be used to guess its value.
    for headers, name, value, found in ((ADMIN, "os_distro", "cirros", 1),
                                        (MEMBER, "os_distro", "cirros", 0),
                                        (ADMIN, "x_none_read", "secret", 0),
                                        (MEMBER, "x_billing_code", "2", 1)):
        r = c.get("/v2/images", params={name: value}, headers=headers)
        assert r.status_code == 200, r.text
        assert len(r.json()["images"]) == found, (headers, name)


def test_update_needs_update_permission(roles_client):
    c = roles_client
    image_id = create(c, ADMIN, x_owner_a="1", x_billing_code="2")["id"]
    # billing's update is granted to the billing role only, not to admin.
    r = patch(c, image_id, ADMIN, {"op": "replace", "path": "/x_billing_code", "value": "3"})
    assert_reserved(r, "x_billing_code")
    # add of an existing property is an update too.
    r = patch(c, image_id, ADMIN, {"op": "add", "path": "/x_billing_code", "value": "3"})
    assert_reserved(r, "x_billing_code")
    r = patch(c, image_id, BILLING, {"op": "replace", "path": "/x_billing_code", "value": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["x_billing_code"] == "3"
    r = patch(c, image_id, MEMBER, {"op": "replace", "path": "/x_owner_a", "value": "9"},
              {"op": "replace", "path": "/name", "value": "renamed"})
    assert r.status_code == 200, r.text
    assert (r.json()["x_owner_a"], r.json()["name"]) == ("9", "renamed")


def test_adding_a_new_property_needs_create_permission(roles_client):
    c = roles_client
    image_id = create(c, MEMBER)["id"]
    r = patch(c, image_id, MEMBER, {"op": "add", "path": "/x_billing_code", "value": "1"})
    assert_reserved(r, "x_billing_code")
    r = patch(c, image_id, MEMBER, {"op": "add", "path": "/x_owner_b", "value": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["x_owner_b"] == "1"
    # Created and then updated within one patch: create, then update permission.
    r = patch(c, image_id, BILLING, {"op": "add", "path": "/x_billing_code", "value": "1"},
              {"op": "replace", "path": "/x_billing_code", "value": "2"})
    assert r.status_code == 200, r.text
    assert r.json()["x_billing_code"] == "2"


def test_remove_needs_delete_permission_and_a_refused_patch_changes_nothing(roles_client):
    c = roles_client
    image_id = create(c, ADMIN, x_owner_a="1", x_billing_code="2")["id"]
    # The first operation is allowed, the second is not: the whole patch fails.
    r = patch(c, image_id, BILLING, {"op": "replace", "path": "/x_owner_a", "value": "new"},
              {"op": "remove", "path": "/x_billing_code"})
    assert_reserved(r, "x_billing_code")
    assert stored_properties(c, image_id) == {"x_owner_a": "1", "x_billing_code": "2"}
    r = patch(c, image_id, MEMBER, {"op": "remove", "path": "/x_owner_a"})
    assert r.status_code == 200, r.text
    assert "x_owner_a" not in r.json()
    r = patch(c, image_id, ADMIN, {"op": "remove", "path": "/x_billing_code"})
    assert r.status_code == 200, r.text
    assert stored_properties(c, image_id) == {}


def test_unreadable_properties_do_not_exist_for_the_caller(roles_client):
    c = roles_client
    image_id = create(c, ADMIN, os_distro="cirros", x_none_read="secret")["id"]
    # A member cannot read os_distro: replace and remove answer as for a missing one.
    for op in ({"op": "replace", "path": "/os_distro", "value": "x"},
               {"op": "remove", "path": "/os_distro"}):
        r = patch(c, image_id, MEMBER, op)
        assert r.status_code == 409, r.text
        assert "Property os_distro does not exist." in r.text
    # Admin may update os_distro but no one may read, update or delete x_none_read.
    r = patch(c, image_id, ADMIN, {"op": "remove", "path": "/x_none_read"})
    assert r.status_code == 409, r.text
    # Changes by a caller that cannot see them leave hidden properties alone.
    r = patch(c, image_id, MEMBER, {"op": "replace", "path": "/name", "value": "n"},
              {"op": "add", "path": "/x_owner_a", "value": "1"})
    assert r.status_code == 200, r.text
    assert "os_distro" not in r.json()
    assert stored_properties(c, image_id) == {"os_distro": "cirros", "x_none_read": "secret",
                                              "x_owner_a": "1"}


def test_without_a_file_nothing_is_protected(client):
    image = create(client, MEMBER, foo="bar", x_billing_code="1")
    r = patch(client, image["id"], as_project(PROJECT, roles="member,reader"),
              {"op": "remove", "path": "/foo"})
    assert r.status_code == 200, r.text
    assert r.json()["x_billing_code"] == "1"


# ---------------------------------------------------------------- policies format

POLICIES_FILE = """
[^spl_creator_policy$]
create = glance_creator
read = glance_creator
update = context_is_admin
delete = glance_creator

[^spl_default_policy$]
create = context_is_admin
read = default
update = context_is_admin
delete = context_is_admin

[^x_all_]
create = @
read = @
update = @
delete = !

[.*]
create = context_is_admin
read = context_is_admin
update = context_is_admin
delete = context_is_admin
"""


@pytest.fixture
def policies_client(tmp_path: Path, db_url: str):  # noqa: ANN201
    """As an operator sets it up: glance-api.conf names a policy file and the
    protections file (relative names, found beside glance-api.conf)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "policy.yaml").write_text('"glance_creator": "role:admin or role:spl_role"\n')
    (etc / "property-protections-policies.conf").write_text(POLICIES_FILE)
    (etc / "glance-api.conf").write_text(
        "[DEFAULT]\n"
        "property_protection_file = property-protections-policies.conf\n"
        "property_protection_rule_format = policies\n"
        "[oslo_policy]\n"
        f"policy_file = {etc / 'policy.yaml'}\n")
    conf = load_config([str(etc / "glance-api.conf")],
                       {"data_dir": str(tmp_path / "data"), "database.connection": db_url})
    rt = runtime_mod.build(conf, migrate=True)
    yield TestClient(create_app(conf, rt))
    rt.close()


def test_policies_format_with_rules_from_the_policy_file(policies_client):
    c = policies_client
    spl = as_project(PROJECT, roles="member,reader,spl_role")
    # member matches neither glance_creator nor context_is_admin.
    assert_reserved(c.post("/v2/images", json={"spl_creator_policy": "x"}, headers=MEMBER),
                    "spl_creator_policy")
    assert_reserved(c.post("/v2/images", json={"spl_default_policy": "x"}, headers=spl),
                    "spl_default_policy")
    image = create(c, spl, spl_creator_policy="creator_bar", x_all_a="1")
    assert image["spl_creator_policy"] == "creator_bar"
    image_id = image["id"]
    # update is context_is_admin only.
    r = patch(c, image_id, spl, {"op": "replace", "path": "/spl_creator_policy", "value": "z"})
    assert_reserved(r, "spl_creator_policy")
    r = patch(c, image_id, ADMIN, {"op": "replace", "path": "/spl_creator_policy", "value": "r"},
              {"op": "add", "path": "/spl_default_policy", "value": "default_bar"})
    assert r.status_code == 200, r.text
    # read: glance_creator for one, "default" (anyone) for the other.
    member_view = show(c, image_id, MEMBER)
    assert member_view["spl_default_policy"] == "default_bar"
    assert "spl_creator_policy" not in member_view
    assert show(c, image_id, spl)["spl_creator_policy"] == "r"
    listed = c.get("/v2/images", headers=MEMBER).json()["images"]
    assert "spl_creator_policy" not in listed[0] and listed[0]["x_all_a"] == "1"
    # delete: glance_creator; '!' refuses even the admin.
    assert_reserved(patch(c, image_id, ADMIN, {"op": "remove", "path": "/x_all_a"}),
                    "x_all_a")
    r = patch(c, image_id, spl, {"op": "remove", "path": "/spl_creator_policy"})
    assert r.status_code == 200, r.text
    assert "spl_creator_policy" not in show(c, image_id, ADMIN)


# ---------------------------------------------------------------- refusing to start
# These need no database: the file is read before the database is opened.


@pytest.mark.parametrize(("text", "fmt", "says"), [
    (None, "roles", "was not found"),
    ("[x_(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n", "roles",
     "not a valid regular expression"),
    ("[x_]\ncreate = @\nread = @\nupdate = @\ndelete = @\nremove = @\n", "roles",
     "unknown operation(s) remove"),
    ("[x_]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n", "roles", "cannot be combined"),
    ("[x_]\ncreate = a,b\nread = a\nupdate = a\ndelete = a\n", "policies",
     "only one policy rule"),
])
def test_an_unusable_file_stops_the_runtime_build(tmp_path: Path, text, fmt, says):
    path = tmp_path / "pp.conf"
    if text is not None:
        path.write_text(text)
    conf = load_config([], {"data_dir": str(tmp_path / "data"),
                            "property_protection_file": str(path),
                            "property_protection_rule_format": fmt})
    with pytest.raises(InvalidPropertyProtections) as info:
        runtime_mod.build(conf)
    assert str(path) in str(info.value) and says in str(info.value)


def test_glimpse_serve_refuses_to_start_with_a_missing_file(tmp_path: Path):
    with pytest.raises(RuntimeError, match="server exited early") as info:
        start_server(tmp_path, config_text="property_protection_file = /nonexistent/pp.conf")
    assert "Property protection file /nonexistent/pp.conf" in str(info.value)
