"""[metadef_limits]: caps on namespaces per project and contents per namespace."""

from __future__ import annotations

NS = "/v2/metadefs/namespaces"


def test_namespaces_per_project(limited_client):
    c = limited_client
    for name in ("n1", "n2"):
        assert c.post(NS, json={"namespace": name, "owner": "p-a"}).status_code == 201
    r = c.post(NS, json={"namespace": "n3", "owner": "p-a"})
    assert r.status_code == 413
    assert c.get(f"{NS}/n3").status_code == 404
    assert c.post(NS, json={"namespace": "n3", "owner": "p-b"}).status_code == 201


def test_contents_per_namespace(limited_client):
    c = limited_client
    assert c.post(NS, json={"namespace": "n", "owner": "p-a"}).status_code == 201
    assert c.post(f"{NS}/n/objects", json={"name": "o1"}).status_code == 201
    assert c.post(f"{NS}/n/objects", json={"name": "o2"}).status_code == 413
    prop = {"title": "T", "type": "string"}
    assert c.post(f"{NS}/n/properties", json={"name": "p1", **prop}).status_code == 201
    assert c.post(f"{NS}/n/properties", json={"name": "p2", **prop}).status_code == 413
    assert c.post(f"{NS}/n/tags", json={"tags": [{"name": "a"}, {"name": "b"},
                                                  {"name": "c"}]}).status_code == 413
    assert c.post(f"{NS}/n/tags", json={"tags": [{"name": "a"}, {"name": "b"}]}).status_code \
        == 201
    assert c.post(f"{NS}/n/tags/c").status_code == 413
    doc = c.get(f"{NS}/n").json()
    assert [o["name"] for o in doc["objects"]] == ["o1"]
    assert list(doc["properties"]) == ["p1"]
    assert sorted(t["name"] for t in doc["tags"]) == ["a", "b"]
    # Contents given with a new namespace count too.
    r = c.post(NS, json={"namespace": "m", "owner": "p-b",
                         "objects": [{"name": "x"}, {"name": "y"}]})
    assert r.status_code == 413
    assert c.get(f"{NS}/m").status_code == 404
