"""An image's whole life through the API, on every database back end."""

from __future__ import annotations

import hashlib

from tests.conftest import as_project


def test_create_upload_download_delete(client, tmp_path):
    data = b"glimpse" * 100_000
    r = client.post("/v2/images", json={"name": "life", "disk_format": "raw",
                                        "container_format": "bare"})
    assert r.status_code == 201
    image = r.json()
    assert image["status"] == "queued" and image["visibility"] == "shared"
    assert r.headers["location"].endswith(f"/v2/images/{image['id']}")
    r = client.put(f"/v2/images/{image['id']}/file", content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    shown = client.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    r = client.get(f"/v2/images/{image['id']}/file")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-md5"] == shown["checksum"]
    assert client.put(f"/v2/images/{image['id']}/file", content=b"x").status_code == 409
    assert client.delete(f"/v2/images/{image['id']}").status_code == 204
    assert client.get(f"/v2/images/{image['id']}").status_code == 404
    stored = list((tmp_path / "data" / "images").iterdir())
    assert stored == []


def test_other_project_cannot_see_private_image(client):
    r = client.post("/v2/images", json={"name": "mine", "visibility": "private"},
                    headers=as_project("p-a"))
    assert r.status_code == 201
    image_id = r.json()["id"]
    assert client.get(f"/v2/images/{image_id}", headers=as_project("p-b")).status_code == 404
    assert client.get(f"/v2/images/{image_id}", headers=as_project("p-a")).status_code == 200
    listed = client.get("/v2/images", headers=as_project("p-b")).json()["images"]
    assert image_id not in [i["id"] for i in listed]


def test_error_body_follows_accept(client):
    missing = "/v2/images/00000000-0000-0000-0000-000000000000"
    r = client.get(missing, headers={"Accept": "*/*"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(("text/plain", "text/html"))
    assert "404 Not Found" in r.text and "00000000-0000-0000-0000-000000000000" in r.text
    r = client.get(missing, headers={"Accept": "application/json"})
    assert r.status_code == 404
    assert r.json()["code"] == "404 Not Found"
