"""python-glanceclient's ``glance`` command, unchanged, against a live server.

Every step checks the server's own state over plain HTTP as well as what the
client printed. The client talks to an unauthenticated (noauth) endpoint, so
it acts as the admin with no project; project-owned images are made with the
API's ``owner`` attribute (``glance image-create --owner``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import as_project

pytestmark = pytest.mark.clients


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def assert_hashes(image: dict, data: bytes) -> None:
    """``image`` holds strings (a glance table) or JSON values (the API)."""
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert str(image["size"]) == str(len(data))


def ids(rows: list[dict[str, str]]) -> list[str]:
    return [row["ID"] for row in rows]


def test_image_create_with_raw_file_and_show(glance, server_image, tmp_path, suite):
    data = write_random(tmp_path / "disk.raw", 300_000)
    created = glance.props("image-create", "--name", f"raw-{suite}", "--disk-format", "raw",
                           "--container-format", "bare", "--file", str(tmp_path / "disk.raw"),
                           "--property", "os_distro=cirros", "--tags", "alpha", "beta")
    assert created["status"] == "active"
    assert created["os_distro"] == "cirros"
    assert sorted(json.loads(created["tags"])) == ["alpha", "beta"]
    assert_hashes(created, data)

    shown = glance.props("image-show", created["id"])
    assert shown["name"] == f"raw-{suite}"
    assert shown["disk_format"] == "raw" and shown["container_format"] == "bare"
    assert_hashes(shown, data)

    on_server = server_image(created["id"])
    assert on_server["status"] == "active"
    assert on_server["os_distro"] == "cirros"
    assert_hashes(on_server, data)


def test_image_create_with_qcow2_file_and_download(glance, server_image, qcow2_disk, tmp_path,
                                                   suite):
    data = qcow2_disk.path.read_bytes()
    created = glance.props("image-create", "--name", f"qcow2-{suite}", "--disk-format", "qcow2",
                           "--container-format", "bare", "--file", str(qcow2_disk.path))
    assert created["status"] == "active"
    assert created["disk_format"] == "qcow2"
    assert_hashes(created, data)
    assert created["virtual_size"] == str(qcow2_disk.virtual_size)
    assert server_image(created["id"])["virtual_size"] == qcow2_disk.virtual_size

    out = tmp_path / "back.qcow2"
    glance.run("image-download", "--file", str(out), created["id"])
    assert out.read_bytes() == data


def test_image_create_then_upload_then_download(glance, server_image, tmp_path, suite):
    data = write_random(tmp_path / "disk.raw", 1_500_000)
    created = glance.props("image-create", "--name", f"later-{suite}", "--disk-format", "raw",
                           "--container-format", "bare")
    assert created["status"] == "queued"
    assert server_image(created["id"])["size"] is None

    glance.run("image-upload", "--file", str(tmp_path / "disk.raw"), created["id"])
    on_server = server_image(created["id"])
    assert on_server["status"] == "active"
    assert_hashes(on_server, data)

    to_stdout = glance.run("image-download", created["id"]).stdout
    assert to_stdout == data


@pytest.fixture
def listed_images(new_image, suite):
    """Four images of one project, one per visibility, with a common ``suite`` property."""
    owner = f"lister-{suite}"
    made = {}
    for name, visibility, tags in (("a", "private", ["red"]), ("b", "public", ["red", "blue"]),
                                   ("c", "community", ["blue"]), ("d", "shared", [])):
        made[name] = new_image(data=name.encode() * 10, name=f"{suite}-{name}",
                               visibility=visibility, owner=owner, tags=tags, suite=suite)
    return {k: v["id"] for k, v in made.items()}


def test_image_list_filters_sorting_and_paging(glance, listed_images, suite):
    a, b, c, d = (listed_images[k] for k in "abcd")
    suite_filter = ("--property-filter", f"suite={suite}")

    # Without a visibility filter an admin with no project sees every image but
    # community ones (Glance lists community images only on request).
    default = ids(glance.rows("image-list", *suite_filter))
    assert sorted(default) == sorted([a, b, d])

    assert sorted(ids(glance.rows("image-list", *suite_filter, "--tag", "red"))) == sorted([a, b])
    assert ids(glance.rows("image-list", *suite_filter, "--tag", "red", "--tag", "blue")) == [b]

    limited = ids(glance.rows("image-list", *suite_filter, "--sort-key", "name",
                              "--sort-dir", "desc", "--limit", "2"))
    assert limited == [d, b]

    # --page-size 1 makes the client follow the server's "next" links page by page;
    # the pages must join up in the requested order.
    paged = glance.run("--debug", "image-list", *suite_filter, "--sort-key", "name",
                       "--sort-dir", "asc", "--page-size", "1")
    assert ids(glance.parse_rows(paged.stdout.decode())) == [a, b, d]
    requests = set(re.findall(r'"GET (/v2/images\?\S+) HTTP', paged.stderr.decode()))
    assert len([r for r in requests if "marker=" in r]) >= 2, requests
    assert all("limit=1" in r for r in requests), requests


def test_image_list_visibility_filter(glance, listed_images, suite):
    a, b, c, d = (listed_images[k] for k in "abcd")
    suite_filter = ("--property-filter", f"suite={suite}")
    expected = {"private": [a], "community": [c], "shared": [d]}
    for visibility, wanted in expected.items():
        got = ids(glance.rows("image-list", *suite_filter, "--visibility", visibility))
        assert got == wanted, f"--visibility {visibility}: {got}"


def test_image_update_properties(glance, new_image, server_image, suite):
    image = new_image(name=f"upd-{suite}", keep="yes")
    updated = glance.props("image-update", "--name", f"renamed-{suite}", "--min-ram", "512",
                           "--property", "hw_disk_bus=scsi", "--property", "os_type=linux",
                           image["id"])
    assert updated["name"] == f"renamed-{suite}"
    assert updated["hw_disk_bus"] == "scsi" and updated["os_type"] == "linux"
    on_server = server_image(image["id"])
    assert on_server["min_ram"] == 512
    assert (on_server["hw_disk_bus"], on_server["os_type"], on_server["keep"]) == (
        "scsi", "linux", "yes")

    after = glance.props("image-update", "--remove-property", "hw_disk_bus", image["id"])
    assert "hw_disk_bus" not in after
    on_server = server_image(image["id"])
    assert "hw_disk_bus" not in on_server
    assert on_server["os_type"] == "linux" and on_server["keep"] == "yes"


def test_image_tags(glance, new_image, server_image, suite):
    image = new_image(name=f"tags-{suite}", tags=["keep"])
    glance.run("image-tag-update", image["id"], "fresh")
    assert sorted(server_image(image["id"])["tags"]) == ["fresh", "keep"]
    glance.run("image-tag-delete", image["id"], "keep")
    assert server_image(image["id"])["tags"] == ["fresh"]


def test_image_members(glance, api, server_image, suite):
    owner, guest = f"owner-{suite}", f"guest-{suite}"
    created = glance.props("image-create", "--name", f"shared-{suite}", "--owner", owner,
                           "--visibility", "shared", "--disk-format", "raw",
                           "--container-format", "bare")
    image_id = created["id"]
    assert created["owner"] == owner
    assert server_image(image_id)["owner"] == owner

    def guest_list(member_status: str = "accepted") -> list[str]:
        r = api.get("/v2/images", params={"member_status": member_status},
                    headers=as_project(guest))
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["images"]]

    added = glance.rows("member-create", image_id, guest)
    assert [(m["Member ID"], m["Status"]) for m in added] == [(guest, "pending")]
    assert image_id in guest_list("pending")
    assert image_id not in guest_list()

    updated = glance.rows("member-update", image_id, guest, "accepted")
    assert [(m["Member ID"], m["Status"]) for m in updated] == [(guest, "accepted")]
    listed = glance.rows("member-list", "--image-id", image_id)
    assert [(m["Image ID"], m["Member ID"], m["Status"]) for m in listed] == [
        (image_id, guest, "accepted")]
    assert image_id in guest_list()

    glance.run("member-delete", image_id, guest)
    assert api.get(f"/v2/images/{image_id}/members").json()["members"] == []
    assert server_image(image_id, as_project(guest)) is None


def test_image_deactivate_and_reactivate(glance, api, new_image, server_image, tmp_path, suite):
    owner = f"deact-{suite}"
    data = b"deactivate me" * 1000
    image = new_image(data=data, name=f"deact-{suite}", owner=owner)
    file_url = f"/v2/images/{image['id']}/file"

    glance.run("image-deactivate", image["id"])
    assert server_image(image["id"])["status"] == "deactivated"
    assert api.get(file_url, headers=as_project(owner)).status_code == 403
    out = tmp_path / "admin-copy"
    glance.run("image-download", "--file", str(out), image["id"])
    assert out.read_bytes() == data  # an admin may still read a deactivated image

    glance.run("image-reactivate", image["id"])
    assert server_image(image["id"])["status"] == "active"
    r = api.get(file_url, headers=as_project(owner))
    assert r.status_code == 200 and r.content == data


def test_image_delete_and_protected_image(glance, server_image, suite):
    created = glance.props("image-create", "--name", f"prot-{suite}", "--protected", "True",
                           "--disk-format", "raw", "--container-format", "bare")
    image_id = created["id"]
    assert created["protected"] == "True"

    glance.run("image-delete", image_id, check=False)
    assert server_image(image_id)["protected"] is True

    assert glance.props("image-update", "--protected", "False", image_id)["protected"] == "False"
    glance.run("image-delete", image_id)
    assert server_image(image_id) is None


def test_refusals_reach_the_user(glance, new_image, server_image, tmp_path, suite):
    """glanceclient turns error responses into messages; the server's reason must
    get through (and each refusal must leave the image as it was)."""
    protected = new_image(name=f"keep-{suite}", protected=True)
    err = glance.error("image-delete", protected["id"])
    assert f"You are not permitted to delete the image '{protected['id']}'." in err
    assert server_image(protected["id"]) is not None

    missing = "4f1c3a2e-0000-4000-8000-" + suite
    err = glance.error("image-delete", missing)
    assert f"No image with an ID of '{missing}' exists." in err
    err = glance.error("image-show", missing)
    assert "404 Not Found" in err and f"No image found with ID {missing}" in err

    data = b"uploaded once" * 100
    active = new_image(data=data, name=f"once-{suite}")
    (tmp_path / "again").write_bytes(b"again")
    err = glance.error("image-upload", "--file", str(tmp_path / "again"), active["id"])
    assert "409 Conflict" in err
    assert "Image status transition from active to saving is not allowed" in err
    assert server_image(active["id"])["checksum"] == hashlib.md5(data).hexdigest()
