"""Container ACLs of multi-tenant Swift through the API of a live ``glimpse serve``
that validates tokens with the real Keystone: other projects read an image's data
with their own tokens straight from Swift exactly while Glimpse lets them read the
image (shared with them, public, community), and the admin tenants read and write
every container. Each project's access is checked with a plain GET of the object on
the Keystone-auth Swift proxy of scripts/backends/swift.sh, and through Glimpse.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import swiftclient

from tests.conftest import LiveServer
from tests.stores import swift_s3_backends as backends
from tests.stores.keystone_tenants import (
    Tenant,
    account_url,
    keystone_tenants,
    multi_tenant_swift_server,
)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def tenants() -> Iterator[tuple[Tenant, Tenant, Tenant]]:
    """The owner A, another project B, and C: an admin tenant of the store."""
    with keystone_tenants(3, "glimpse-acl") as (a, b, c):
        yield a, b, c


@pytest.fixture(scope="module")
def container() -> str:
    return "glimpse-acl-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tenants, container: str,
           ) -> Iterator[tuple[LiveServer, httpx.Client]]:
    _, _, c = tenants
    where = tmp_path_factory.mktemp("swift-acl")
    # Owners may make images public here (by default only admins may).
    policy = where / "policy.yaml"
    policy.write_text('"publicize_image": "role:member"\n')
    with multi_tenant_swift_server(
            where, container, f"swift_store_admin_tenants = {c.project_id}",
            sections=("[oslo_policy]", f"policy_file = {policy}")) as both:
        yield both


@pytest.fixture(scope="module")
def server(served) -> LiveServer:
    return served[0]


@pytest.fixture(scope="module")
def api(served) -> httpx.Client:
    return served[1]


def _create(api: httpx.Client, owner: Tenant, visibility: str = "shared") -> str:
    r = api.post("/v2/images", headers=owner.headers,
                 json={"name": "acl", "disk_format": "raw", "container_format": "bare",
                       "visibility": visibility})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _upload(api: httpx.Client, owner: Tenant, image_id: str, data: bytes) -> None:
    r = api.put(f"/v2/images/{image_id}/file", content=data,
                headers={**owner.headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text


def _direct(tenant: Tenant, owner: Tenant, container: str, image_id: str) -> bytes | int:
    """GET of the image's object straight from Swift with ``tenant``'s own token: the
    data, or the status Swift refused it with."""
    try:
        _, body = swiftclient.get_object(account_url(owner.project_id), tenant.token,
                                         f"{container}_{image_id}", image_id)
    except swiftclient.ClientException as exc:
        return exc.http_status
    return body


def _acls(owner: Tenant, container: str, image_id: str) -> tuple[str, str]:
    """The container's read and write ACLs, as the reseller admin sees them."""
    base, token = backends.reseller_admin()
    headers = swiftclient.head_container(f"{base}/AUTH_{owner.project_id}", token,
                                         f"{container}_{image_id}")
    return headers.get("x-container-read", ""), headers.get("x-container-write", "")


def _patch(api: httpx.Client, owner: Tenant, image_id: str, **values: str) -> httpx.Response:
    return api.patch(f"/v2/images/{image_id}", headers={
        **owner.headers, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "replace", "path": f"/{k}", "value": v} for k, v in values.items()])


def test_members_read_with_their_own_tokens_while_shared(api, tenants, container):
    a, b, c = tenants
    data = os.urandom(5 * MIB + 17)  # a manifest and three segments: the ACL covers all
    image_id = _create(api, a)
    _upload(api, a, image_id, data)
    # Only the owner's account and the admin tenant: B's token is refused by Swift.
    assert _acls(a, container, image_id) == (f"{a.project_id}:*,{c.project_id}:*",
                                             f"{c.project_id}:*")
    assert _direct(b, a, container, image_id) == 403
    assert api.get(f"/v2/images/{image_id}/file", headers=b.headers).status_code == 404

    # A shares the image with B: B's token reads the object itself, from the moment
    # it is a member (Glance's rule: any member status; Glimpse lets it download).
    r = api.post(f"/v2/images/{image_id}/members", headers=a.headers,
                 json={"member": b.project_id})
    assert r.status_code == 200, r.text
    assert _direct(b, a, container, image_id) == data
    r = api.put(f"/v2/images/{image_id}/members/{b.project_id}", headers=b.headers,
                json={"status": "accepted"})
    assert r.status_code == 200, r.text
    assert _direct(b, a, container, image_id) == data
    r = api.get(f"/v2/images/{image_id}/file", headers=b.headers)
    assert r.status_code == 200
    assert hashlib.md5(r.content).hexdigest() == hashlib.md5(data).hexdigest()
    read, _ = _acls(a, container, image_id)
    assert read.split(",") == [f"{a.project_id}:*", f"{b.project_id}:*",
                               f"{c.project_id}:*"]

    # The membership removed: Swift refuses B's token again, and so does Glimpse.
    r = api.delete(f"/v2/images/{image_id}/members/{b.project_id}", headers=a.headers)
    assert r.status_code == 204, r.text
    assert _direct(b, a, container, image_id) == 403
    assert api.get(f"/v2/images/{image_id}/file", headers=b.headers).status_code == 404

    # Public: any project's token reads it (authenticated: never anonymous).
    assert _patch(api, a, image_id, visibility="public").status_code == 200
    assert _acls(a, container, image_id)[0] == "*:*"
    assert _direct(b, a, container, image_id) == data
    r = api.get(f"/v2/images/{image_id}/file", headers=b.headers)
    assert r.status_code == 200 and r.content == data
    with pytest.raises(swiftclient.ClientException) as anonymous:
        swiftclient.get_object(account_url(a.project_id), "", f"{container}_{image_id}",
                               image_id)
    assert anonymous.value.http_status == 401

    # Community is public to the stores as well; private takes it back.
    assert _patch(api, a, image_id, visibility="community").status_code == 200
    assert _direct(b, a, container, image_id) == data
    assert _patch(api, a, image_id, visibility="private").status_code == 200
    assert _acls(a, container, image_id) == (f"{a.project_id}:*,{c.project_id}:*",
                                             f"{c.project_id}:*")
    assert _direct(b, a, container, image_id) == 403

    # The admin tenant reads every container (a private image here) and writes to it.
    assert _direct(c, a, container, image_id) == data
    swiftclient.put_object(account_url(a.project_id), c.token, f"{container}_{image_id}",
                           "written-by-admin-tenant", b"admin")
    with pytest.raises(swiftclient.ClientException) as refused:
        swiftclient.put_object(account_url(a.project_id), b.token,
                               f"{container}_{image_id}", "written-by-b", b"b")
    assert refused.value.http_status == 403
    base, token = backends.reseller_admin()
    swiftclient.delete_object(f"{base}/AUTH_{a.project_id}", token,
                              f"{container}_{image_id}", "written-by-admin-tenant")
    # Why the read list too: Glance names the admin tenants in the write ACL only,
    # and with that alone Swift lets them write but not read.
    swiftclient.post_container(account_url(a.project_id), a.token, f"{container}_{image_id}",
                               {"X-Container-Read": "", "X-Container-Write": f"{c.project_id}:*"})
    assert _direct(c, a, container, image_id) == 403

    assert api.delete(f"/v2/images/{image_id}", headers=a.headers).status_code == 204
    assert backends.account_holdings(a.project_id, f"{container}_{image_id}") == []


def test_lists_are_set_when_the_data_arrives(api, tenants, container):
    """Visibility and members set before there is any data: the upload, and a
    glance-direct import, give the new container its lists."""
    a, b, _ = tenants
    public = _create(api, a, "public")
    _upload(api, a, public, b"public data")
    assert _direct(b, a, container, public) == b"public data"

    shared = _create(api, a)
    r = api.post(f"/v2/images/{shared}/members", headers=a.headers,
                 json={"member": b.project_id})
    assert r.status_code == 200, r.text
    r = api.put(f"/v2/images/{shared}/stage", content=b"staged data",
                headers={**a.headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    r = api.post(f"/v2/images/{shared}/import", headers=a.headers,
                 json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = api.get(f"/v2/images/{shared}", headers=a.headers).json()["status"]
        if status not in ("uploading", "importing"):
            break
        time.sleep(0.2)
    assert status == "active"
    assert _direct(b, a, container, shared) == b"staged data"
    for image_id in (public, shared):
        assert api.delete(f"/v2/images/{image_id}", headers=a.headers).status_code == 204


def test_a_store_that_refuses_the_lists_does_not_fail_the_call(api, server, tenants,
                                                               container):
    """The container is gone behind Glimpse's back: the PATCH and the member calls
    still succeed (the change is committed); the log says the lists were not set."""
    a, b, _ = tenants
    image_id = _create(api, a)
    _upload(api, a, image_id, b"data")
    base, token = backends.reseller_admin()
    account = f"{base}/AUTH_{a.project_id}"
    swiftclient.delete_object(account, token, f"{container}_{image_id}", image_id)
    swiftclient.delete_container(account, token, f"{container}_{image_id}")

    r = _patch(api, a, image_id, visibility="public")
    assert r.status_code == 200 and r.json()["visibility"] == "public"
    assert _patch(api, a, image_id, visibility="shared").status_code == 200
    r = api.post(f"/v2/images/{image_id}/members", headers=a.headers,
                 json={"member": b.project_id})
    assert r.status_code == 200, r.text
    log = server.log.read_text()
    assert f"Image {image_id}: access list of" in log and "not updated" in log
    assert api.delete(f"/v2/images/{image_id}", headers=a.headers).status_code == 204
