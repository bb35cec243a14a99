"""A caller whom policy does not let see an image gets 404 for every operation
on it, never 403 (Glance's rule: no leak of existence)."""

from __future__ import annotations

from tests.conftest import as_project

SYSTEM_ADMIN = {"X-Identity-Status": "Confirmed", "X-User-Id": "sysadmin",
                "X-Roles": "admin,member,reader", "OpenStack-System-Scope": "all"}


def test_system_scoped_admin_cannot_see_project_images(client):
    r = client.post("/v2/images", json={"name": "p", "visibility": "private",
                                        "disk_format": "raw", "container_format": "bare"},
                    headers=as_project("p-a"))
    assert r.status_code == 201
    url = f"/v2/images/{r.json()['id']}"
    assert client.get(url, headers=SYSTEM_ADMIN).status_code == 404
    patch = client.patch(url, json=[{"op": "replace", "path": "/name", "value": "x"}],
                         headers={**SYSTEM_ADMIN, "Content-Type":
                                  "application/openstack-images-v2.1-json-patch"})
    assert patch.status_code == 404
    assert client.delete(url, headers=SYSTEM_ADMIN).status_code == 404
    assert client.post(f"{url}/actions/deactivate", headers=SYSTEM_ADMIN).status_code == 404
    assert client.get(url, headers=as_project("p-a")).json()["name"] == "p"


def test_reader_still_gets_403_on_writes_it_can_see(client):
    r = client.post("/v2/images", json={"name": "p", "visibility": "private"},
                    headers=as_project("p-a"))
    url = f"/v2/images/{r.json()['id']}"
    reader = as_project("p-a", roles="reader")
    assert client.get(url, headers=reader).status_code == 200
    assert client.delete(url, headers=reader).status_code == 403
