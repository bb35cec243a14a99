"""Error responses, request ids, methods, odd ids, versions and schemas documents."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.testclient import TestClient

from tests.conftest import as_project

REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
V21 = "application/openstack-images-v2.1-json-patch"
OWNER = as_project("p-owner")


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v2/images", json=body, headers=OWNER)
    assert r.status_code == 201, r.text
    return r.json()


def assert_json_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert REQUEST_ID.match(r.headers["x-openstack-request-id"])
    body = r.json()
    assert set(body) == {"code", "title", "message"}
    assert body["code"] == f"{status} {body['title']}"
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_errors_are_json_documents_with_a_request_id(client, app_factory):
    image = create(client, name="e", protected=True)
    url = f"/v2/images/{image['id']}"
    patch_headers = {**OWNER, "Content-Type": V21}
    errors = [
        (client.get(f"/v2/images/{uuid.uuid4()}", headers=OWNER), 404),
        (client.get("/v2/nothing/here"), 404),
        (client.get("/nothing"), 404),
        (client.get("/v2/images/x/y/z/w"), 404),
        (client.put("/v2/images"), 405),
        (client.post("/v2/images", content=b"{", headers=OWNER), 400),
        (client.post("/v2/images", json={"status": "active"}, headers=OWNER), 403),
        (client.delete(url, headers=OWNER), 403),
        (client.post("/v2/images", json={"id": image["id"]}, headers=OWNER), 409),
        (client.patch(url, json=[], headers=OWNER), 415),
        (client.patch(url, json=[{"op": "remove", "path": "/nope"}], headers=patch_headers),
         409),
        (app_factory(image_tag_quota=0).put(f"{url}/tags/t", headers=OWNER), 413),
    ]
    titles = {400: "Bad Request", 403: "Forbidden", 404: "Not Found",
              405: "Method Not Allowed", 409: "Conflict", 413: "Request Entity Too Large",
              415: "Unsupported Media Type"}
    for response, status in errors:
        body = assert_json_error(response, status)
        assert body["title"] == titles[status]


def test_error_body_follows_accept(client):
    """WebOb's negotiation: JSON when asked for, an HTML page for */* (python-requests'
    default, which glanceclient and openstacksdk strip to the message), else text."""
    image = create(client, name="e")
    url = f"/v2/images/{image['id']}"
    patch_headers = {**OWNER, "Content-Type": V21}
    bad = [{"op": "remove", "path": "/<b>"}]
    message = "Property &lt;b&gt; does not exist."
    for accept in ("*/*", "text/html", "text/html,application/xhtml+xml;q=0.9", "text/*"):
        r = client.patch(url, json=bad, headers={**patch_headers, "Accept": accept})
        assert r.status_code == 409
        assert r.headers["content-type"].startswith("text/html")
        assert REQUEST_ID.match(r.headers["x-openstack-request-id"])
        assert "<title>409 Conflict</title>" in r.text and "<h1>409 Conflict</h1>" in r.text
        assert message in r.text and "<b>" not in r.text
    for accept in ("", "text/plain", "application/xml"):
        r = client.patch(url, json=bad, headers={**patch_headers, "Accept": accept})
        assert r.status_code == 409
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text.startswith("409 Conflict\n\nProperty <b> does not exist.")
    for accept in ("application/json", "application/json, */*", "*/*;q=0.1, application/json"):
        r = client.patch(url, json=bad, headers={**patch_headers, "Accept": accept})
        assert r.json()["message"] == "Property <b> does not exist."
    # Routing errors (unknown path, wrong method) negotiate the same way.
    r = client.get("/v2/unknown", headers={"Accept": "*/*"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    r = client.put("/v2/images", headers={"Accept": ""})
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/plain")
    assert r.headers["allow"] == "GET, POST"


def test_successful_responses_carry_a_request_id(client):
    image = create(client)
    # (Version discovery carries none, as Glance: tests/api/test_fidelity.py.)
    responses = [
        client.get("/v2", headers=OWNER),
        client.get(f"/v2/images/{image['id']}", headers=OWNER),
        client.get("/v2/images", headers=OWNER),
        client.put(f"/v2/images/{image['id']}/tags/t", headers=OWNER),
        client.delete(f"/v2/images/{image['id']}", headers=OWNER),
    ]
    ids = [r.headers["x-openstack-request-id"] for r in responses]
    assert all(REQUEST_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_wrong_methods_are_405_with_allow(client):
    image_id = create(client)["id"]
    cases = [
        ("PUT", "/v2/images", "GET, POST"),
        ("DELETE", "/v2/images", "GET, POST"),
        ("POST", f"/v2/images/{image_id}", "GET, PATCH, DELETE"),
        ("PUT", f"/v2/images/{image_id}", "GET, PATCH, DELETE"),
        ("POST", f"/v2/images/{image_id}/file", "GET, PUT"),
        ("GET", f"/v2/images/{image_id}/actions/deactivate", "POST"),
        ("GET", f"/v2/images/{image_id}/tags/t", "PUT, DELETE"),
        ("PATCH", f"/v2/images/{image_id}/members", "GET, POST"),
        ("POST", f"/v2/images/{image_id}/members/p-x", "GET, PUT, DELETE"),
        ("DELETE", "/v2/schemas/image", "GET"),
    ]
    for method, path, allow in cases:
        r = client.request(method, path, headers=OWNER)
        assert_json_error(r, 405)
        assert r.headers["allow"] == allow, (method, path)
    # The method is refused whether or not the image exists.
    assert client.put(f"/v2/images/{uuid.uuid4()}", headers=OWNER).status_code == 405


def test_malformed_json_bodies_are_400(client):
    image_id = create(client)["id"]
    bodies = [b"{", b"[1,", b"nul", b"\xff\xfe\x00", b"{'single': 'quotes'}", b""]
    for raw in bodies:
        body = assert_json_error(client.post("/v2/images", content=raw, headers=OWNER), 400)
        assert body["message"] == ("Malformed JSON in request body." if raw
                                   else "Body expected in request.")
        assert_json_error(client.patch(f"/v2/images/{image_id}", content=raw,
                                       headers={**OWNER, "Content-Type": V21}), 400)
        assert_json_error(client.post(f"/v2/images/{image_id}/members", content=raw,
                                      headers=OWNER), 400)
        assert_json_error(client.put(f"/v2/images/{image_id}/members/p-x", content=raw,
                                     headers=OWNER), 400)
    # Glance does not look at the Content-Type of a JSON body.
    r = client.post("/v2/images", content=b'{"name": "plain"}',
                    headers={**OWNER, "Content-Type": "text/plain"})
    assert r.status_code == 201 and r.json()["name"] == "plain"
    names = [i["name"] for i in client.get("/v2/images", headers=OWNER).json()["images"]]
    assert sorted(names, key=str) == sorted([None, "plain"], key=str)


def test_unknown_or_odd_image_ids_are_404(client):
    image_id = create(client)["id"]
    odd_ids = [
        str(uuid.uuid4()), "nope", "x" * 300, "a%00b", "%E2%98%83",
        "%27%3B%20DROP%20TABLE%20images%3B--", image_id.upper(), image_id + "%20",
    ]
    for odd in odd_ids:
        base = f"/v2/images/{odd}"
        requests = [
            client.get(base, headers=OWNER),
            client.patch(base, json=[{"op": "add", "path": "/a", "value": "b"}],
                         headers={**OWNER, "Content-Type": V21}),
            client.delete(base, headers=OWNER),
            client.put(f"{base}/tags/t", headers=OWNER),
            client.delete(f"{base}/tags/t", headers=OWNER),
            client.post(f"{base}/actions/deactivate", headers=OWNER),
            client.post(f"{base}/actions/reactivate", headers=OWNER),
            client.get(f"{base}/members", headers=OWNER),
            client.post(f"{base}/members", json={"member": "p-x"}, headers=OWNER),
            client.get(f"{base}/members/p-x", headers=OWNER),
            client.get(f"{base}/file", headers=OWNER),
            client.get(base),  # as the admin
        ]
        for r in requests:
            assert_json_error(r, 404)
    # Odd member ids and tags on a real image are 404 as well.
    assert add_shared_member(client, image_id).status_code == 200
    for odd in ("%00", "x" * 300, "%E2%98%83", "P-X"):
        assert_json_error(client.get(f"/v2/images/{image_id}/members/{odd}", headers=OWNER),
                          404)
        assert_json_error(client.delete(f"/v2/images/{image_id}/members/{odd}",
                                        headers=OWNER), 404)
        assert_json_error(client.delete(f"/v2/images/{image_id}/tags/{odd}", headers=OWNER),
                          404)


def add_shared_member(client: TestClient, image_id: str) -> Any:
    return client.post(f"/v2/images/{image_id}/members", json={"member": "p-x"},
                       headers=OWNER)


def test_versions_documents(client):
    multiple = client.get("/")
    assert multiple.status_code == 300
    assert multiple.headers["content-type"].startswith("application/json")
    ok = client.get("/versions")
    assert ok.status_code == 200
    assert ok.json() == multiple.json()
    versions = ok.json()["versions"]
    assert [v["status"] for v in versions].count("CURRENT") == 1
    ids = {v["id"] for v in versions}
    assert {"v2.0", "v2.1", "v2.2", "v2.3", "v2.4", "v2.5", "v2.6", "v2.7"} <= ids
    for version in versions:
        assert set(version) == {"id", "status", "links"}
        assert version["status"] in ("CURRENT", "SUPPORTED")
        assert version["links"] == [{"rel": "self", "href": "http://testserver/v2/"}]


def test_schemas_are_served(client):
    for name in ("image", "images", "member", "members", "task", "tasks"):
        r = client.get(f"/v2/schemas/{name}", headers=OWNER)
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith("application/json")
        doc = r.json()
        assert doc["name"] == name and isinstance(doc["properties"], dict)
    assert set(client.get("/v2/schemas/image").json()["properties"]) >= {
        "id", "name", "status", "visibility", "tags", "locations", "os_hidden"}
    assert client.get("/v2/schemas/members").json()["properties"]["members"]["items"][
        "name"] == "member"
    assert_json_error(client.get("/v2/schemas/nope"), 404)
    assert_json_error(client.get("/v2/schemas/image/extra"), 404)
