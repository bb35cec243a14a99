"""python-openstackclient's ``openstack image ...`` commands, unchanged, against a live server.

The client runs with ``--os-auth-type none --os-endpoint URL``: it discovers the
Images API version from the server's versions document and acts as the noauth
admin (no project).

Membership commands (``image add project``, ``image set --accept --project``,
``image remove project``) first look the project up in Keystone, which cannot
run here: the ``osc`` fixture (conftest.py) points the identity service at a
stand-in that refuses every lookup with 403, and openstackclient then uses the
given project ID as it is.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.conftest import as_project

pytestmark = pytest.mark.clients


def names(rows: list[dict[str, str]]) -> list[str]:
    return [row["Name"] for row in rows]


def test_image_create_show_and_save(osc, server_image, tmp_path, suite):
    data = os.urandom(700_000)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(data)
    name = f"osc-{suite}"
    created = osc.json("image", "create", "--file", str(disk), "--disk-format", "raw",
                       "--container-format", "bare", "--property", "os_distro=cirros",
                       "--tag", "osc", name)
    assert created["status"] == "active"
    assert created["name"] == name and created["tags"] == ["osc"]
    assert created["checksum"] == hashlib.md5(data).hexdigest()
    assert created["size"] == len(data)

    shown = osc.json("image", "show", name)  # found by name, as users do
    assert shown["id"] == created["id"]
    assert shown["properties"]["os_distro"] == "cirros"
    assert shown["properties"]["os_hash_algo"] == "sha512"
    assert shown["properties"]["os_hash_value"] == hashlib.sha512(data).hexdigest()

    saved = tmp_path / "saved.raw"
    osc.run("image", "save", "--file", str(saved), created["id"])
    assert saved.read_bytes() == data
    on_server = server_image(created["id"])
    assert on_server["checksum"] == hashlib.md5(data).hexdigest()
    assert on_server["os_distro"] == "cirros"


def test_image_list_filters(osc, new_image, suite):
    owner = f"lister-{suite}"
    made = {}
    for name, visibility, tags in (("a", "private", ["blue"]), ("b", "public", ["red"]),
                                   ("c", "community", ["blue"]), ("d", "shared", ["blue"])):
        made[name] = new_image(name=f"{suite}-{name}", visibility=visibility, owner=owner,
                               tags=tags, suite=suite)

    # The admin's default list leaves out community images.
    listed = osc.json("image", "list", "--property", f"suite={suite}", "--sort", "name:desc")
    assert names(listed) == [f"{suite}-d", f"{suite}-b", f"{suite}-a"]
    assert {row["ID"] for row in listed} == {made[k]["id"] for k in "abd"}

    shared_blue = osc.json("image", "list", "--property", f"suite={suite}", "--shared",
                           "--tag", "blue")
    assert names(shared_blue) == [f"{suite}-d"]


def test_image_set_unset_and_activation(osc, api, new_image, server_image, suite):
    owner = f"setter-{suite}"
    data = b"osc set" * 500
    image = new_image(data=data, name=f"set-{suite}", owner=owner)

    osc.run("image", "set", "--name", f"renamed-{suite}", "--min-ram", "256", "--property",
            "hw_vif_model=virtio", "--property", "keep=1", "--tag", "set-tag", "--deactivate",
            image["id"])
    on_server = server_image(image["id"])
    assert on_server["name"] == f"renamed-{suite}" and on_server["min_ram"] == 256
    assert (on_server["hw_vif_model"], on_server["keep"]) == ("virtio", "1")
    assert on_server["tags"] == ["set-tag"]
    assert on_server["status"] == "deactivated"
    assert api.get(f"/v2/images/{image['id']}/file", headers=as_project(owner)).status_code == 403

    osc.run("image", "unset", "--property", "hw_vif_model", "--tag", "set-tag", image["id"])
    on_server = server_image(image["id"])
    assert "hw_vif_model" not in on_server and on_server["keep"] == "1"
    assert on_server["tags"] == []

    osc.run("image", "set", "--activate", image["id"])
    assert server_image(image["id"])["status"] == "active"
    r = api.get(f"/v2/images/{image['id']}/file", headers=as_project(owner))
    assert r.status_code == 200 and r.content == data


def test_image_membership(osc, api, keystone, new_image, suite):
    owner, guest = f"owner-{suite}", f"guest-{suite}"
    image = new_image(name=f"share-{suite}", owner=owner, visibility="shared")
    members_url = f"/v2/images/{image['id']}/members"

    added = osc.json("image", "add", "project", image["id"], guest)
    assert (added["image_id"], added["member_id"], added["status"]) == (
        image["id"], guest, "pending")
    assert any(path.startswith(f"/v3/projects/{guest}") for path in keystone.seen)

    osc.run("image", "set", "--accept", "--project", guest, image["id"])
    listed = osc.json("image", "member", "list", image["id"])
    assert [(m["Member ID"], m["Status"]) for m in listed] == [(guest, "accepted")]
    visible = api.get("/v2/images", headers=as_project(guest)).json()["images"]
    assert image["id"] in [i["id"] for i in visible]

    osc.run("image", "remove", "project", image["id"], guest)
    assert api.get(members_url).json()["members"] == []
    assert api.get(f"/v2/images/{image['id']}", headers=as_project(guest)).status_code == 404


def test_image_delete_spares_protected_image(osc, new_image, server_image, suite):
    doomed = new_image(name=f"doomed-{suite}")
    kept = new_image(name=f"kept-{suite}", protected=True)
    result = osc.run("image", "delete", doomed["id"], kept["id"], check=False)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "Failed to delete 1 of 2 images." in err
    assert f"Image {kept['id']} is protected and cannot be deleted." in err
    assert server_image(doomed["id"]) is None
    assert server_image(kept["id"])["protected"] is True
