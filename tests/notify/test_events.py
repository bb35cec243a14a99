"""Every notification Glance sends, read back from the real RabbitMQ with kombu:
the sequence of event types and the payload fields, for images, members,
tasks (an import) and metadata definitions."""

from __future__ import annotations

import hashlib
import time

from tests.conftest import as_project
from tests.notify.conftest import notify_config

IMAGE_FIELDS = {
    "id", "name", "status", "created_at", "updated_at", "min_disk", "min_ram", "protected",
    "checksum", "owner", "disk_format", "container_format", "size", "virtual_size",
    "is_public", "visibility", "properties", "tags", "deleted", "deleted_at",
}
MEMBER_FIELDS = {"image_id", "member_id", "status", "created_at", "updated_at", "deleted",
                 "deleted_at"}
TASK_FIELDS = {"id", "type", "status", "result", "owner", "message", "expires_at",
               "created_at", "updated_at", "deleted", "deleted_at"}
OWNER = as_project("proj-a", roles="admin,member,reader", user="user-a")
OTHER = as_project("proj-b", user="user-b")
DATA = b"glimpse-notify-" * 700


def _iso(value: str | None) -> bool:
    return isinstance(value, str) and len(value) == 20 and value.endswith("Z")


def test_image_lifecycle_events(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic))
    r = client.post("/v2/images", headers=OWNER, json={
        "name": "cirros", "disk_format": "raw", "container_format": "bare", "hw_arch": "x86"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = client.put(f"/v2/images/{image_id}/file", headers={
        **OWNER, "Content-Type": "application/octet-stream"}, content=DATA)
    assert r.status_code == 204, r.text
    r = client.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert r.content == DATA
    r = client.patch(f"/v2/images/{image_id}", headers={
        **OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "replace", "path": "/name", "value": "cirros-2"}])
    assert r.status_code == 200, r.text
    r = client.post(f"/v2/images/{image_id}/members", headers=OWNER,
                    json={"member": "proj-b"})
    assert r.status_code == 200, r.text
    r = client.put(f"/v2/images/{image_id}/members/proj-b", headers=OTHER,
                   json={"status": "accepted"})
    assert r.status_code == 200, r.text
    r = client.post(f"/v2/images/{image_id}/actions/deactivate", headers=OWNER)
    assert r.status_code == 204, r.text
    r = client.delete(f"/v2/images/{image_id}/members/proj-b", headers=OWNER)
    assert r.status_code == 204, r.text
    r = client.delete(f"/v2/images/{image_id}", headers=OWNER)
    assert r.status_code == 204, r.text

    assert client.app.state.runtime.notifier.flush()
    consumer.wait_for(lambda m: any(x["event_type"] == "image.delete" for x in m))
    consumer.settle()
    assert consumer.types() == [
        "image.create",
        "image.update", "image.prepare", "image.upload", "image.activate", "image.update",
        "image.send",
        "image.update",
        "image.member.create", "image.member.update",
        "image.update",
        "image.member.delete",
        "image.delete",
    ]
    for message in consumer.messages:
        assert message["publisher_id"] == "image.localhost"
        assert message["_routing_key"] == f"{consumer.topic}.info"
        assert message["priority"] == "INFO"
        assert "locations" not in message["payload"]

    create = consumer.of("image.create")[0]["payload"]
    assert set(create) == IMAGE_FIELDS
    assert create["id"] == image_id and create["status"] == "queued"
    assert create["name"] == "cirros" and create["owner"] == "proj-a"
    assert create["properties"] == {"hw_arch": "x86"} and create["tags"] == []
    assert create["is_public"] is False and create["visibility"] == "shared"
    assert create["deleted"] is False and create["deleted_at"] is None
    assert _iso(create["created_at"]) and _iso(create["updated_at"])

    saving, _, uploaded, activated, active = (m["payload"] for m in consumer.messages[1:6])
    assert saving["status"] == "saving"
    prepare = consumer.of("image.prepare")[0]["payload"]
    assert prepare["status"] == "saving"
    assert prepare["os_glance_importing_to_stores"] == []
    assert prepare["os_glance_failed_import"] == []
    assert "backend" not in prepare  # one store: Glance names no backend
    assert uploaded["status"] == "active" and uploaded["size"] == len(DATA)
    assert uploaded["checksum"] == hashlib.md5(DATA).hexdigest()
    assert set(uploaded) == IMAGE_FIELDS | {"os_glance_importing_to_stores",
                                            "os_glance_failed_import"}
    assert activated["status"] == active["status"] == "active"

    send = consumer.of("image.send")[0]["payload"]
    assert send == {"bytes_sent": len(DATA), "image_id": image_id, "owner_id": "proj-a",
                    "receiver_tenant_id": "proj-a", "receiver_user_id": "user-a"}

    renamed = consumer.messages[7]["payload"]
    assert renamed["name"] == "cirros-2" and renamed["size"] == len(DATA)
    member = consumer.of("image.member.create")[0]["payload"]
    assert set(member) == MEMBER_FIELDS
    assert (member["image_id"], member["member_id"], member["status"]) == (
        image_id, "proj-b", "pending")
    assert consumer.of("image.member.update")[0]["payload"]["status"] == "accepted"
    assert consumer.messages[10]["payload"]["status"] == "deactivated"
    removed = consumer.of("image.member.delete")[0]["payload"]
    assert removed["deleted"] is True and _iso(removed["deleted_at"])

    deleted = consumer.of("image.delete")[0]["payload"]
    assert set(deleted) == IMAGE_FIELDS
    assert deleted["id"] == image_id and deleted["status"] == "deleted"
    assert deleted["deleted"] is True and _iso(deleted["deleted_at"])
    assert deleted["name"] == "cirros-2"


def test_tags_and_reactivate_are_updates(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic))
    image_id = client.post("/v2/images", headers=OWNER, json={"name": "t"}).json()["id"]
    assert client.put(f"/v2/images/{image_id}/tags/blue", headers=OWNER).status_code == 204
    assert client.delete(f"/v2/images/{image_id}/tags/blue",
                         headers=OWNER).status_code == 204
    client.app.state.runtime.notifier.flush()
    consumer.wait_count(3)
    assert consumer.types() == ["image.create", "image.update", "image.update"]
    assert consumer.messages[1]["payload"]["tags"] == ["blue"]
    assert consumer.messages[2]["payload"]["tags"] == []


def test_failed_upload_is_an_error_notification(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic))
    image_id = client.post("/v2/images", headers=OWNER, json={
        "name": "bad", "disk_format": "qcow2", "container_format": "bare"}).json()["id"]
    r = client.put(f"/v2/images/{image_id}/file", headers={
        **OWNER, "Content-Type": "application/octet-stream"}, content=b"not a qcow2" * 100)
    assert r.status_code == 415, r.text
    client.app.state.runtime.notifier.flush()
    consumer.wait_for(lambda m: any(x["priority"] == "ERROR" for x in m))
    errors = [m for m in consumer.messages if m["priority"] == "ERROR"]
    assert [m["event_type"] for m in errors] == ["image.upload"]
    assert errors[0]["_routing_key"] == f"{consumer.topic}.error"
    assert isinstance(errors[0]["payload"], str) and image_id in errors[0]["payload"]
    assert "image.activate" not in consumer.types()


def test_partial_download_sends_error_priority(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic))
    rt = client.app.state.runtime
    big = b"z" * (3 * 1024 * 1024)  # more than one read of the file store
    image_id = client.post("/v2/images", headers=OWNER, json={
        "name": "d", "disk_format": "raw", "container_format": "bare"}).json()["id"]
    client.put(f"/v2/images/{image_id}/file", headers={
        **OWNER, "Content-Type": "application/octet-stream"}, content=big)
    r = client.get(f"/v2/images/{image_id}/file", headers={**OWNER, "Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100
    # A client that goes away after the first chunk: the stream is closed early.
    from glimpse.services import data as data_svc

    chunks = data_svc.prepare_download(rt, _ctx(), image_id).open(rt)
    first = next(chunks)
    chunks.close()
    rt.notifier.flush()
    consumer.wait_for(lambda m: len([x for x in m if x["event_type"] == "image.send"]) >= 2)
    sends = consumer.of("image.send")
    assert [(m["priority"], m["payload"]["bytes_sent"]) for m in sends] == [
        ("INFO", 100), ("ERROR", len(first))]
    assert len(first) < len(big)
    assert sends[0]["_routing_key"] == f"{consumer.topic}.info"
    assert sends[1]["_routing_key"] == f"{consumer.topic}.error"


def _ctx():  # noqa: ANN202
    from glimpse.context import RequestContext

    return RequestContext(user_id="user-a", project_id="proj-a",
                          roles=("admin", "member", "reader"), is_admin=True)


def test_disabled_notifications(notify_app, consumer) -> None:
    client = notify_app(notify_config(
        consumer.topic, default_extra="disabled_notifications = image.update,image.member"))
    image_id = client.post("/v2/images", headers=OWNER, json={"name": "x"}).json()["id"]
    client.patch(f"/v2/images/{image_id}", headers={
        **OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "replace", "path": "/name", "value": "y"}])
    client.post(f"/v2/images/{image_id}/members", headers=OWNER, json={"member": "proj-b"})
    client.delete(f"/v2/images/{image_id}", headers=OWNER)
    client.app.state.runtime.notifier.flush()
    consumer.wait_count(2)
    consumer.settle()
    # image.member is a group prefix only for "image.member" itself: Glance matches
    # the exact type or the text before the first dot, so image.member.create is sent.
    assert consumer.types() == ["image.create", "image.member.create", "image.delete"]


def test_import_task_events(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic))
    image_id = client.post("/v2/images", headers=OWNER, json={
        "name": "imp", "disk_format": "raw", "container_format": "bare"}).json()["id"]
    r = client.put(f"/v2/images/{image_id}/stage", headers={
        **OWNER, "Content-Type": "application/octet-stream"}, content=DATA)
    assert r.status_code == 204, r.text
    r = client.post(f"/v2/images/{image_id}/import", headers=OWNER,
                    json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if client.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "active":
            break
        time.sleep(0.05)
    client.app.state.runtime.notifier.flush()
    consumer.wait_for(lambda m: any(x["event_type"] == "task.success" for x in m))
    consumer.settle()
    assert consumer.types() == [
        "image.create", "image.update", "image.update", "task.create", "task.run",
        "task.processing", "image.prepare", "image.upload", "image.update", "task.success",
    ]
    staged = consumer.messages[1]["payload"]
    assert staged["status"] == "uploading" and staged["size"] == len(DATA)
    assert consumer.messages[2]["payload"]["status"] == "importing"  # the import started
    tasks = [m["payload"] for m in consumer.messages if m["event_type"].startswith("task.")]
    for payload in tasks:
        assert set(payload) == TASK_FIELDS
        assert payload["type"] == "api_image_import" and payload["owner"] == "proj-a"
        assert payload["result"] is None and payload["message"] is None  # never the input
    assert [p["status"] for p in tasks] == ["pending", "pending", "processing", "success"]
    assert len({p["id"] for p in tasks}) == 1
    assert _iso(tasks[-1]["expires_at"])
    upload = consumer.of("image.upload")[0]["payload"]
    assert upload["status"] == "importing" and upload["checksum"] == hashlib.md5(
        DATA).hexdigest()
    assert consumer.messages[-2]["payload"]["status"] == "active"


def test_failed_task_sends_task_failure(notify_app, consumer) -> None:
    # A source the task may fetch from (loopback allowed for the test) where nothing
    # listens: the task is created, then fails when it runs.
    from tests.conftest import free_port

    port = free_port()
    client = notify_app(notify_config(
        consumer.topic, extra=f"[import_filtering_opts]\nallowed_hosts = 127.0.0.1\n"
        f"allowed_ports = {port}\n"))
    admin = {**OWNER, "X-Roles": "admin"}
    r = client.post("/v2/tasks", headers=admin, json={
        "type": "import", "input": {"import_from": f"http://127.0.0.1:{port}/passwd",
                                    "import_from_format": "raw",
                                    "image_properties": {"name": "x"}}})
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.get(f"/v2/tasks/{task_id}", headers=admin).json()["status"] == "failure":
            break
        time.sleep(0.1)
    client.app.state.runtime.runner.shutdown(wait=True)
    client.app.state.runtime.notifier.flush()
    consumer.wait_for(lambda m: any(x["event_type"] == "task.failure" for x in m))
    types = consumer.types()
    assert types[:3] == ["task.create", "task.run", "task.processing"]
    assert types[-1] == "task.failure", types
    assert consumer.messages[-1]["payload"]["status"] == "failure"
    assert "passwd" not in str(consumer.messages)  # the input is never sent


def test_metadef_events(notify_app, consumer) -> None:
    client = notify_app(notify_config(consumer.topic))
    admin = {**OWNER, "X-Roles": "admin"}
    base = "/v2/metadefs/namespaces"
    r = client.post(base, headers=admin, json={
        "namespace": "OS::Test", "display_name": "Test", "visibility": "public",
        "properties": {"speed": {"type": "integer", "title": "Speed", "minimum": 1}},
        "tags": [{"name": "fast"}],
        "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "t_"}]})
    assert r.status_code == 201, r.text
    steps = [
        ("put", base + "/OS::Test", {"namespace": "OS::Test2", "display_name": "Test 2",
                                     "visibility": "public"}),
        ("post", base + "/OS::Test2/objects", {"name": "CPU", "properties": {
            "cores": {"type": "integer", "title": "Cores"}}, "required": ["cores"]}),
        ("put", base + "/OS::Test2/objects/CPU", {"name": "Processor"}),
        ("post", base + "/OS::Test2/properties", {"name": "color", "type": "string",
                                                   "title": "Color", "enum": ["red"]}),
        ("put", base + "/OS::Test2/properties/color", {"name": "colour", "type": "string",
                                                        "title": "Colour"}),
        ("post", base + "/OS::Test2/tags/slow", None),
        ("put", base + "/OS::Test2/tags/slow", {"name": "slower"}),
        ("post", base + "/OS::Test2/tags", {"tags": [{"name": "a"}, {"name": "b"}]}),
        ("delete", base + "/OS::Test2/resource_types/OS::Glance::Image", None),
        ("post", base + "/OS::Test2/resource_types", {"name": "OS::Nova::Flavor"}),
        ("delete", base + "/OS::Test2/objects/Processor", None),
        ("delete", base + "/OS::Test2/properties/colour", None),
        ("delete", base + "/OS::Test2/tags/a", None),
        ("delete", base + "/OS::Test2/tags", None),
        ("delete", base + "/OS::Test2", None),
    ]
    for method, path, body in steps:
        kwargs = {"json": body} if body is not None else {}
        r = getattr(client, method)(path, headers=admin, **kwargs) if method != "delete" \
            else client.delete(path, headers=admin)
        assert r.status_code < 300, (method, path, r.status_code, r.text)
    client.app.state.runtime.notifier.flush()
    consumer.wait_for(lambda m: any(x["event_type"] == "metadef_namespace.delete" for x in m))
    consumer.settle()
    assert consumer.types() == [
        "metadef_namespace.create", "metadef_resource_type.create",
        "metadef_property.create", "metadef_tag.create",
        "metadef_namespace.update",
        "metadef_object.create", "metadef_object.update",
        "metadef_property.create", "metadef_property.update",
        "metadef_tag.create", "metadef_tag.update",
        "metadef_tag.create", "metadef_tag.create",
        "metadef_resource_type.delete", "metadef_resource_type.create",
        "metadef_object.delete", "metadef_property.delete", "metadef_tag.delete",
        "metadef_namespace.delete_tags", "metadef_namespace.delete",
    ]
    p = [m["payload"] for m in consumer.messages]
    assert set(p[0]) == {"namespace", "namespace_old", "display_name", "protected",
                         "visibility", "owner", "description", "created_at", "updated_at",
                         "deleted", "deleted_at"}
    assert p[0]["namespace"] == "OS::Test" and p[0]["visibility"] == "public"
    assert p[1]["name"] == "OS::Glance::Image" and p[1]["prefix"] == "t_"
    assert p[1]["namespace"] == "OS::Test"
    assert p[2]["name"] == "speed" and p[2]["type"] == "integer" and p[2]["minimum"] == 1
    assert (p[4]["namespace"], p[4]["namespace_old"]) == ("OS::Test2", "OS::Test")
    obj = p[5]
    assert obj["name"] == "CPU" and obj["required"] == ["cores"]
    assert obj["properties"][0]["name"] == "cores"
    assert obj["properties"][0]["type"] == "integer" and obj["properties"][0]["enum"] is None
    assert (p[6]["name"], p[6]["name_old"]) == ("Processor", "CPU")
    assert (p[8]["name"], p[8]["name_old"]) == ("colour", "color")
    assert (p[10]["name"], p[10]["name_old"]) == ("slower", "slow")
    assert [p[11]["name"], p[12]["name"]] == ["a", "b"]
    for deleted in (p[13], p[15], p[16], p[17], p[19]):
        assert deleted["deleted"] is True and _iso(deleted["deleted_at"])
    assert p[18]["deleted"] is False and p[18]["namespace"] == "OS::Test2"


def test_live_server_with_two_workers(tmp_path, db_url, consumer) -> None:
    """`glimpse serve --workers 2`: each worker process has its own sender."""
    import httpx

    from tests.conftest import start_server

    server = start_server(tmp_path, db_url, workers=2,
                          config_text=notify_config(consumer.topic).replace("[DEFAULT]\n", ""))
    try:
        ids = []
        with httpx.Client(base_url=server.url, headers=OWNER, timeout=10) as http:
            for i in range(6):  # new connections: both workers get some
                r = http.post("/v2/images", json={"name": f"live-{i}"},
                              headers={"Connection": "close"})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
        consumer.wait_count(6)
    finally:
        server.stop()
    consumer.settle()
    assert sorted(m["payload"]["id"] for m in consumer.of("image.create")) == sorted(ids)


def test_a_download_the_server_sends_itself_is_notified(notify_app, consumer) -> None:
    """Under a server with ASGI pathsend (Granian) the bytes never pass through
    Glimpse: image.send still follows, with the image's size."""
    import anyio

    from tests.api.test_pathsend import _call

    client = notify_app(notify_config(consumer.topic))
    data = b"p" * 100_000
    image_id = client.post("/v2/images", headers=OWNER, json={
        "name": "ps", "disk_format": "raw", "container_format": "bare"}).json()["id"]
    client.put(f"/v2/images/{image_id}/file", headers={
        **OWNER, "Content-Type": "application/octet-stream"}, content=data)
    messages = anyio.run(_call, client.app, f"/v2/images/{image_id}/file", OWNER, True)
    assert [m["type"] for m in messages][-1] == "http.response.pathsend"
    client.app.state.runtime.notifier.flush()
    consumer.wait_for(lambda m: any(x["event_type"] == "image.send" for x in m))
    sends = consumer.of("image.send")
    assert [(m["priority"], m["payload"]["bytes_sent"]) for m in sends] == [
        ("INFO", len(data))]
    assert sends[0]["payload"]["image_id"] == image_id
