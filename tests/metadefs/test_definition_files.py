"""`glimpse db load-metadefs / export-metadefs / unload-metadefs` with Glance's
definition-file format (one namespace per JSON file)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from glimpse.cli import main
from tests import tools

NS = "/v2/metadefs/namespaces"

COMPUTE = {
    "namespace": "OS::Compute::Test",
    "display_name": "Test compute",
    "description": "For the tests.",
    "visibility": "public",
    "protected": True,
    "resource_type_associations": [
        {"name": "OS::Glance::Image"},
        {"name": "OS::Nova::Flavor", "prefix": "hw:"},
    ],
    "properties": {
        "cpu_policy": {"title": "CPU Policy", "description": "Pinning.", "type": "string",
                       "enum": ["shared", "dedicated"], "default": "shared"},
        "cores": {"title": "Cores", "description": "How many.", "type": "integer",
                  "minimum": 1, "maximum": 128},
    },
    "objects": [
        {"name": "Limits", "description": "Limits.", "required": [],
         "properties": {"quota": {"title": "Quota", "description": "q", "type": "integer"}}},
    ],
    "tags": [{"name": "compute"}, {"name": "test"}],
}

SOFTWARE = {
    "namespace": "OS::Software::Test",
    "display_name": "Software",
    "description": "Software.",
    "visibility": "private",
    "protected": False,
    "resource_type_associations": [{"name": "OS::Glance::Image",
                                    "properties_target": "image"}],
    "properties": {"web": {"title": "Web", "description": "w", "type": "array",
                           "items": {"type": "string", "enum": ["nginx", "httpd"]}}},
}


@pytest.fixture
def cli(tmp_path: Path, db_url: str):  # noqa: ANN201
    conf = tmp_path / "glance-api.conf"
    conf.write_text(f"[database]\nconnection = {db_url}\n")

    def run(*args: str) -> int:
        return main(["db", *args, "--config-file", str(conf),
                     "--data-dir", str(tmp_path / "data")])
    return run


def _write(directory: Path, *docs: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (directory / (doc["namespace"].replace("::", "-") + ".json")).write_text(
            json.dumps(doc))
    return directory


def _normal(doc: dict[str, Any]) -> dict[str, Any]:
    """A definition as the files mean it: empty collections and a missing
    visibility (private) or protected (false) are the same as absent."""
    out = {k: v for k, v in doc.items() if v not in ([], {}, None)}
    out.setdefault("visibility", "private")
    out.setdefault("protected", False)
    if "objects" in out:
        out["objects"] = [{k: v for k, v in o.items() if v not in ([], {}, None)}
                          for o in out["objects"]]
    return out


def _exported(directory: Path) -> dict[str, dict[str, Any]]:
    docs = {}
    for name in os.listdir(directory):
        doc = json.loads((directory / name).read_text())
        docs[doc["namespace"]] = doc
    return docs


def test_load_export_round_trip(cli, client, tmp_path):
    src = _write(tmp_path / "in", COMPUTE, SOFTWARE)
    assert cli("load-metadefs", str(src)) == 0
    shown = client.get(f"{NS}/OS::Compute::Test").json()
    assert shown["protected"] is True and shown["owner"] == "admin"
    assert shown["properties"]["cores"]["maximum"] == 128
    assert [t["name"] for t in shown["tags"]] == ["compute", "test"]
    assert client.get(f"{NS}/OS::Software::Test").status_code == 200

    out = tmp_path / "out"
    assert cli("export-metadefs", str(out)) == 0
    exported = _exported(out)
    assert set(exported) == {"OS::Compute::Test", "OS::Software::Test"}
    for original in (COMPUTE, SOFTWARE):
        doc = exported[original["namespace"]]
        assert "created_at" not in json.dumps(doc) and "owner" not in doc
        assert _normal(doc) == _normal(original)


def test_load_skips_merges_prefers_new_and_overwrites(cli, client, tmp_path):
    assert cli("load-metadefs", str(_write(tmp_path / "v1", COMPUTE))) == 0
    changed = json.loads(json.dumps(COMPUTE))
    changed["description"] = "Changed."
    changed["properties"]["cores"]["title"] = "Cores (new)"
    changed["properties"] = {"cores": changed["properties"]["cores"],
                             "threads": {"title": "Threads", "type": "integer"}}
    changed["tags"] = [{"name": "extra"}]
    del changed["objects"]
    v2 = _write(tmp_path / "v2", changed)

    def props() -> dict[str, Any]:
        return client.get(f"{NS}/OS::Compute::Test/properties").json()["properties"]

    assert cli("load-metadefs", str(v2)) == 0        # exists: skipped
    assert set(props()) == {"cpu_policy", "cores"}
    assert cli("load-metadefs", str(v2), "--merge") == 0
    assert set(props()) == {"cpu_policy", "cores", "threads"}
    assert props()["cores"]["title"] == "Cores"      # database wins without --prefer-new
    assert client.get(f"{NS}/OS::Compute::Test").json()["description"] == "For the tests."
    assert cli("load-metadefs", str(v2), "--merge", "--prefer-new") == 0
    assert props()["cores"]["title"] == "Cores (new)"
    doc = client.get(f"{NS}/OS::Compute::Test").json()
    assert doc["description"] == "Changed."
    assert sorted(t["name"] for t in doc["tags"]) == ["compute", "extra", "test"]
    assert cli("load-metadefs", str(v2), "--overwrite") == 0
    assert set(props()) == {"cores", "threads"}
    doc = client.get(f"{NS}/OS::Compute::Test").json()
    assert [t["name"] for t in doc["tags"]] == ["extra"]
    assert "objects" not in doc


def test_bad_file_loads_nothing(cli, client, tmp_path):
    bad = json.loads(json.dumps(SOFTWARE))
    bad["properties"]["web"]["type"] = "text"
    src = _write(tmp_path / "bad", COMPUTE, bad)
    assert cli("load-metadefs", str(src)) == 1
    assert client.get(NS).json()["namespaces"] == []


def test_unload_removes_everything(cli, client, tmp_path):
    assert cli("load-metadefs", str(_write(tmp_path / "in", COMPUTE, SOFTWARE))) == 0
    client.post(f"{NS}/OS::Software::Test/resource_types", json={"name": "Custom::Type"})
    assert cli("unload-metadefs") == 0
    assert client.get(NS).json()["namespaces"] == []
    types = {t["name"] for t in client.get("/v2/metadefs/resource_types").json()[
        "resource_types"]}
    assert "Custom::Type" not in types


def _standard_catalogue() -> Path | None:
    """Glance's own definition files (not part of this repository): scripts/test.sh
    unpacks them from the glance wheel into .tmp/glance-metadefs
    (scripts/fetch_glance_metadefs.py); an installed glance package works too."""
    candidates = [os.environ.get("GLIMPSE_GLANCE_METADEFS", ""),
                  str(Path(__file__).resolve().parents[2] / ".tmp" / "glance-metadefs"),
                  "/usr/share/glance/metadefs", "/etc/glance/metadefs"]
    for candidate in candidates:
        if candidate and Path(candidate, "compute-cpu-pinning.json").exists():
            return Path(candidate)
    return None


def test_standard_catalogue_round_trips(cli, client, tmp_path):
    catalogue = _standard_catalogue()
    if catalogue is None:
        tools.missing("no copy of Glance's metadefs catalogue: run "
                      "scripts/fetch_glance_metadefs.py (scripts/test.sh does)")
    src = tmp_path / "catalogue"
    shutil.copytree(catalogue, src)
    originals = {}
    for name in os.listdir(src):
        if name.endswith(".json"):
            doc = json.loads((src / name).read_text())
            originals[doc["namespace"]] = doc
    assert cli("load-metadefs", str(src)) == 0
    listed = client.get(NS, params={"limit": 1000}).json()["namespaces"]
    assert len(listed) == len(originals)
    out = tmp_path / "out"
    assert cli("export-metadefs", str(out)) == 0
    exported = _exported(out)
    assert set(exported) == set(originals)
    for name, original in originals.items():
        assert _normal(exported[name]) == _normal(original), name
