"""The /v2/schemas/* documents and the request validation built on them.

The expected documents below were captured from a real Glance 33.0.0 (started
with shared/anchors/bench/start_glance.sh) and stripped of their descriptions,
which are worded differently on purpose.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from glimpse.api import schemas
from glimpse.api.schemas import UUID_PATTERN
from glimpse.errors import BadRequest, Forbidden

DISK_FORMATS = ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]
CONTAINER_FORMATS = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]

STRING_OR_NULL = ["null", "string"]
INT_OR_NULL = ["null", "integer"]
READ_ONLY_STRING = {"readOnly": True, "type": "string"}

GLANCE_IMAGE_PROPERTIES: dict[str, Any] = {
    "checksum": {"maxLength": 32, "readOnly": True, "type": STRING_OR_NULL},
    "container_format": {"enum": [None, *CONTAINER_FORMATS], "type": STRING_OR_NULL},
    "created_at": READ_ONLY_STRING,
    "direct_url": READ_ONLY_STRING,
    "disk_format": {"enum": [None, *DISK_FORMATS], "type": STRING_OR_NULL},
    "file": READ_ONLY_STRING,
    "id": {"pattern": UUID_PATTERN, "type": "string"},
    "locations": {
        "items": {
            "properties": {
                "metadata": {"type": "object"},
                "url": {"maxLength": 255, "type": "string"},
                "validation_data": {
                    "additionalProperties": False,
                    "properties": {
                        "checksum": {"maxLength": 32, "minLength": 32, "type": "string"},
                        "os_hash_algo": {"maxLength": 64, "type": "string"},
                        "os_hash_value": {"maxLength": 128, "type": "string"},
                    },
                    "required": ["os_hash_algo", "os_hash_value"],
                    "type": "object",
                    "writeOnly": True,
                },
            },
            "required": ["url", "metadata"],
            "type": "object",
        },
        "type": "array",
    },
    "min_disk": {"type": "integer"},
    "min_ram": {"type": "integer"},
    "name": {"maxLength": 255, "type": STRING_OR_NULL},
    "os_hash_algo": {"maxLength": 64, "readOnly": True, "type": STRING_OR_NULL},
    "os_hash_value": {"maxLength": 128, "readOnly": True, "type": STRING_OR_NULL},
    "os_hidden": {"type": "boolean"},
    "owner": {"maxLength": 255, "type": STRING_OR_NULL},
    "protected": {"type": "boolean"},
    "schema": READ_ONLY_STRING,
    "self": READ_ONLY_STRING,
    "size": {"readOnly": True, "type": INT_OR_NULL},
    "status": {
        "enum": [
            "queued", "saving", "active", "killed", "deleted",
            "uploading", "importing", "pending_delete", "deactivated",
        ],
        "readOnly": True,
        "type": "string",
    },
    "stores": READ_ONLY_STRING,
    "tags": {"items": {"maxLength": 255, "type": "string"}, "type": "array"},
    "updated_at": READ_ONLY_STRING,
    "virtual_size": {"readOnly": True, "type": INT_OR_NULL},
    "visibility": {"enum": ["community", "public", "private", "shared"], "type": "string"},
}

GLANCE_MEMBER_PROPERTIES: dict[str, Any] = {
    "created_at": {"type": "string"},
    "image_id": {"pattern": UUID_PATTERN, "type": "string"},
    "member_id": {"type": "string"},
    "schema": READ_ONLY_STRING,
    "status": {"enum": ["pending", "accepted", "rejected"], "type": "string"},
    "updated_at": {"type": "string"},
}

GLANCE_TASK_PROPERTIES: dict[str, Any] = {
    "created_at": {"type": "string"},
    "expires_at": {"type": STRING_OR_NULL},
    "id": {"pattern": UUID_PATTERN, "type": "string"},
    # Glance says "string" for these four; Glimpse lets them be null, which they
    # are for the embedded noauth admin, so that `glance task-show` accepts the
    # task (docs/decisions/0001).
    "image_id": {"type": STRING_OR_NULL},
    "input": {"type": ["null", "object"]},
    "message": {"type": "string"},
    "owner": {"type": STRING_OR_NULL},
    "request_id": {"type": STRING_OR_NULL},
    "result": {"type": ["null", "object"]},
    "schema": READ_ONLY_STRING,
    "self": READ_ONLY_STRING,
    "status": {"enum": ["pending", "processing", "success", "failure"], "type": "string"},
    "type": {"enum": ["import", "api_image_import", "location_import"], "type": "string"},
    "updated_at": {"type": "string"},
    "user_id": {"type": STRING_OR_NULL},
}


def without_descriptions(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: without_descriptions(v) for k, v in doc.items() if k != "description"}
    if isinstance(doc, list):
        return [without_descriptions(item) for item in doc]
    return doc


@pytest.fixture
def image_schema() -> dict[str, Any]:
    return schemas.image_schema(DISK_FORMATS, CONTAINER_FORMATS)


def valid_image() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": "cirros",
        "visibility": "private",
        "protected": False,
        "os_hidden": False,
        "disk_format": "qcow2",
        "container_format": "bare",
        "min_ram": 512,
        "min_disk": 1,
        "tags": ["small", "test"],
        "owner": "3ec8a9ae5bd54e2c8d0d1a3a0e2b9b00",
        "os_distro": "cirros",
    }


# ------------------------------------------------------------------ served documents


def test_image_schema_is_glance_document(image_schema: dict[str, Any]) -> None:
    assert without_descriptions(image_schema) == {
        "name": "image",
        "properties": GLANCE_IMAGE_PROPERTIES,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def test_every_image_property_is_described(image_schema: dict[str, Any]) -> None:
    for name, prop in image_schema["properties"].items():
        assert prop.get("description"), name


def test_format_enums_follow_configuration() -> None:
    doc = schemas.image_schema(["raw", "qcow2"], ["bare", "ovf"])
    assert doc["properties"]["disk_format"]["enum"] == [None, "raw", "qcow2"]
    assert doc["properties"]["container_format"]["enum"] == [None, "bare", "ovf"]
    schemas.validate_image({"disk_format": "raw", "container_format": None}, doc)
    with pytest.raises(BadRequest, match="'vmdk' is not one of"):
        schemas.validate_image({"disk_format": "vmdk"}, doc)
    with pytest.raises(BadRequest, match="'docker' is not one of"):
        schemas.validate_image({"container_format": "docker"}, doc)


def test_images_schema_links_to_image_schema(image_schema: dict[str, Any]) -> None:
    doc = schemas.images_schema(DISK_FORMATS, CONTAINER_FORMATS)
    assert doc["name"] == "images"
    assert set(doc["properties"]) == {"images", "first", "next", "schema"}
    assert doc["properties"]["images"] == {"type": "array", "items": image_schema}
    for key in ("first", "next", "schema"):
        assert doc["properties"][key] == {"type": "string"}
    assert doc["links"] == [
        {"rel": "first", "href": "{first}"},
        {"rel": "next", "href": "{next}"},
        {"rel": "describedby", "href": "{schema}"},
    ]


def test_member_schemas_are_glance_documents() -> None:
    member = schemas.member_schema()
    assert without_descriptions(member) == {
        "name": "member",
        "properties": GLANCE_MEMBER_PROPERTIES,
    }
    assert without_descriptions(schemas.members_schema()) == {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": without_descriptions(member)},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def test_task_schemas_are_glance_documents() -> None:
    assert without_descriptions(schemas.task_schema()) == {
        "name": "task",
        "properties": GLANCE_TASK_PROPERTIES,
    }
    listed = {
        k: v for k, v in GLANCE_TASK_PROPERTIES.items()
        if k not in ("input", "result", "message")
    }
    assert without_descriptions(schemas.tasks_schema()) == {
        "name": "tasks",
        "properties": {
            "tasks": {"type": "array", "items": {"name": "task", "properties": listed}},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def test_documents_serialize_to_json(image_schema: dict[str, Any]) -> None:
    for doc in (
        image_schema,
        schemas.images_schema(DISK_FORMATS, CONTAINER_FORMATS),
        schemas.member_schema(),
        schemas.members_schema(),
        schemas.task_schema(),
        schemas.tasks_schema(),
    ):
        assert json.loads(json.dumps(doc)) == doc


def test_custom_properties_are_merged_as_non_base() -> None:
    custom = {
        "os_distro": {"type": "string", "description": "Distribution"},
        "kernel_id": {"type": ["null", "string"], "pattern": UUID_PATTERN},
    }
    doc = schemas.image_schema(DISK_FORMATS, CONTAINER_FORMATS, custom)
    assert doc["properties"]["os_distro"]["is_base"] is False
    assert doc["properties"]["kernel_id"]["is_base"] is False
    assert "is_base" not in doc["properties"]["name"]
    assert "is_base" not in custom["os_distro"]  # the caller's mapping is left alone
    schemas.validate_image({"kernel_id": None}, doc)
    with pytest.raises(BadRequest):
        schemas.validate_image({"kernel_id": "not-a-uuid"}, doc)


def test_custom_property_may_not_redefine_a_base_property() -> None:
    with pytest.raises(ValueError, match=r"custom properties \(name\) conflict"):
        schemas.image_schema(DISK_FORMATS, CONTAINER_FORMATS, {"name": {"type": "integer"}})


def test_load_custom_properties(tmp_path: Any) -> None:
    path = tmp_path / "schema-image.json"
    path.write_text(json.dumps({"os_version": {"type": "string"}}))
    assert schemas.load_custom_properties(str(path)) == {"os_version": {"type": "string"}}
    assert schemas.load_custom_properties(str(tmp_path / "missing.json")) == {}
    assert schemas.load_custom_properties(None) == {}


# ------------------------------------------------------------------ image validation


def test_valid_image_passes(image_schema: dict[str, Any]) -> None:
    schemas.validate_image(valid_image(), image_schema)
    schemas.validate_image({}, image_schema)
    schemas.validate_image(
        {"name": None, "disk_format": None, "container_format": None, "owner": None},
        image_schema,
    )
    schemas.validate_image({"id": str(uuid.uuid4()).upper()}, image_schema)


def test_integral_float_counts_as_integer_like_glance(image_schema: dict[str, Any]) -> None:
    # Glance validates with jsonschema's newest draft, where 1.0 is an integer.
    schemas.validate_image({"min_ram": 1.0}, image_schema)
    with pytest.raises(BadRequest):
        schemas.validate_image({"min_ram": 1.5}, image_schema)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"name": "n" * 256}, "is too long"),
        ({"name": 42}, "is not of type 'null', 'string'"),
        ({"visibility": "everyone"}, "'everyone' is not one of"),
        ({"visibility": None}, "None is not of type 'string'"),
        ({"id": "not-a-uuid"}, "does not match"),
        ({"id": "0b2f0b6e-1f6a-4a4c-9f2e-1c4f3e3e3e3"}, "does not match"),
        ({"foo": 1}, "1 is not of type 'string'"),
        ({"foo": None}, "None is not of type 'string'"),
        ({"foo": ["a"]}, "is not of type 'string'"),
        ({"protected": "yes"}, "'yes' is not of type 'boolean'"),
        ({"os_hidden": 1}, "1 is not of type 'boolean'"),
        ({"min_ram": "512"}, "'512' is not of type 'integer'"),
        ({"min_disk": True}, "True is not of type 'integer'"),
        ({"min_disk": None}, "None is not of type 'integer'"),
        ({"tags": "a,b"}, "'a,b' is not of type 'array'"),
        ({"tags": ["t" * 256]}, "is too long"),
        ({"tags": [1]}, "1 is not of type 'string'"),
        ({"owner": "o" * 256}, "is too long"),
        ({"status": "broken"}, "'broken' is not one of"),
        ({"locations": [{"url": "file:///x"}]}, "'metadata' is a required property"),
    ],
)
def test_invalid_image_is_rejected(
    image_schema: dict[str, Any], doc: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        schemas.validate_image(doc, image_schema)
    assert caught.value.status == 400
    assert caught.value.message.startswith("Provided object does not match schema 'image': ")
    assert fragment in caught.value.message


def test_error_names_the_failing_rule_and_value(image_schema: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as caught:
        schemas.validate_image({"visibility": "x"}, image_schema)
    message = caught.value.message
    assert "Failed validating 'enum' in schema['properties']['visibility']" in message
    assert "On instance['visibility']" in message


def test_non_object_body_is_rejected(image_schema: dict[str, Any]) -> None:
    for body in ([], "image", 3, None):
        with pytest.raises(BadRequest, match="is not of type 'object'"):
            schemas.validate_image(body, image_schema)  # type: ignore[arg-type]


def test_validators_are_compiled_once(image_schema: dict[str, Any]) -> None:
    first = schemas._validator(image_schema)
    schemas.validate_image(valid_image(), image_schema)
    assert schemas._validator(image_schema) is first
    assert schemas.image_schema(DISK_FORMATS, CONTAINER_FORMATS) is image_schema


# ------------------------------------------------------------------ create and PATCH rules


@pytest.mark.parametrize("name", ["direct_url", "self", "file", "schema", "stores"])
def test_create_refuses_output_only_attributes(image_schema: dict[str, Any], name: str) -> None:
    with pytest.raises(Forbidden, match=f"^Attribute '{name}' is read-only.$"):
        schemas.check_create_attributes({name: "x"}, image_schema)


@pytest.mark.parametrize(
    "name", ["status", "checksum", "size", "virtual_size", "created_at", "updated_at"]
)
def test_create_refuses_read_only_base_attributes(image_schema: dict[str, Any], name: str) -> None:
    value: Any = 3 if "size" in name else ("active" if name == "status" else "x")
    with pytest.raises(Forbidden, match=f"^Attribute '{name}' is read-only.$"):
        schemas.check_create_attributes({name: value}, image_schema)


@pytest.mark.parametrize("name", ["location", "deleted", "deleted_at", "os_glance_x", "locations"])
def test_create_refuses_reserved_attributes(image_schema: dict[str, Any], name: str) -> None:
    value: Any = [] if name == "locations" else "x"
    with pytest.raises(Forbidden, match=f"^Attribute '{name}' is reserved.$"):
        schemas.check_create_attributes({name: value}, image_schema)


def test_create_checks_run_in_glance_order(image_schema: dict[str, Any]) -> None:
    # the output-only check comes before schema validation ...
    with pytest.raises(Forbidden):
        schemas.check_create_attributes({"self": "x", "name": 1}, image_schema)
    # ... which comes before the read-only base attributes
    with pytest.raises(BadRequest):
        schemas.check_create_attributes({"status": "bogus"}, image_schema)
    with pytest.raises(BadRequest, match="greater than 255 characters"):
        schemas.check_create_attributes({"k" * 256: "v"}, image_schema)
    schemas.check_create_attributes(valid_image(), image_schema)


@pytest.mark.parametrize("name", sorted(schemas.IMAGE_READONLY))
def test_patch_refuses_read_only(name: str) -> None:
    with pytest.raises(Forbidden, match=f"^Attribute '{name}' is read-only.$"):
        schemas.check_patch_attribute(name)


@pytest.mark.parametrize("name", ["location", "deleted", "deleted_at", "os_glance_import_task"])
def test_patch_refuses_reserved(name: str) -> None:
    with pytest.raises(Forbidden, match=f"^Attribute '{name}' is reserved.$"):
        schemas.check_patch_attribute(name)


@pytest.mark.parametrize("name", ["name", "visibility", "owner", "locations", "os_distro"])
def test_patch_allows_writable(name: str) -> None:
    schemas.check_patch_attribute(name)


def test_read_only_set_matches_schema_flags(image_schema: dict[str, Any]) -> None:
    flagged = {k for k, v in image_schema["properties"].items() if v.get("readOnly")}
    # ``id`` is writable once, on create. ``stores`` is refused on PATCH too: Glance
    # would store it as a property that then clashes with the computed attribute.
    assert "stores" in flagged
    assert schemas.IMAGE_READONLY == flagged | {"id"}


# ------------------------------------------------------------------ member bodies


def test_member_create_body() -> None:
    assert schemas.parse_member_create({"member": "project-b"}) == "project-b"
    with pytest.raises(BadRequest, match="^Member to be added not specified$"):
        schemas.parse_member_create({})
    with pytest.raises(BadRequest, match="^Member can't be empty$"):
        schemas.parse_member_create({"member": ""})
    for body in ([], "project-b", {"member": 5}, {"member": "p" * 256}):
        with pytest.raises(BadRequest, match="Expected a member in the form"):
            schemas.parse_member_create(body)


def test_member_update_body() -> None:
    assert schemas.parse_member_update({"status": "accepted"}) == "accepted"
    with pytest.raises(BadRequest, match="^Status not specified$"):
        schemas.parse_member_update({})
    with pytest.raises(BadRequest, match="Expected a status in the form"):
        schemas.parse_member_update(["accepted"])


@pytest.mark.parametrize("status", ["pending", "accepted", "rejected"])
def test_member_status_values(status: str) -> None:
    assert schemas.validate_member_status(status) == status


@pytest.mark.parametrize("status", ["maybe", "", None, 1, "Accepted"])
def test_member_status_rejects_others(status: Any) -> None:
    with pytest.raises(BadRequest, match="Status must be"):
        schemas.validate_member_status(status)


def test_strict_member_and_task_schemas_refuse_unknown_keys() -> None:
    schemas.validate({"status": "accepted"}, schemas.member_schema(strict=True))
    with pytest.raises(BadRequest, match="Additional properties are not allowed"):
        schemas.validate({"status": "accepted", "x": 1}, schemas.member_schema(strict=True))
    with pytest.raises(BadRequest, match="'bogus' is not one of"):
        schemas.validate({"status": "bogus"}, schemas.member_schema())
    task = {"type": "import", "input": {"import_from": "http://example.com/x.img"}}
    schemas.validate(task, schemas.task_schema(strict=True))
    with pytest.raises(BadRequest, match="Additional properties are not allowed"):
        schemas.validate({**task, "extra": "x"}, schemas.task_schema(strict=True))
    with pytest.raises(BadRequest, match="schema 'task'"):
        schemas.validate({"type": "export"}, schemas.task_schema())
