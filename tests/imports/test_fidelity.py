"""Places where Glimpse answers exactly as Glance 33 does (issue 10): version
discovery, request ids, HEAD, the store ids header, ``stores`` on images, the
import task message, the metadefs catalogue and namespace schema, the task schema.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from oslo_config import cfg

from glimpse.api import versions
from glimpse.cli import main
from tests.conftest import as_project
from tests.imports.conftest import (
    RAW,
    image,
    multi_store_config,
    new_image,
    stage,
    start_import,
    wait_task_done,
)

MIB = 1024 * 1024
BASE = [f"v2.{m}" for m in range(7, -1, -1)]


def ids_and_statuses(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["id"], v["status"]) for v in doc["versions"]]


# ---------------------------------------------------------------- versions


def test_versions_list_is_glances_for_one_store(make_app):
    client = make_app()
    doc = client.get("/versions").json()
    assert ids_and_statuses(doc) == [("v2.15", "SUPPORTED"), ("v2.9", "SUPPORTED"),
                                     ("v2.17", "CURRENT"),
                                     *((v, "SUPPORTED") for v in BASE)]
    assert {link["href"] for v in doc["versions"] for link in v["links"]} == {
        "http://testserver/v2/"}


def test_versions_list_is_glances_for_multi_store(make_app, tmp_path):
    client = make_app(multi_store_config(tmp_path, ["fast", "slow"]))
    assert ids_and_statuses(client.get("/versions").json()) == [
        ("v2.15", "SUPPORTED"),
        *((f"v2.{m}", "SUPPORTED") for m in (13, 12, 11, 10, 9, 8)),
        ("v2.17", "CURRENT"), *((v, "SUPPORTED") for v in BASE)]


@pytest.mark.parametrize(("cache", "backends", "first"), [
    (True, False, [("2.18", "CURRENT"), ("2.17", "SUPPORTED"), ("2.16", "SUPPORTED"),
                   ("2.15", "SUPPORTED"), ("2.14", "SUPPORTED"), ("2.9", "SUPPORTED")]),
    (True, True, [("2.18", "CURRENT"), ("2.17", "SUPPORTED"), ("2.16", "SUPPORTED"),
                  ("2.15", "SUPPORTED"), ("2.14", "SUPPORTED"), ("2.13", "SUPPORTED")]),
    (False, False, [("2.15", "SUPPORTED"), ("2.9", "SUPPORTED"), ("2.17", "CURRENT"),
                    ("2.7", "SUPPORTED"), ("2.6", "SUPPORTED"), ("2.5", "SUPPORTED")]),
])
def test_versions_list_with_image_cache_dir(cache, backends, first):
    # image_cache_dir is the cache's option (registered by the image cache); the
    # list depends on whether it is set, as in Glance.
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("image_cache_dir"), cfg.DictOpt("enabled_backends")])
    conf([])
    conf.set_override("image_cache_dir", "/var/cache/glance" if cache else None)
    conf.set_override("enabled_backends", {"a": "file"} if backends else None)
    listed = versions.version_list(conf)
    assert listed[:6] == first
    assert [s for _, s in listed].count("CURRENT") == 1
    assert listed[-8:] == [(v[1:], "SUPPORTED") for v in BASE]


def test_version_documents_carry_no_request_id(make_app):
    client = make_app()
    for method, path, status in [("GET", "/", 300), ("GET", "/versions", 200),
                                 ("POST", "/versions", 200), ("GET", "/versions/x", 200),
                                 ("GET", "/v1/images", 300), ("POST", "/v1/images", 300),
                                 ("GET", "/v1", 300), ("GET", "/v3/images", 300),
                                 ("GET", "/v2.99/images", 300),
                                 ("GET", "/v2.8/images", 300)]:  # 2.8: multi-store only
        r = client.request(method, path)
        assert r.status_code == status, (method, path, r.text)
        assert "x-openstack-request-id" not in r.headers, path
        assert ids_and_statuses(r.json())[2] == ("v2.17", "CURRENT")
    # Everything else still has one.
    assert client.get("/v2/images").headers["x-openstack-request-id"].startswith("req-")


def test_minor_version_paths_reach_v2(make_app):
    client = make_app()
    image_id = new_image(client, name="via-minor")
    for prefix in ("/v2.0", "/v2.9", "/v2.15", "/v2.17"):
        r = client.get(f"{prefix}/images/{image_id}")
        assert r.status_code == 200, prefix
        assert r.json()["name"] == "via-minor"
        assert r.headers["x-openstack-request-id"].startswith("req-")


def test_unauthenticated_401_has_no_request_id(make_app):
    client = make_app(auth_strategy="trusted-headers")
    r = client.get("/v2/images")
    assert r.status_code == 401
    assert "x-openstack-request-id" not in r.headers
    ok = client.get("/v2/images", headers=as_project("p1"))
    assert ok.status_code == 200 and "x-openstack-request-id" in ok.headers
    assert client.get("/versions").status_code == 200  # no identity needed


def test_head_is_405_with_allow(make_app):
    client = make_app()
    image_id = new_image(client)
    for path, allow in [(f"/v2/images/{image_id}", "GET, PATCH, DELETE"),
                        (f"/v2/images/{image_id}/file", "GET, PUT"),
                        ("/v2/images", "GET, POST")]:
        r = client.head(path)
        assert r.status_code == 405, path
        assert r.headers["allow"] == allow


# ---------------------------------------------------------------- stores


def test_store_ids_header_lists_reserved_stores_last(make_app, tmp_path):
    client = make_app(multi_store_config(tmp_path, ["fast", "slow"]))
    r = client.post("/v2/images", json={"name": "x"})
    assert r.headers["openstack-image-store-ids"] == (
        "fast,slow,os_glance_staging_store,os_glance_tasks_store")


def test_stores_shown_as_glance_shows_them(make_app, tmp_path):
    client = make_app(multi_store_config(tmp_path, ["fast", "slow"])
                      + "\n[DEFAULT]\nshow_image_direct_url = True\n")
    owner, other, admin = as_project("pa"), as_project("pb"), as_project("adm", "admin")
    image_id = new_image(client, headers=admin, visibility="public", name="pub", owner="pa")
    r = client.put(f"/v2/images/{image_id}/file", content=b"x" * 1000,
                   headers={**owner, "Content-Type": RAW, "X-Image-Meta-Store": "slow"})
    assert r.status_code == 204, r.text
    # Everyone who sees the image sees its stores; direct_url stays the owner's.
    assert image(client, image_id, owner)["stores"] == "slow"
    assert "direct_url" in image(client, image_id, owner)
    shown = image(client, image_id, other)
    assert shown["stores"] == "slow" and "direct_url" not in shown
    listed = client.get("/v2/images", headers=other).json()["images"]
    assert [i["stores"] for i in listed if i["id"] == image_id] == ["slow"]
    # Deactivated: no locations for anyone but an admin (Glance's database layer).
    r = client.post(f"/v2/images/{image_id}/actions/deactivate", headers=admin)
    assert r.status_code == 204, r.text
    for headers in (owner, other):
        shown = image(client, image_id, headers)
        assert shown["status"] == "deactivated"
        assert "stores" not in shown and "direct_url" not in shown
    listed = client.get("/v2/images", headers=other).json()["images"]
    assert [("stores" in i) for i in listed if i["id"] == image_id] == [False]
    assert image(client, image_id, admin)["stores"] == "slow"
    assert client.post(f"/v2/images/{image_id}/actions/reactivate",
                       headers=admin).status_code == 204
    assert image(client, image_id, other)["stores"] == "slow"


# ---------------------------------------------------------------- task message


def _task(client, image_id: str) -> dict:  # noqa: ANN001
    row = wait_task_done(client, image_id)
    assert row["status"] == "success", row["message"]
    return client.get(f"/v2/tasks/{row['id']}").json()


def test_glance_direct_task_keeps_copied_message(make_app):
    client = make_app()
    image_id = new_image(client)
    assert stage(client, image_id, b"d" * (3 * MIB + 5)).status_code == 204
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}}).status_code \
        == 202
    assert _task(client, image_id)["message"] == "Copied 3 MiB"


def test_web_download_task_keeps_copied_message(make_app, web):
    client = make_app("[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\n"
                      f"allowed_ports = [{web.port}]\n")
    uri = web.data("/disk", b"w" * (2 * MIB + 1))
    image_id = new_image(client)
    assert start_import(client, image_id, {"method": {"name": "web-download",
                                                      "uri": uri}}).status_code == 202
    assert _task(client, image_id)["message"] == "Copied 2 MiB"


def test_copy_image_task_keeps_copied_message(make_app, tmp_path):
    client = make_app(multi_store_config(tmp_path, ["fast", "slow"]))
    image_id = new_image(client)
    r = client.put(f"/v2/images/{image_id}/file", content=b"c" * (4 * MIB),
                   headers={"Content-Type": RAW})
    assert r.status_code == 204
    body = {"method": {"name": "copy-image"}, "stores": ["slow"]}
    assert start_import(client, image_id, body).status_code == 202
    assert _task(client, image_id)["message"] == "Copied 4 MiB"
    assert image(client, image_id)["stores"] == "fast,slow"


# ---------------------------------------------------------------- metadefs


def test_fresh_database_lists_no_resource_types_until_loaded(make_app, tmp_path, db_url):
    client = make_app()
    assert client.get("/v2/metadefs/resource_types").json() == {"resource_types": []}
    definitions = tmp_path / "metadefs"
    definitions.mkdir()
    (definitions / "compute.json").write_text(json.dumps({
        "namespace": "OS::Compute::Fidelity", "display_name": "Fidelity",
        "visibility": "public", "protected": True,
        "resource_type_associations": [{"name": "OS::Glance::Image"},
                                       {"name": "OS::Nova::Flavor", "prefix": "hw:"}]}))
    conf = tmp_path / "cli.conf"
    conf.write_text(f"[database]\nconnection = {db_url}\n")
    assert main(["db", "load-metadefs", str(definitions), "--config-file", str(conf),
                 "--data-dir", str(tmp_path / "data")]) == 0
    listed = client.get("/v2/metadefs/resource_types").json()["resource_types"]
    assert [t["name"] for t in listed] == ["OS::Glance::Image", "OS::Nova::Flavor"]


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items()
                if not (k == "description" and isinstance(v, str))}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def test_namespace_schema_has_glances_shape(make_app):
    doc = make_app().get("/v2/schemas/metadefs/namespace").json()
    assert set(doc) == {"name", "properties", "additionalProperties", "definitions",
                        "required"}
    assert doc["name"] == "namespace" and doc["required"] == ["namespace"]
    assert doc["additionalProperties"] is False
    props = _strip(doc["properties"])
    assert props["self"] == {"type": "string", "readOnly": True}
    assert props["schema"] == {"type": "string", "readOnly": True}
    assert props["resource_type_associations"] == {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"},
                                         "prefix": {"type": "string"},
                                         "properties_target": {"type": "string"}}}}
    assert props["namespace"] == {"type": "string", "maxLength": 80}
    assert set(props) == {"namespace", "display_name", "description", "visibility",
                          "protected", "owner", "created_at", "updated_at", "schema",
                          "self", "resource_type_associations", "properties", "objects",
                          "tags"}


def test_namespace_bodies_must_still_be_objects(make_app):
    client = make_app()
    r = client.post("/v2/metadefs/namespaces", json=["OS::Not::AnObject"])
    assert r.status_code == 400
    assert r.json()["message"] == "Expected a JSON object as the request body."


def test_task_of_the_noauth_admin_has_null_owner_in_schema(make_app):
    client = make_app()
    image_id = new_image(client)
    assert stage(client, image_id, b"t" * 100).status_code == 204
    assert start_import(client, image_id, {"method": {"name": "glance-direct"}}).status_code \
        == 202
    task = _task(client, image_id)
    assert task["owner"] is None
    owner = client.get("/v2/schemas/task").json()["properties"]["owner"]
    assert "null" in owner["type"]

