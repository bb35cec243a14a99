"""python-glanceclient's md-* commands, unchanged, against a live server
(noauth: the client acts as an admin). Runs on SQLite only, like tests/clients."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.clients.conftest import GlanceCLI, find_program
from tests.conftest import LiveServer, start_server

pytestmark = pytest.mark.clients

NS = "/v2/metadefs/namespaces"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("md-cli")
    live = start_server(root, f"sqlite:///{root / 'glimpse.sqlite'}")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def glance(server: LiveServer) -> GlanceCLI:
    return GlanceCLI(find_program("glance"), server.url)


def test_namespace_commands(glance, api):
    created = glance.props("md-namespace-create", "OS::CLI::Ns", "--display-name", "CLI",
                           "--description", "from glance", "--visibility", "public",
                           "--protected", "True")
    assert created["namespace"] == "OS::CLI::Ns" and created["protected"] == "True"
    assert api.get(f"{NS}/OS::CLI::Ns").json()["description"] == "from glance"
    names = [r["namespace"] for r in glance.rows("md-namespace-list")]
    assert "OS::CLI::Ns" in names
    assert glance.props("md-namespace-show", "OS::CLI::Ns")["display_name"] == "CLI"
    assert "403" in glance.error("md-namespace-delete", "OS::CLI::Ns")   # protected
    assert api.get(f"{NS}/OS::CLI::Ns").status_code == 200
    updated = glance.props("md-namespace-update", "OS::CLI::Ns", "--description", "new",
                           "--protected", "False")
    assert updated["description"] == "new"
    assert api.get(f"{NS}/OS::CLI::Ns").json()["protected"] is False
    glance.run("md-namespace-delete", "OS::CLI::Ns")
    assert api.get(f"{NS}/OS::CLI::Ns").status_code == 404


def test_object_property_tag_and_resource_type_commands(glance, api):
    glance.run("md-namespace-create", "OS::CLI::Contents", "--visibility", "public")
    base = f"{NS}/OS::CLI::Contents"

    schema = json.dumps({"description": "limits",
                         "properties": {"quota": {"title": "Quota", "type": "integer"}}})
    glance.run("md-object-create", "OS::CLI::Contents", "--name", "Limits", "--schema", schema)
    assert [r["name"] for r in glance.rows("md-object-list", "OS::CLI::Contents")] == \
        ["Limits"]
    assert api.get(f"{base}/objects/Limits").json()["properties"]["quota"]["type"] == \
        "integer"

    glance.run("md-property-create", "OS::CLI::Contents", "--name", "os_distro",
               "--title", "OS", "--type", "string", "--schema", json.dumps({"type": "string",
                                                         "enum": ["ubuntu", "fedora"]}))
    rows = glance.rows("md-property-list", "OS::CLI::Contents")
    assert [r["name"] for r in rows] == ["os_distro"]
    assert api.get(f"{base}/properties/os_distro").json()["enum"] == ["ubuntu", "fedora"]

    glance.run("md-resource-type-associate", "OS::CLI::Contents", "--name",
               "OS::Glance::Image", "--prefix", "img_")
    assert "OS::Glance::Image" in {r["name"] for r in glance.rows("md-resource-type-list")}
    rows = glance.rows("md-namespace-resource-type-list", "OS::CLI::Contents")
    assert [r["name"] for r in rows] == ["OS::Glance::Image"]

    glance.run("md-tag-create", "OS::CLI::Contents", "--name", "one")
    assert [r["name"] for r in glance.rows("md-tag-list", "OS::CLI::Contents")] == ["one"]
    # Without --append the bulk create replaces every tag. (glanceclient's own
    # --append sends a boolean header value and fails before any request.)
    glance.run("md-tag-create-multiple", "OS::CLI::Contents", "--names", "a,b,c")
    assert sorted(r["name"] for r in glance.rows("md-tag-list", "OS::CLI::Contents")) == \
        ["a", "b", "c"]
    glance.run("md-tag-update", "OS::CLI::Contents", "c", "--name", "uno")
    assert sorted(t["name"] for t in api.get(f"{base}/tags").json()["tags"]) == \
        ["a", "b", "uno"]

    glance.run("md-tag-delete", "OS::CLI::Contents", "uno")
    glance.run("md-property-delete", "OS::CLI::Contents", "os_distro")
    glance.run("md-object-delete", "OS::CLI::Contents", "Limits")
    glance.run("md-resource-type-deassociate", "OS::CLI::Contents", "OS::Glance::Image")
    doc = api.get(base).json()
    assert [t["name"] for t in doc["tags"]] == ["a", "b"]
    assert not {"properties", "objects", "resource_type_associations"} & set(doc)
    glance.run("md-namespace-delete", "OS::CLI::Contents")
