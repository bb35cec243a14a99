"""swift_store_multi_tenant through the API of a live ``glimpse serve`` that validates
tokens with the real Keystone: two users of two projects upload, download and delete;
each project's data is in its own Swift account (read back with tempauth's reseller
admin, not through Glimpse), in a container per image, and the other project can read
it neither through the API nor with its own token straight from Swift.

Swift is the Keystone-auth proxy of scripts/backends/swift.sh, registered in Keystone's
catalog by scripts/keystone_admin.py with each project's account URL
(``AUTH_$(project_id)s``); Glimpse finds it in the catalog of the token it validates.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import swiftclient

from tests.stores import swift_s3_backends as backends
from tests.stores.keystone_tenants import (
    Tenant,
    account_url,
    keystone_tenants,
    multi_tenant_swift_server,
)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def tenants() -> Iterator[tuple[Tenant, Tenant]]:
    """Two projects with a member each (deleted again afterwards)."""
    with keystone_tenants(2) as (a, b):
        yield a, b


@pytest.fixture(scope="module")
def container() -> str:
    return "glimpse-mt-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tenants, container: str,
        ) -> Iterator[httpx.Client]:
    # segments above 4 MB, so the second image has a manifest and three segments
    with multi_tenant_swift_server(
            tmp_path_factory.mktemp("swift-mt"), container,
            "swift_store_endpoint_type = publicURL",
            defaults=("show_image_direct_url = true",)) as (_, client):
        yield client


def _upload(api: httpx.Client, tenant: Tenant, data: bytes) -> str:
    r = api.post("/v2/images", headers=tenant.headers,
                 json={"name": "mt", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = api.put(f"/v2/images/{image_id}/file", content=data,
                headers={**tenant.headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return image_id


def test_each_project_keeps_its_images_in_its_own_account(api, tenants, container):
    a, b = tenants
    data_a, data_b = os.urandom(5 * MIB + 123), os.urandom(4321)
    image_a, image_b = _upload(api, a, data_a), _upload(api, b, data_b)

    # The location is the full storage URL of A's account, as Glance writes it.
    shown = api.get(f"/v2/images/{image_a}", headers=a.headers).json()
    expected = (f"swift+{account_url(a.project_id)}/{container}_{image_a}/{image_a}")
    assert shown["direct_url"] == expected
    assert [loc["url"] for loc in shown["locations"]] == [expected]
    assert shown["status"] == "active" and shown["size"] == len(data_a)

    # What each account holds, seen by the reseller admin: A's image (manifest and
    # segments) in A's account only, B's in B's only.
    held_a = backends.account_holdings(a.project_id, f"{container}_")
    held_b = backends.account_holdings(b.project_id, f"{container}_")
    assert f"{container}_{image_a}/{image_a}" in held_a
    assert len(held_a) == 1 + 3  # the manifest and three 2 MiB segments
    assert all(name.startswith(f"{container}_{image_a}/") for name in held_a)
    assert held_b == [f"{container}_{image_b}/{image_b}"]

    # Each reads its own back.
    r = api.get(f"/v2/images/{image_a}/file", headers=a.headers)
    assert r.status_code == 200
    assert hashlib.md5(r.content).hexdigest() == hashlib.md5(data_a).hexdigest()
    assert r.headers["Content-MD5"] == hashlib.md5(data_a).hexdigest()
    r = api.get(f"/v2/images/{image_b}/file", headers=b.headers)
    assert r.status_code == 200 and r.content == data_b
    r = api.get(f"/v2/images/{image_a}/file",
                headers={**a.headers, "Range": "bytes=4194300-4194309"})
    assert r.status_code == 206 and r.content == data_a[4194300:4194310]

    # The other project can read it neither through the API nor straight from Swift.
    assert api.get(f"/v2/images/{image_a}", headers=b.headers).status_code == 404
    assert api.get(f"/v2/images/{image_a}/file", headers=b.headers).status_code == 404
    assert api.delete(f"/v2/images/{image_a}", headers=b.headers).status_code == 404
    with pytest.raises(swiftclient.ClientException) as refused:
        swiftclient.get_object(account_url(a.project_id), b.token,
                               f"{container}_{image_a}", image_a)
    assert refused.value.http_status == 403
    with pytest.raises(swiftclient.ClientException) as refused:
        swiftclient.get_object(account_url(b.project_id), a.token,
                               f"{container}_{image_b}", image_b)
    assert refused.value.http_status == 403

    # Deleting removes the data and the image's container from the owner's account.
    assert api.delete(f"/v2/images/{image_a}", headers=a.headers).status_code == 204
    assert backends.account_holdings(a.project_id, f"{container}_") == []
    assert backends.account_holdings(b.project_id, f"{container}_") == held_b
    assert api.delete(f"/v2/images/{image_b}", headers=b.headers).status_code == 204
    assert backends.account_holdings(b.project_id, f"{container}_") == []


def test_failed_upload_leaves_nothing_in_the_account(api, tenants, container):
    """A client that goes away mid-upload: the image is queued again and the project's
    account holds nothing of it (segments, manifest, container)."""
    a, _ = tenants
    r = api.post("/v2/images", headers=a.headers,
                 json={"name": "cut", "disk_format": "raw", "container_format": "bare"})
    image_id = r.json()["id"]

    def cut() -> Iterator[bytes]:
        block = os.urandom(MIB)
        for _ in range(5):
            yield block
        raise ConnectionError("client went away")

    with pytest.raises((httpx.HTTPError, ConnectionError)):
        api.put(f"/v2/images/{image_id}/file", content=cut(),
                headers={**a.headers, "Content-Type": "application/octet-stream"})
    for _ in range(100):
        status = api.get(f"/v2/images/{image_id}", headers=a.headers).json()["status"]
        if status == "queued":
            break
        time.sleep(0.1)
    assert status == "queued"
    assert backends.account_holdings(a.project_id, f"{container}_{image_id}") == []
    assert api.delete(f"/v2/images/{image_id}", headers=a.headers).status_code == 204


def test_a_location_in_the_callers_own_account_is_sized_and_hashed_with_its_token(
        api, container):
    """Images API 2.17 ``POST /locations`` of an object a service-role caller put in its
    own account (users without the service role may add http locations only, as in
    Glance): the location import task sizes and hashes it with the caller's token (the
    service holds no Swift credentials in multi-tenant mode), and the image goes active
    with the data's checksums. Another project's caller cannot use that object."""
    with keystone_tenants(2, "glimpse-mt-svc", roles=("member", "service")) as (a, b):
        _location_import_in_own_account(api, container, a, b)


def _location_import_in_own_account(api: httpx.Client, container: str, a: Tenant,
                                    b: Tenant) -> None:
    data = os.urandom(3 * MIB + 5)
    r = api.post("/v2/images", headers=a.headers, json={
        "name": "mt-location", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    # The store's own layout (a container per image), put there by the caller itself.
    own = f"{container}_{image_id}"
    swiftclient.put_container(account_url(a.project_id), a.token, own)
    swiftclient.put_object(account_url(a.project_id), a.token, own, image_id, data)
    url = f"swift+{account_url(a.project_id)}/{own}/{image_id}"
    stolen = None
    try:
        # B cannot point its own image at A's object: its token cannot size it.
        r = api.post("/v2/images", headers=b.headers,
                     json={"name": "mt-steal", "disk_format": "raw", "container_format": "bare"})
        assert r.status_code == 201, r.text
        stolen = r.json()["id"]
        r = api.post(f"/v2/images/{stolen}/locations", json={"url": url}, headers=b.headers)
        assert r.status_code == 400, r.text
        stolen_doc = api.get(f"/v2/images/{stolen}", headers=b.headers).json()
        assert stolen_doc["status"] == "queued" and stolen_doc["size"] is None, stolen_doc

        r = api.post(f"/v2/images/{image_id}/locations", json={"url": url}, headers=a.headers)
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60  # active at once; the hashes follow (Glance)
        while True:
            tasks = api.get(f"/v2/images/{image_id}/tasks", headers=a.headers).json()["tasks"]
            if tasks and tasks[0]["status"] not in ("pending", "processing"):
                break
            assert time.monotonic() < deadline, tasks
            time.sleep(0.2)
        assert tasks[0]["status"] == "success", tasks
        doc = api.get(f"/v2/images/{image_id}", headers=a.headers).json()
        assert doc["status"] == "active", doc
        assert doc["size"] == len(data)
        assert doc["checksum"] == hashlib.md5(data).hexdigest()
        assert doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
        r = api.get(f"/v2/images/{image_id}/file", headers=a.headers)
        assert r.status_code == 200 and r.content == data
    finally:
        if stolen:
            api.delete(f"/v2/images/{stolen}", headers=b.headers)
        api.delete(f"/v2/images/{image_id}", headers=a.headers)  # removes the container
        with contextlib.suppress(swiftclient.ClientException):  # if it failed before
            swiftclient.delete_object(account_url(a.project_id), a.token, own, image_id)
            swiftclient.delete_container(account_url(a.project_id), a.token, own)
