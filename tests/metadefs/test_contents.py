"""Metadef objects, properties, resource type associations and tags."""

from __future__ import annotations

import pytest

from tests.conftest import as_project

NS = "/v2/metadefs/namespaces"
MEMBER_A = as_project("p-a")
MEMBER_B = as_project("p-b")


@pytest.fixture
def ns(client):
    r = client.post(NS, json={"namespace": "OS::Test", "visibility": "public",
                              "owner": "p-a"})
    assert r.status_code == 201
    return f"{NS}/OS::Test"


def test_objects_crud(client, ns):
    body = {"name": "CPU Limits", "description": "limits", "required": ["quota"],
            "properties": {"quota": {"title": "Quota", "type": "integer", "minimum": 0}}}
    r = client.post(f"{ns}/objects", json=body)
    assert r.status_code == 201
    obj = r.json()
    assert obj["self"] == f"{ns}/objects/CPU Limits"
    assert obj["schema"] == "/v2/schemas/metadefs/object"
    assert obj["required"] == ["quota"] and obj["properties"]["quota"]["minimum"] == 0
    assert client.post(f"{ns}/objects", json=body).status_code == 409
    listed = client.get(f"{ns}/objects").json()
    assert [o["name"] for o in listed["objects"]] == ["CPU Limits"]
    assert listed["schema"] == "v2/schemas/metadefs/objects"   # sic, as Glance
    r = client.put(f"{ns}/objects/CPU Limits", json={"name": "Limits", "description": "new"})
    assert r.status_code == 200
    assert r.json()["description"] == "new" and "properties" not in r.json()
    assert client.get(f"{ns}/objects/CPU Limits").status_code == 404
    assert client.get(f"{ns}/objects/Limits").json()["description"] == "new"
    assert client.delete(f"{ns}/objects/Limits").status_code == 204
    assert client.delete(f"{ns}/objects/Limits").status_code == 404
    assert client.get(f"{ns}/objects").json()["objects"] == []


def test_object_validation(client, ns):
    assert client.post(f"{ns}/objects", json={"description": "no name"}).status_code == 400
    bad = {"name": "o", "properties": {"p": {"title": "P", "type": "string",
                                             "pattern": "(unclosed"}}}
    assert client.post(f"{ns}/objects", json=bad).status_code == 400
    assert client.post(f"{NS}/missing/objects", json={"name": "o"}).status_code == 404


def test_properties_crud(client, ns):
    body = {"name": "hypervisor_type", "title": "Hypervisor", "type": "string",
            "enum": ["kvm", "qemu"], "default": "kvm", "readonly": False,
            "description": "which one", "operators": ["<or>"]}
    r = client.post(f"{ns}/properties", json=body)
    assert r.status_code == 201
    assert r.json() == body
    assert client.post(f"{ns}/properties", json=body).status_code == 409
    listed = client.get(f"{ns}/properties").json()["properties"]
    assert listed == {"hypervisor_type": {k: v for k, v in body.items() if k != "name"}}
    assert client.get(f"{ns}/properties/hypervisor_type").json()["name"] == "hypervisor_type"
    r = client.put(f"{ns}/properties/hypervisor_type",
                   json={"name": "hypervisor_type", "title": "HV", "type": "array",
                         "items": {"type": "string", "enum": ["a", "b"]}})
    assert r.status_code == 200
    assert r.json()["items"]["enum"] == ["a", "b"] and "enum" not in r.json()
    assert client.delete(f"{ns}/properties/hypervisor_type").status_code == 204
    assert client.get(f"{ns}/properties/hypervisor_type").status_code == 404


@pytest.mark.parametrize("definition", [
    {"title": "T"},                                        # no type
    {"type": "string"},                                    # no title
    {"title": "T", "type": "text"},                        # unknown type
    {"title": "T", "type": "integer", "minimum": "low"},
    {"title": "T", "type": "integer", "minimum": 5, "maximum": 1},
    {"title": "T", "type": "string", "pattern": "[a-"},
    {"title": "T", "type": "string", "maxLength": -1},
    {"title": "T", "type": "string", "enum": "kvm"},
    {"title": "T", "type": "string", "readonly": "no"},
    {"title": "T", "type": "array", "items": {"type": "text"}},
    {"title": "T", "type": "string", "unknown_keyword": 1},
])
def test_invalid_property_definitions_are_400(client, ns, definition):
    r = client.post(f"{ns}/properties", json={"name": "p", **definition})
    assert r.status_code == 400, r.text
    assert client.get(f"{ns}/properties").json()["properties"] == {}


def test_property_prefix_by_resource_type(client, ns):
    r = client.post(f"{ns}/resource_types",
                    json={"name": "OS::Nova::Flavor", "prefix": "hw:",
                          "properties_target": "scheduler_hints"})
    assert r.status_code == 201
    assert r.json()["prefix"] == "hw:" and r.json()["properties_target"] == "scheduler_hints"
    client.post(f"{ns}/properties", json={"name": "cpu", "title": "C", "type": "string"})
    params = {"resource_type": "OS::Nova::Flavor"}
    assert list(client.get(f"{ns}/properties", params=params).json()["properties"]) == \
        ["hw:cpu"]
    r = client.get(f"{ns}/properties/hw:cpu", params=params)
    assert r.status_code == 200 and r.json()["name"] == "hw:cpu"
    assert client.get(f"{ns}/properties/cpu", params=params).status_code == 404
    # A resource type the namespace is not associated with finds nothing.
    other = {"resource_type": "OS::Cinder::Volume"}
    assert client.get(f"{ns}/properties/hw:cpu", params=other).status_code == 404


def test_resource_types_and_associations(client, ns):
    r = client.post(f"{ns}/resource_types", json={"name": "OS::Glance::Image"})
    assert r.status_code == 201 and r.json()["name"] == "OS::Glance::Image"
    assert client.post(f"{ns}/resource_types",
                       json={"name": "OS::Glance::Image"}).status_code == 409
    assert client.post(f"{ns}/resource_types", json={"prefix": "x"}).status_code == 400
    listed = client.get(f"{ns}/resource_types").json()["resource_type_associations"]
    assert [a["name"] for a in listed] == ["OS::Glance::Image"]
    types = client.get("/v2/metadefs/resource_types").json()["resource_types"]
    assert "OS::Glance::Image" in {t["name"] for t in types}
    assert client.delete(f"{ns}/resource_types/OS::Glance::Image").status_code == 204
    assert client.delete(f"{ns}/resource_types/OS::Glance::Image").status_code == 404
    assert client.get(f"{ns}/resource_types").json()["resource_type_associations"] == []
    # The resource type itself stays known.
    types = client.get("/v2/metadefs/resource_types").json()["resource_types"]
    assert "OS::Glance::Image" in {t["name"] for t in types}


def test_tags(client, ns):
    r = client.post(f"{ns}/tags/one")
    assert r.status_code == 201 and r.json()["name"] == "one"
    assert client.post(f"{ns}/tags/one").status_code == 409
    assert client.get(f"{ns}/tags/one").json()["name"] == "one"
    r = client.put(f"{ns}/tags/one", json={"name": "uno"})
    assert r.status_code == 200 and r.json()["name"] == "uno"
    assert client.get(f"{ns}/tags/one").status_code == 404
    # Bulk create replaces every tag ...
    r = client.post(f"{ns}/tags", json={"tags": [{"name": "a"}, {"name": "b"}]})
    assert r.status_code == 201 and r.json() == {"tags": [{"name": "a"}, {"name": "b"}]}
    names = lambda: sorted(t["name"] for t in client.get(f"{ns}/tags").json()["tags"])  # noqa: E731
    assert names() == ["a", "b"]
    # ... unless asked to append.
    r = client.post(f"{ns}/tags", json={"tags": [{"name": "c"}]},
                    headers={"X-Openstack-Append": "yes"})
    assert r.status_code == 201 and names() == ["a", "b", "c"]
    r = client.post(f"{ns}/tags", json={"tags": [{"name": "a"}]},
                    headers={"X-Openstack-Append": "True"})
    assert r.status_code == 409 and names() == ["a", "b", "c"]
    r = client.post(f"{ns}/tags", json={"tags": [{"name": "d"}, {"name": "d"}]})
    assert r.status_code == 409 and names() == ["a", "b", "c"]
    assert client.post(f"{ns}/tags", json={"tags": "a"}).status_code == 400
    assert client.delete(f"{ns}/tags/a").status_code == 204
    assert client.delete(f"{ns}/tags").status_code == 204
    assert names() == []


def test_contents_policy_defaults(client, ns):
    """Reads for any project when the namespace is public; writes admin-only (403)."""
    client.post(f"{ns}/objects", json={"name": "o"})
    client.post(f"{ns}/properties", json={"name": "p", "title": "P", "type": "string"})
    client.post(f"{ns}/tags/t")
    client.post(f"{ns}/resource_types", json={"name": "OS::Glance::Image"})
    for url in ("objects", "objects/o", "properties", "properties/p", "tags", "tags/t",
                "resource_types"):
        assert client.get(f"{ns}/{url}", headers=MEMBER_B).status_code == 200, url
    assert client.get("/v2/metadefs/resource_types", headers=MEMBER_B).status_code == 200
    writes = [
        ("POST", "objects", {"name": "o2"}), ("PUT", "objects/o", {"name": "o"}),
        ("DELETE", "objects/o", None), ("DELETE", "objects", None),
        ("POST", "properties", {"name": "p2", "title": "P", "type": "string"}),
        ("PUT", "properties/p", {"name": "p", "title": "P", "type": "string"}),
        ("DELETE", "properties/p", None), ("DELETE", "properties", None),
        ("POST", "tags/t2", None), ("POST", "tags", {"tags": [{"name": "x"}]}),
        ("PUT", "tags/t", {"name": "t3"}), ("DELETE", "tags/t", None),
        ("DELETE", "tags", None),
        ("POST", "resource_types", {"name": "OS::Nova::Flavor"}),
        ("DELETE", "resource_types/OS::Glance::Image", None),
    ]
    for method, url, body in writes:
        for headers in (MEMBER_A, MEMBER_B):
            r = client.request(method, f"{ns}/{url}", json=body, headers=headers)
            assert r.status_code == 403, (method, url, r.text)


def test_contents_of_hidden_namespace_are_404(client):
    client.post(NS, json={"namespace": "secret", "visibility": "private", "owner": "p-a"})
    client.post(f"{NS}/secret/objects", json={"name": "o"})
    client.post(f"{NS}/secret/tags/t")
    for url in ("objects", "objects/o", "properties", "tags", "tags/t", "resource_types"):
        assert client.get(f"{NS}/secret/{url}", headers=MEMBER_B).status_code == 404, url
        assert client.get(f"{NS}/secret/{url}", headers=MEMBER_A).status_code != 404, url
    r = client.post(f"{NS}/secret/objects", json={"name": "o2"}, headers=MEMBER_B)
    assert r.status_code == 404
    assert client.delete(f"{NS}/secret/tags/t", headers=MEMBER_B).status_code == 404
