"""openstacksdk's image proxy (``conn.image``), unchanged, against a live server.

The connection uses keystoneauth's ``none`` plugin: no token, the server's URL
as endpoint; the SDK discovers the Images API version from the versions
document. Requests act as the noauth admin (no project).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI, as_project

pytestmark = [
    pytest.mark.clients,
    # openstacksdk warns about its own internals (RemovedInSDK50/60Warning); not ours.
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]

try:
    import openstack
    from openstack import exceptions as sdk_exceptions
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise
    pytest.skip("openstacksdk is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def conn(server) -> Iterator[openstack.connection.Connection]:  # noqa: ANN001
    connection = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": server.url}, image_endpoint_override=server.url)
    yield connection
    connection.close()


def test_create_with_data_then_download(conn, server_image, tmp_path, suite):
    data = os.urandom(2 * 1024 * 1024 + 123)
    image = conn.image.create_image(f"sdk-data-{suite}", data=data, disk_format="raw",
                                    container_format="bare", tags=["sdk"], os_distro="cirros",
                                    allow_duplicates=True, wait=True)
    fetched = conn.image.get_image(image.id)
    assert fetched.status == "active"
    assert fetched.size == len(data)
    assert fetched.checksum == hashlib.md5(data).hexdigest()
    assert fetched.hash_algo == "sha512"
    assert fetched.hash_value == hashlib.sha512(data).hexdigest()
    assert fetched.tags == ["sdk"]
    assert fetched.os_distro == "cirros"

    assert conn.image.download_image(image.id).content == data
    streamed = conn.image.download_image(image.id, stream=True)
    assert b"".join(streamed.iter_content(64 * 1024)) == data
    out = tmp_path / "out.raw"
    conn.image.download_image(image.id, output=str(out))
    assert out.read_bytes() == data

    on_server = server_image(image.id)
    assert on_server["status"] == "active" and on_server["os_distro"] == "cirros"
    assert on_server["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_create_from_qcow2_file_with_checksum_validation(conn, server_image, qcow2_disk, suite):
    data = qcow2_disk.path.read_bytes()
    image = conn.image.create_image(f"sdk-qcow2-{suite}", filename=str(qcow2_disk.path),
                                    disk_format="qcow2", container_format="bare",
                                    validate_checksum=True, allow_duplicates=True, wait=True)
    on_server = server_image(image.id)
    assert on_server["status"] == "active" and on_server["disk_format"] == "qcow2"
    assert on_server["checksum"] == hashlib.md5(data).hexdigest()
    assert on_server["virtual_size"] == qcow2_disk.virtual_size
    # The SDK records the hashes it computed locally as owner_specified properties.
    assert on_server["owner_specified.openstack.md5"] == hashlib.md5(data).hexdigest()
    assert on_server["owner_specified.openstack.sha256"] == hashlib.sha256(data).hexdigest()


def test_create_record_then_upload(conn, server_image, suite):
    image = conn.image.create_image(f"sdk-later-{suite}", disk_format="raw",
                                    container_format="bare", allow_duplicates=True)
    assert image.status == "queued"
    assert server_image(image.id)["status"] == "queued"

    data = b"uploaded later " * 10_000
    image.data = data
    image.upload(conn.image)
    on_server = server_image(image.id)
    assert on_server["status"] == "active"
    assert on_server["size"] == len(data)
    assert on_server["checksum"] == hashlib.md5(data).hexdigest()
    assert conn.image.download_image(image.id).content == data


def test_images_with_filters_and_paging(conn, new_image, suite):
    owner = f"sdk-lister-{suite}"
    ids = {}
    specs = (("a", "private", ["red"]), ("b", "public", ["red"]), ("c", "community", []),
             ("d", "shared", ["blue"]))
    for n, (name, visibility, tags) in enumerate(specs, start=1):
        ids[name] = new_image(data=b"x" * 100 * n, name=f"{suite}-{name}",
                              visibility=visibility, owner=owner, tags=tags)["id"]

    def listed(**query: object) -> list[str]:
        return [image.id for image in conn.image.images(owner=owner, **query)]

    assert listed(sort_key="name", sort_dir="asc") == [ids["a"], ids["b"], ids["d"]]
    # limit is the page size: the SDK follows "next" links until the list ends.
    assert listed(sort_key="name", sort_dir="desc", limit=1) == [ids["d"], ids["b"], ids["a"]]
    assert listed(sort="name:asc", limit=2) == [ids["a"], ids["b"], ids["d"]]
    assert sorted(listed(tag="red")) == sorted([ids["a"], ids["b"]])
    assert listed(visibility="community") == [ids["c"]]
    assert listed(visibility="shared") == [ids["d"]]
    assert listed(name=f"{suite}-b") == [ids["b"]]
    assert listed(size_min=300, sort_key="name", sort_dir="asc") == [ids["d"]]
    assert listed(status="queued") == []


def test_update_image_and_tags(conn, server_image, new_image, suite):
    created = new_image(name=f"sdk-upd-{suite}", keep="yes")
    image = conn.image.get_image(created["id"])
    updated = conn.image.update_image(image, name=f"sdk-renamed-{suite}", min_disk=2,
                                      hw_disk_bus="virtio", is_protected=True)
    assert updated.name == f"sdk-renamed-{suite}" and updated.is_protected is True
    on_server = server_image(created["id"])
    assert on_server["name"] == f"sdk-renamed-{suite}"
    assert on_server["min_disk"] == 2 and on_server["protected"] is True
    assert on_server["hw_disk_bus"] == "virtio" and on_server["keep"] == "yes"

    conn.image.add_tag(created["id"], "one")
    conn.image.add_tag(created["id"], "two")
    assert sorted(server_image(created["id"])["tags"]) == ["one", "two"]
    conn.image.remove_tag(created["id"], "one")
    assert server_image(created["id"])["tags"] == ["two"]


def test_members(conn, api, new_image, suite):
    owner, guest = f"sdk-owner-{suite}", f"sdk-guest-{suite}"
    image = new_image(name=f"sdk-share-{suite}", owner=owner, visibility="shared")

    member = conn.image.add_member(image["id"], member=guest)
    assert (member.member_id, member.status) == (guest, "pending")
    updated = conn.image.update_member(guest, image["id"], status="accepted")
    assert updated.status == "accepted"
    assert [(m.member_id, m.status) for m in conn.image.members(image["id"])] == [
        (guest, "accepted")]
    visible = api.get("/v2/images", headers=as_project(guest)).json()["images"]
    assert image["id"] in [i["id"] for i in visible]

    conn.image.remove_member(guest, image["id"], ignore_missing=False)
    assert list(conn.image.members(image["id"])) == []
    assert api.get(f"/v2/images/{image['id']}", headers=as_project(guest)).status_code == 404


def test_deactivate_reactivate_and_delete(conn, api, new_image, server_image, suite):
    owner = f"sdk-del-{suite}"
    image = new_image(data=b"sdk" * 1000, name=f"sdk-del-{suite}", owner=owner, protected=True)

    conn.image.deactivate_image(image["id"])
    assert server_image(image["id"])["status"] == "deactivated"
    r = api.get(f"/v2/images/{image['id']}/file", headers=as_project(owner))
    assert r.status_code == 403
    conn.image.reactivate_image(image["id"])
    assert server_image(image["id"])["status"] == "active"

    with pytest.raises(sdk_exceptions.ForbiddenException) as refused:
        conn.image.delete_image(image["id"], ignore_missing=False)
    assert "is protected and cannot be deleted" in str(refused.value)
    assert server_image(image["id"]) is not None

    conn.image.update_image(image["id"], is_protected=False)
    conn.image.delete_image(image["id"], ignore_missing=False)
    assert server_image(image["id"]) is None
    with pytest.raises(sdk_exceptions.NotFoundException):
        conn.image.get_image(image["id"])
    with pytest.raises(sdk_exceptions.NotFoundException):
        conn.image.delete_image(image["id"], ignore_missing=False)
