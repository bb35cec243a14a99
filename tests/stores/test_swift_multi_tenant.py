"""Multi-tenant Swift's edges (the conformance suite and test_swift_multi_tenant_api.py
cover the data path): whose token goes where, catalogs in both forms, configuration."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import swiftclient

from glimpse.api.auth import context_from_headers
from glimpse.stores.base import Credentials, StoreError, StoreForbidden
from glimpse.stores.swift import SwiftStore
from tests.stores import swift_s3_backends as backends

V3_CATALOG = ({"type": "object-store", "name": "swift", "endpoints": [
    {"interface": "internal", "region_id": "RegionOne", "url": "http://10.0.0.1/v1/AUTH_p"},
    {"interface": "public", "region_id": "RegionTwo", "url": "http://two.test/v1/AUTH_p"},
    {"interface": "public", "region_id": "RegionOne", "url": "http://one.test/v1/AUTH_p"}]},)
V2_CATALOG = ({"type": "object-store", "name": "swift", "endpoints": [
    {"region": "RegionOne", "publicURL": "http://one.test/v1/AUTH_p",
     "internalURL": "http://10.0.0.1/v1/AUTH_p", "adminURL": "http://adm/v1"}]},)


@pytest.mark.parametrize("catalog", [V3_CATALOG, V2_CATALOG])
def test_catalog_endpoints_in_keystone_and_keystonemiddleware_forms(catalog):
    creds = Credentials(token="t", service_catalog=catalog)
    assert creds.endpoint("object-store", "publicURL", "RegionOne") == \
        "http://one.test/v1/AUTH_p"
    assert creds.endpoint("object-store", "internalURL") == "http://10.0.0.1/v1/AUTH_p"
    assert creds.endpoint("object-store", "public", "RegionNine") is None
    assert creds.endpoint("image") is None


def test_x_service_catalog_header_reaches_the_context():
    ctx = context_from_headers({"x-identity-status": "Confirmed", "x-auth-token": "tok",
                                "x-project-id": "p1", "x-user-id": "u1",
                                "x-service-catalog": json.dumps(list(V2_CATALOG))}, "req-1")
    creds = Credentials.of(ctx)
    assert creds is not None and creds.token == "tok" and creds.project_id == "p1"
    assert creds.endpoint("object-store", "publicURL") == "http://one.test/v1/AUTH_p"
    broken = context_from_headers({"x-identity-status": "Confirmed",
                                   "x-service-catalog": "{not json"}, "req-2")
    assert broken.service_catalog == ()


def _store(**options: object) -> SwiftStore:
    return SwiftStore("mt", multi_tenant=True, container="glance", timeout=5, retries=0,
                      **options)


def test_no_token_is_refused_before_anything_is_sent():
    store = _store()
    url = "swift+http://127.0.0.1:9/v1/AUTH_p/glance_img/img"
    assert store.owns(url)
    for creds in (None, Credentials(service_catalog=V3_CATALOG)):
        with pytest.raises(StoreForbidden):
            store.add("img", iter([b"data"]), creds)
        with pytest.raises(StoreForbidden):
            store.size(url, creds)
        with pytest.raises(StoreForbidden):
            list(store.get(url, creds=creds))
        with pytest.raises(StoreForbidden):
            store.delete(url, creds)


def test_catalog_without_the_object_store_is_a_clear_error():
    with pytest.raises(StoreError, match="No object-store endpoint"):
        _store().add("img", iter([b"data"]), Credentials(token="t"))


def test_the_token_never_goes_to_a_host_a_location_names():
    """A location on another host than the caller's own object-store endpoint (one
    added by a user, say) is refused with 403; that host never hears of the token."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heard: list[bytes] = []

    def accept() -> None:
        listener.settimeout(3)
        try:
            conn, _ = listener.accept()
            heard.append(conn.recv(65536))
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    creds = Credentials(token="secret-token", service_catalog=V3_CATALOG)
    store = _store(region_name="RegionOne")
    url = f"swift+http://127.0.0.1:{port}/v1/AUTH_p/glance_img/img"
    with pytest.raises(StoreForbidden, match="not sent there"):
        store.size(url, creds)
    with pytest.raises(StoreForbidden):
        list(store.get(url, creds=creds))
    with pytest.raises(StoreForbidden):
        store.delete(url, creds)
    thread.join()
    listener.close()
    assert heard == []


def test_real_token_of_another_account_on_the_same_swift_is_refused_by_swift(tmp_path):
    """The same Swift, another project's account: the token goes there (it is the
    caller's endpoint), and Swift itself refuses it."""
    creds = backends.service_user_credentials()
    store = backends.make_swift_multi_tenant(tmp_path)
    mine = creds.endpoint(backends.TENANT_SERVICE_TYPE)
    assert mine is not None
    other = mine.rsplit("/", 1)[0] + "/AUTH_00000000000000000000000000000000"
    url = f"swift+{other}/{store.container}_img/img"
    with pytest.raises(StoreForbidden):
        store.size(url, creds)


def test_config_file_and_multi_tenant_exclude_each_other(tmp_path):
    from glimpse.stores.swift import SwiftAccount

    with pytest.raises(ValueError, match="mutually exclusive"):
        SwiftStore("mt", multi_tenant=True, use_references=True,
                   accounts={"ref1": SwiftAccount("http://127.0.0.1:1/v3", "p:u", "k")})


def test_multi_tenant_store_builds_from_glance_options(tmp_path):
    from glimpse.config import load_config
    from glimpse.stores import registry

    conf_path = tmp_path / "glance-api.conf"
    conf_path.write_text(f"[DEFAULT]\ndata_dir = {tmp_path}\nenabled_backends = mt:swift\n"
                         "[mt]\nswift_store_multi_tenant = true\n"
                         "swift_store_container = images\n")
    store = registry.from_conf(load_config([str(conf_path)])).get("mt")
    assert store.multi_tenant and store.container == "images"
    assert store.owns("swift+https://swift.test/v1/AUTH_p/images_abc/abc")
    assert not store.owns("swift+https://swift.test/v1/AUTH_p/images/abc")
    with pytest.raises(NotImplementedError):
        store.list_data()


def _container_acls(project_id: str, container: str) -> tuple[str, str]:
    base, token = backends.reseller_admin()
    headers = swiftclient.head_container(f"{base}/AUTH_{project_id}", token, container)
    return headers.get("x-container-read", ""), headers.get("x-container-write", "")


def test_acls_of_a_real_container(tmp_path):
    """set_acls writes Glance's ACL forms on the image's container in the caller's
    account; the admin tenants are in both lists; ids that would change the ACL's
    meaning (".r:*" lets anyone in) are left out."""
    creds = backends.service_user_credentials()
    store = backends.make_swift_multi_tenant(tmp_path, admin_tenants=["adm1", "adm2"])
    assert store.access_lists
    stored = store.add("img-acl", iter([b"data"]), creds)
    container = f"{store.container}_img-acl"
    try:
        store.set_acls(stored.url, False, ["p1", "p2", "p1"], ["w1"], creds)
        assert _container_acls(creds.project_id, container) == (
            "p1:*,p2:*,adm1:*,adm2:*", "w1:*,adm1:*,adm2:*")
        store.set_acls(stored.url, True, ["p1"], (), creds)
        assert _container_acls(creds.project_id, container) == ("*:*", "adm1:*,adm2:*")
        store.set_acls(stored.url, False, ["x,.r:*", "a b", "", ".r:*"], (), creds)
        assert _container_acls(creds.project_id, container) == (
            "adm1:*,adm2:*", "adm1:*,adm2:*")
        with pytest.raises(swiftclient.ClientException) as anonymous:
            swiftclient.get_object(stored.url.removeprefix("swift+").rsplit("/", 2)[0], "",
                                   container, "img-acl")
        assert anonymous.value.http_status == 401
    finally:
        store.delete(stored.url, creds)
    with pytest.raises(StoreError):  # the container went with the image
        store.set_acls(stored.url, True, (), (), creds)


def test_acls_only_with_a_token_of_the_account(tmp_path):
    """Swift ignores ACL headers from a token that is not the account's own (it only
    lets it write, with a write ACL): set_acls refuses rather than seem to succeed."""
    creds = backends.service_user_credentials()
    store = backends.make_swift_multi_tenant(tmp_path)
    mine = creds.endpoint(backends.TENANT_SERVICE_TYPE)
    other = mine.rsplit("/", 1)[0] + "/AUTH_00000000000000000000000000000000"
    with pytest.raises(StoreForbidden, match="account that holds"):
        store.set_acls(f"swift+{other}/{store.container}_img/img", True, (), (), creds)


def test_admin_tenants_must_be_project_ids():
    with pytest.raises(ValueError, match="swift_store_admin_tenants"):
        _store(admin_tenants=["ok", ".r:*"])


def test_single_tenant_swift_keeps_no_access_lists():
    store = SwiftStore("st", auth_address="http://127.0.0.1:9/auth/v1.0", user="a:b",
                       key="k", auth_version="1", container="glance")
    assert not store.access_lists
    # Nothing to do, nothing sent (nobody listens on port 9).
    store.set_acls("swift+http://127.0.0.1:9/auth/v1.0/glance/img", True, ["p"], (), None)


@pytest.mark.parametrize("where", ["[mt]", "[glance_store]", "[DEFAULT]"])
def test_admin_tenants_option_in_each_place_glance_reads_it(tmp_path, where):
    from glimpse.config import load_config
    from glimpse.stores import registry

    store_lines = ("swift_store_multi_tenant = true\nswift_store_container = images\n")
    admins = "swift_store_admin_tenants = adm1, adm2\n"
    if where == "[mt]":
        text = (f"[DEFAULT]\ndata_dir = {tmp_path}\nenabled_backends = mt:swift\n"
                f"[mt]\n{store_lines}{admins}")
        name = "mt"
    else:
        legacy = admins if where == "[DEFAULT]" else ""
        text = (f"[DEFAULT]\ndata_dir = {tmp_path}\n{legacy}[glance_store]\nstores = swift\n"
                f"default_store = swift\n{store_lines}"
                f"{admins if where == '[glance_store]' else ''}")
        name = "swift"
    conf_path = tmp_path / "glance-api.conf"
    conf_path.write_text(text)
    store = registry.from_conf(load_config([str(conf_path)])).get(name)
    assert store.access_lists and store.admin_tenants == ("adm1", "adm2")
