"""Metadef namespaces: CRUD, listing, visibility, protection, policy."""

from __future__ import annotations

from tests.conftest import as_project

NS = "/v2/metadefs/namespaces"
ADMIN_A = as_project("p-a", roles="admin,member,reader")
MEMBER_A = as_project("p-a")
MEMBER_B = as_project("p-b")


def _create(client, name, headers=None, **fields):
    r = client.post(NS, json={"namespace": name, **fields}, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()


def test_create_show_update_delete(client):
    doc = _create(client, "OS::Test::One", headers=ADMIN_A, display_name="One",
                  description="first", visibility="public")
    assert doc["namespace"] == "OS::Test::One"
    assert doc["owner"] == "p-a" and doc["visibility"] == "public"
    assert doc["protected"] is False
    assert doc["self"] == f"{NS}/OS::Test::One"
    assert doc["schema"] == "/v2/schemas/metadefs/namespace"
    assert doc["created_at"].endswith("Z") and doc["updated_at"].endswith("Z")

    shown = client.get(f"{NS}/OS::Test::One").json()
    assert shown["display_name"] == "One" and shown["description"] == "first"
    assert "objects" not in shown and "properties" not in shown

    r = client.put(f"{NS}/OS::Test::One", json={"namespace": "OS::Test::Renamed",
                                                  "description": "changed"})
    assert r.status_code == 200
    updated = r.json()
    assert updated["namespace"] == "OS::Test::Renamed"
    assert updated["description"] == "changed"
    # PUT replaces: fields left out take their creation defaults.
    assert updated["visibility"] == "private" and "display_name" not in updated
    assert client.get(f"{NS}/OS::Test::One").status_code == 404

    assert client.delete(f"{NS}/OS::Test::Renamed").status_code == 204
    assert client.get(f"{NS}/OS::Test::Renamed").status_code == 404
    assert client.delete(f"{NS}/OS::Test::Renamed").status_code == 404


def test_duplicate_name_is_409(client):
    _create(client, "dup")
    assert client.post(NS, json={"namespace": "dup"}).status_code == 409
    _create(client, "other")
    assert client.put(f"{NS}/other", json={"namespace": "dup"}).status_code == 409


def test_invalid_bodies_are_400(client):
    assert client.post(NS, json={"display_name": "no name"}).status_code == 400
    assert client.post(NS, json={"namespace": "x", "visibility": "shared"}).status_code == 400
    assert client.post(NS, json={"namespace": "x", "bogus": 1}).status_code == 400
    assert client.post(NS, json={"namespace": "x" * 81}).status_code == 400
    assert client.post(NS, json={"namespace": "x", "protected": "yes"}).status_code == 400
    r = client.post(NS, json={"namespace": "x", "properties": {
        "p": {"title": "P", "type": "text"}}})
    assert r.status_code == 400
    assert client.get(f"{NS}/x").status_code == 404


def test_protected_namespace_cannot_be_deleted(client):
    _create(client, "guarded", protected=True, tags=[{"name": "t"}])
    r = client.delete(f"{NS}/guarded")
    assert r.status_code == 403
    assert client.delete(f"{NS}/guarded/tags").status_code == 403
    assert [t["name"] for t in client.get(f"{NS}/guarded/tags").json()["tags"]] == ["t"]
    r = client.put(f"{NS}/guarded", json={"namespace": "guarded", "protected": False})
    assert r.status_code == 200 and r.json()["protected"] is False
    assert client.delete(f"{NS}/guarded").status_code == 204


def test_create_with_contents_and_show_them(client):
    body = {
        "namespace": "full", "visibility": "public",
        "resource_type_associations": [{"name": "OS::Nova::Flavor", "prefix": "hw:"}],
        "properties": {"cpu_policy": {"title": "CPU", "type": "string",
                                      "enum": ["shared", "dedicated"]}},
        "objects": [{"name": "obj", "properties": {"a": {"title": "A", "type": "integer"}}}],
        "tags": [{"name": "t1"}, {"name": "t2"}],
    }
    r = client.post(NS, json=body)
    assert r.status_code == 201
    doc = r.json()
    assert doc["properties"]["cpu_policy"]["enum"] == ["shared", "dedicated"]
    shown = client.get(f"{NS}/full").json()
    assert shown["resource_type_associations"][0]["name"] == "OS::Nova::Flavor"
    assert shown["resource_type_associations"][0]["prefix"] == "hw:"
    assert list(shown["properties"]) == ["cpu_policy"]
    assert shown["objects"][0]["name"] == "obj"
    assert shown["objects"][0]["properties"]["a"]["type"] == "integer"
    assert sorted(t["name"] for t in shown["tags"]) == ["t1", "t2"]
    prefixed = client.get(f"{NS}/full", params={"resource_type": "OS::Nova::Flavor"}).json()
    assert list(prefixed["properties"]) == ["hw:cpu_policy"]
    # Deleting each kind of content empties it.
    for kind in ("objects", "properties", "tags"):
        assert client.delete(f"{NS}/full/{kind}").status_code == 204
    emptied = client.get(f"{NS}/full").json()
    assert not {"objects", "properties", "tags"} & set(emptied)
    assert "resource_type_associations" in emptied


def test_list_paginates_sorts_and_filters(client):
    for i in range(5):
        _create(client, f"ns{i}", visibility="public" if i % 2 else "private")
    r = client.get(NS, params={"limit": 2, "sort_key": "namespace", "sort_dir": "asc"})
    assert r.status_code == 200
    page = r.json()
    assert [n["namespace"] for n in page["namespaces"]] == ["ns0", "ns1"]
    assert page["schema"] == "/v2/schemas/metadefs/namespaces"
    assert page["first"].startswith(NS)
    seen = [n["namespace"] for n in page["namespaces"]]
    while "next" in page:
        page = client.get(page["next"]).json()
        seen += [n["namespace"] for n in page["namespaces"]]
    assert seen == [f"ns{i}" for i in range(5)]
    default = [n["namespace"] for n in client.get(NS).json()["namespaces"]]
    assert default == [f"ns{i}" for i in reversed(range(5))]  # created_at desc
    public = client.get(NS, params={"visibility": "public"}).json()["namespaces"]
    assert sorted(n["namespace"] for n in public) == ["ns1", "ns3"]
    assert client.get(NS, params={"sort_dir": "up"}).status_code == 400
    assert client.get(NS, params={"sort_key": "nope"}).status_code == 400
    assert client.get(NS, params={"limit": "-1"}).status_code == 400
    assert client.get(NS, params={"visibility": "shared"}).status_code == 400


def test_list_filters_by_resource_type(client):
    _create(client, "img", resource_type_associations=[{"name": "OS::Glance::Image"}])
    _create(client, "vol", resource_type_associations=[{"name": "OS::Cinder::Volume"}])
    _create(client, "none")
    listed = client.get(NS, params={"resource_types": "OS::Glance::Image"}).json()
    assert [n["namespace"] for n in listed["namespaces"]] == ["img"]
    assert listed["namespaces"][0]["resource_type_associations"][0]["name"] == \
        "OS::Glance::Image"
    both = client.get(NS, params={"resource_types": "OS::Glance::Image,OS::Cinder::Volume"})
    assert sorted(n["namespace"] for n in both.json()["namespaces"]) == ["img", "vol"]


def test_private_namespaces_of_other_projects_never_leak(client):
    _create(client, "a-private", owner="p-a", visibility="private")
    _create(client, "a-public", owner="p-a", visibility="public")
    _create(client, "b-private", owner="p-b", visibility="private")
    listed = client.get(NS, headers=MEMBER_A).json()["namespaces"]
    assert sorted(n["namespace"] for n in listed) == ["a-private", "a-public"]
    assert client.get(f"{NS}/b-private", headers=MEMBER_A).status_code == 404
    assert client.get(f"{NS}/a-public", headers=MEMBER_B).status_code == 200
    # Writes: 404 when hidden, 403 (admin-only by default) when visible.
    for method, url in (("PUT", f"{NS}/b-private"), ("DELETE", f"{NS}/b-private")):
        r = client.request(method, url, json={"namespace": "b-private"}, headers=MEMBER_A)
        assert r.status_code == 404, (method, url)
    r = client.put(f"{NS}/a-public", json={"namespace": "a-public"}, headers=MEMBER_B)
    assert r.status_code == 403
    assert client.delete(f"{NS}/a-private", headers=MEMBER_A).status_code == 403
    assert client.post(NS, json={"namespace": "new"}, headers=MEMBER_A).status_code == 403
    # A marker the caller cannot see is not found.
    assert client.get(NS, params={"marker": "b-private"}, headers=MEMBER_A).status_code == 404


def test_admin_of_any_project_sees_everything(client):
    _create(client, "b-private", owner="p-b", visibility="private")
    listed = client.get(NS, headers=ADMIN_A).json()["namespaces"]
    assert [n["namespace"] for n in listed] == ["b-private"]
    assert client.get(f"{NS}/b-private", headers=ADMIN_A).status_code == 200


def test_policy_override_opens_writes_to_all(open_client):
    c = open_client
    r = c.post(NS, json={"namespace": "mine", "visibility": "private"}, headers=MEMBER_A)
    assert r.status_code == 201 and r.json()["owner"] == "p-a"
    assert c.post(f"{NS}/mine/objects", json={"name": "o"}, headers=MEMBER_A).status_code == 201
    r = c.post(f"{NS}/mine/properties", json={"name": "p", "title": "P", "type": "string"},
               headers=MEMBER_A)
    assert r.status_code == 201
    assert c.post(f"{NS}/mine/tags/t", headers=MEMBER_A).status_code == 201
    # Still invisible to another project, even with every rule open.
    assert c.get(f"{NS}/mine", headers=MEMBER_B).status_code == 404
    assert c.delete(f"{NS}/mine", headers=MEMBER_B).status_code == 404
    assert c.get(NS, headers=MEMBER_B).json()["namespaces"] == []
    assert c.delete(f"{NS}/mine", headers=MEMBER_A).status_code == 204


def test_schemas_are_served(client):
    names = {"namespace": "namespace", "namespaces": "namespaces", "object": "object",
             "objects": "objects", "property": "property", "properties": "properties",
             "resource_type": "resource_type_association",
             "resource_types": "resource_type_associations", "tag": "tag", "tags": "tags"}
    for path, name in names.items():
        r = client.get(f"/v2/schemas/metadefs/{path}")
        assert r.status_code == 200 and r.json()["name"] == name
    assert client.get("/v2/schemas/metadefs/nothing").status_code == 404


def test_read_only_attributes_are_403_and_location_is_set(client):
    for key in ("self", "schema", "created_at", "updated_at"):
        r = client.post(NS, json={"namespace": "ro", key: "x"})
        assert r.status_code == 403 and key in r.json()["message"], key
    r = client.post(NS, json={"namespace": "ro"})
    assert r.headers["location"].endswith(f"{NS}/ro")
    r = client.post(f"{NS}/ro/objects", json={"name": "o", "self": "x"})
    assert r.status_code == 403
    r = client.post(f"{NS}/ro/properties", json={"name": "p", "title": "P", "type": "string",
                                                 "created_at": "x"})
    assert r.status_code == 403


def test_show_lists_objects_with_links_and_tags_by_name(client):
    client.post(NS, json={"namespace": "links", "objects": [{"name": "o"}],
                          "tags": [{"name": "t"}]})
    doc = client.get(f"{NS}/links").json()
    assert doc["objects"][0]["self"] == f"{NS}/links/objects/o"
    assert doc["objects"][0]["schema"] == "/v2/schemas/metadefs/object"
    assert doc["tags"] == [{"name": "t"}]


def test_show_and_empty_tags_check_their_extra_rules(policy_client):
    c = policy_client('"get_metadef_tags": "!"\n"delete_metadef_tags": "!"\n')
    c.post(NS, json={"namespace": "rules", "visibility": "public", "tags": [{"name": "t"}]})
    # Showing a namespace shows its tags, so it needs get_metadef_tags too.
    assert c.get(f"{NS}/rules").status_code == 403
    assert c.get(f"{NS}/rules/tags").status_code == 403
    # Emptying the tags needs delete_metadef_tags besides delete_metadef_namespace.
    assert c.delete(f"{NS}/rules/tags").status_code == 403
    assert c.delete(f"{NS}/rules").status_code == 204


def test_listing_leaves_out_namespaces_the_show_rule_refuses(policy_client):
    c = policy_client('"get_metadef_namespace": "\'public\':%(visibility)s"\n')
    c.post(NS, json={"namespace": "pub", "visibility": "public"})
    c.post(NS, json={"namespace": "priv", "visibility": "private"})
    assert [n["namespace"] for n in c.get(NS).json()["namespaces"]] == ["pub"]
    assert c.get(f"{NS}/priv").status_code == 404


def test_a_name_beyond_latin_1_is_percent_encoded_in_location(client):
    # Found by tests/api/test_openapi_fuzz.py: the raw name in the header was a 500.
    name = "Ns::\U000462d2é"
    r = client.post("/v2/metadefs/namespaces", json={"namespace": name}, headers=ADMIN_A)
    assert r.status_code == 201, r.text
    assert r.json()["namespace"] == name
    assert r.headers["location"] == "/v2/metadefs/namespaces/Ns::%F1%86%8B%92%C3%A9"
    shown = client.get(r.headers["location"], headers=ADMIN_A)
    assert shown.status_code == 200 and shown.json()["namespace"] == name


def test_contents_without_names_are_400(client):
    # Found by tests/api/test_openapi_fuzz.py: an object without a name was a 500.
    for key in ("objects", "tags", "resource_type_associations"):
        r = client.post("/v2/metadefs/namespaces", headers=ADMIN_A,
                        json={"namespace": f"nameless-{key}", key: [{"description": "d"}]})
        assert r.status_code == 400, (key, r.text)
        assert key in r.json()["message"]
        assert client.get(f"/v2/metadefs/namespaces/nameless-{key}",
                          headers=ADMIN_A).status_code == 404
