"""CADF audit events (keystonemiddleware.audit's audit.http.request and
audit.http.response) for every API request, read back from the real broker."""

from __future__ import annotations

import json

import pytest

from glimpse.notify import audit
from tests.conftest import as_project
from tests.notify.conftest import notify_config

OWNER = {**as_project("proj-audit", user="user-audit"), "X-Auth-Token": "secret-token-4711"}
AUDIT = "[audit_middleware_notifications]\nenabled = true\nignore_path_list = /versions\n"


def test_every_request_is_audited(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic, extra=AUDIT))
    r = client.post("/v2/images", headers=OWNER, json={"name": "a", "pw": "hunter2-secret"})
    image_id = r.json()["id"]
    assert client.get("/v2/images", headers=OWNER).status_code == 200
    assert client.get(f"/v2/images/{image_id}", headers=OWNER).status_code == 200
    assert client.get("/v2/images/00000000-0000-0000-0000-000000000000",
                      headers=OWNER).status_code == 404
    assert client.get("/versions").status_code == 200  # ignored path
    assert client.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 204
    client.app.state.runtime.notifier.flush()
    consumer.wait_for(lambda m: len([x for x in m if x["event_type"].startswith("audit")]) >= 10)
    consumer.settle()
    events = [m for m in consumer.messages if m["event_type"].startswith("audit.")]
    assert [m["event_type"] for m in events] == ["audit.http.request",
                                                 "audit.http.response"] * 5
    responses = [m["payload"] for m in events if m["event_type"] == "audit.http.response"]
    assert [(p["action"], p["outcome"], p["reason"]["reasonCode"]) for p in responses] == [
        ("create", "success", "201"), ("read/list", "success", "200"),
        ("read", "success", "200"), ("read", "failure", "404"),
        ("delete", "success", "204")]
    first = responses[0]
    assert first["typeURI"] == "http://schemas.dmtf.org/cloud/audit/1.0/event"
    assert first["eventType"] == "activity"
    assert first["initiator"]["id"] == "user-audit"
    assert first["initiator"]["project_id"] == "proj-audit"
    assert first["initiator"]["typeURI"] == "service/security/account/user"
    assert first["target"]["typeURI"] == "service/storage/image/images"
    assert first["requestPath"] == "/v2/images"
    assert responses[2]["target"]["typeURI"] == "service/storage/image/images/image"
    assert responses[2]["target"]["id"] == image_id
    assert first["reporterchain"][0]["role"] == "modifier"
    request = events[0]["payload"]
    assert request["outcome"] == "pending" and request["id"] == first["id"]
    everything = json.dumps(events)
    assert "secret-token-4711" not in everything and "hunter2" not in everything, everything
    assert "/versions" not in everything


def test_audit_action_rules() -> None:
    m = audit.AuditMap(path_keywords={"images": "image", "members": "member", "file": "None"},
                       custom_actions={"deactivate": "update/deactivate"},
                       service_endpoints={"image": "service/storage/image"})
    assert audit.action(m, "POST", "/v2/images") == "create"
    assert audit.action(m, "POST", "/v2/images/x/actions/deactivate") == "update/deactivate"
    assert audit.action(m, "POST", "/v2/images/x/import") == "update"
    assert audit.action(m, "GET", "/v2/images/x/members") == "read/list"
    assert audit.action(m, "PATCH", "/v2/images/x") == "update"
    assert audit.action(m, "PUT", "/v2/images/x/file") == "update"
    assert audit.target_of(m, "/v2/images/x/members/p") == (
        "service/storage/image/images/image/members/member", "p")


def test_missing_map_file_stops_the_start(notify_app, consumer) -> None:
    with pytest.raises(audit.AuditMapError):
        notify_app(notify_config(consumer.topic, extra=AUDIT
                                 + "audit_map_file = /nonexistent/map.conf\n"))
