"""GET /v2/openapi.json: valid OpenAPI 3.1, every route described, bodies from the
schemas that validate requests."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Route

from glimpse.api import metadef_schemas, openapi, schemas
from glimpse.api.app import create_app
from glimpse.services import runtime as runtime_mod
from tests.conftest import make_conf

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _document(client) -> dict:  # noqa: ANN001
    r = client.get("/v2/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


@SQLITE
def test_the_document_is_valid_openapi_3_1(client):
    doc = _document(client)
    assert doc["openapi"].startswith("3.1.")
    validate_spec(doc)  # raises on any violation of the OpenAPI 3.1 schema


@SQLITE
def test_every_route_of_the_app_is_described(app_factory):
    client = app_factory(**{"metrics.enabled": True})  # /metrics on the API port too
    doc = _document(client)
    app_routes = [r for r in client.app.routes if isinstance(r, Route)]
    assert len(app_routes) > 60
    for method, path in openapi.route_operations(app_routes):
        operation = doc["paths"].get(path, {}).get(method.lower())
        assert operation is not None, f"{method} {path} missing from the document"
        assert not operation.get("x-undescribed"), f"{method} {path} has no OPERATIONS entry"
        # Every operation says how it answers (DELETE /v2/tasks/{id} only ever with 405).
        assert set(operation["responses"]) - {"401", "403"}, (method, path)
    # Version discovery is answered in front of the router: described all the same.
    assert "get" in doc["paths"]["/"] and "get" in doc["paths"]["/versions"]
    # Nothing described that the application does not serve.
    served = {*openapi.route_operations(app_routes), *openapi.MIDDLEWARE_PATHS}
    assert set(openapi.OPERATIONS) == served


def test_a_new_route_without_a_description_is_caught(tmp_path):
    async def endpoint(request):  # noqa: ANN001, ANN202
        raise AssertionError("never called")

    conf = make_conf(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite'}")
    routes = [
        Route("/v2/images", endpoint, methods=["GET"]),
        Route("/v2/brand-new/{thing}", endpoint, methods=["POST"]),
    ]
    doc = openapi.build(conf, routes)
    assert doc["paths"]["/v2/brand-new/{thing}"]["post"]["x-undescribed"] is True
    assert "x-undescribed" not in doc["paths"]["/v2/images"]["get"]
    validate_spec(doc)


@SQLITE
def test_bodies_are_the_validating_schemas(client):
    doc = _document(client)
    components = doc["components"]["schemas"]
    conf = client.app.state.runtime.conf
    image = schemas.image_schema(
        conf.image_format.disk_formats, conf.image_format.container_formats
    )
    assert components["image"]["properties"] == image["properties"]
    assert components["image"]["additionalProperties"] == image["additionalProperties"]
    create = doc["paths"]["/v2/images"]["post"]["requestBody"]["content"]
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/image_create"}
    # A disk format the operator adds appears in the document as in /v2/schemas/image.
    assert "vhd" in components["image"]["properties"]["disk_format"]["enum"]
    served = client.get("/v2/schemas/metadefs/namespace").json()
    assert (
        components["metadef_namespace"]["properties"]["namespace"]
        == served["properties"]["namespace"]
    )
    # The metadef definitions moved into components, refs pointing there.
    prop = components["metadef_namespace"]["properties"]["properties"]
    assert prop == {"$ref": "#/components/schemas/metadef_def_property"}
    assert set(metadef_schemas.get("metadefs/object")["definitions"]) <= {
        name.removeprefix("metadef_def_") for name in components
    }
    task_body = doc["paths"]["/v2/tasks"]["post"]["requestBody"]["content"]
    assert task_body["application/json"]["schema"] == {"$ref": "#/components/schemas/task_create"}
    assert components["task_create"]["additionalProperties"] is False
    patch = doc["paths"]["/v2/images/{image_id}"]["patch"]["requestBody"]["content"]
    assert set(patch) == set(openapi.PATCH_MEDIA_TYPES)


def test_the_disk_formats_follow_the_configuration(tmp_path):
    conf = make_conf(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.sqlite'}",
        **{"image_format.disk_formats": ["raw", "qcow2"]},
    )
    rt = runtime_mod.build(conf, migrate=True)
    doc = openapi.build(conf, create_app(conf, rt).routes)
    assert doc["components"]["schemas"]["image"]["properties"]["disk_format"]["enum"] == [
        None,
        "raw",
        "qcow2",
    ]
    rt.close()
