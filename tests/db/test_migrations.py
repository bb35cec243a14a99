"""Alembic migrations on SQLite, PostgreSQL and MariaDB.

- an empty database upgrades to head, and the migrated schema is exactly what
  glimpse.db.models describes (alembic's autogenerate comparison finds nothing:
  no missing table, column, index or unique constraint, no type that differs);
- from every earlier revision, with rows in every table that exists there, an
  upgrade to head keeps those rows and the API still reads the image.

The revisions come from the migration scripts themselves, so a new revision is
covered by adding it, with nothing to change here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.db import engine as db_engine
from glimpse.db.models import Base
from glimpse.services import runtime as runtime_mod
from tests.conftest import BACKENDS, as_project, make_conf

PROJECT = "0d6b9e3a5c1f4e2d8a7b6c5d4e3f2a1b"


def revisions_oldest_first() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db_engine.alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


REVISIONS = revisions_oldest_first()
EARLIER = REVISIONS[:-1]


def _schema_differences(db: db_engine.Database) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def include_name(name: str | None, type_: str, parent: Any) -> bool:
        # SQLite's planner statistics (revision 0005) are not a model table.
        return not (type_ == "table" and name is not None and name.startswith("sqlite_"))

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_name": include_name})
        return compare_metadata(context, Base.metadata)


@pytest.mark.parametrize("fresh_db_url", BACKENDS, indirect=True)
def test_empty_database_upgrades_to_head_matching_the_models(fresh_db_url: str) -> None:
    db = db_engine.Database(fresh_db_url)
    try:
        assert db_engine.stamped_revisions(db) == frozenset()
        assert db_engine.upgrade_if_needed(db) is True
        assert db_engine.current_revision(db) == REVISIONS[-1] == db_engine.head_revision()
        assert _schema_differences(db) == []
        assert db_engine.upgrade_if_needed(db) is False  # already at head: nothing to do
    finally:
        db.dispose()


# ---------------------------------------------------------------- data survives upgrades

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678000)
# Values a real deployment would hold, where a made-up one would not be readable.
REALISTIC = {
    "images": {"status": "active", "visibility": "private", "disk_format": "raw",
               "container_format": "bare", "owner": PROJECT, "size": 1234,
               "virtual_size": 1234, "min_disk": 1, "min_ram": 2, "protected": False,
               "os_hidden": False, "deleted": False, "deleted_at": None,
               "checksum": "0" * 32, "os_hash_algo": "sha512", "os_hash_value": "f" * 128},
    "image_members": {"status": "accepted", "can_share": False},
    "image_locations": {"status": "active", "meta_data": '{"store": "file"}'},
    "tasks": {"status": "success", "type": "import", "input": "{}", "result": "{}",
              "deleted": False, "deleted_at": None, "expires_at": None},
    "metadef_namespaces": {"visibility": "public", "protected": False},
    "metadef_objects": {"json_schema": "{}", "required": "[]"},
    "metadef_properties": {"json_schema": '{"type": "string"}'},
    "metadef_resource_types": {"protected": False},
}


def _value(table: Table, column: Any, tag: str) -> Any:
    special = REALISTIC.get(table.name, {})
    if column.name in special:
        return special[column.name]
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, BigInteger | Integer):
        return 7
    if isinstance(kind, DateTime):
        return NOW
    if isinstance(kind, String) and kind.length:
        return f"{tag}-{column.name}"[: kind.length]
    if isinstance(kind, String | Text):
        return f"{tag} {column.name} text"
    raise AssertionError(f"no sample value for {table.name}.{column.name} ({kind!r})")


def _fill(conn: Any, tag: str) -> dict[str, dict[str, Any]]:
    """One row in every table of the database as it is now; returns them by table."""
    meta = MetaData()
    meta.reflect(conn)
    rows: dict[str, dict[str, Any]] = {}
    for table in meta.sorted_tables:  # parents before children
        if table.name == "alembic_version" or table.name.startswith("sqlite_"):
            continue
        row: dict[str, Any] = {}
        for column in table.columns:
            fks = list(column.foreign_keys)
            if fks:
                parent = fks[0].column
                row[column.name] = rows[parent.table.name][parent.name]
            elif column.primary_key and isinstance(column.type, Integer) and len(
                    table.primary_key.columns) == 1:
                continue  # autoincrement: the database picks it
            elif column.primary_key and table.name == "images":
                row[column.name] = str(uuid.uuid4())
            elif column.name == "id" and isinstance(column.type, String):
                row[column.name] = str(uuid.uuid4())
            else:
                row[column.name] = _value(table, column, tag)
        result = conn.execute(insert(table).values(row))
        for column, value in zip(table.primary_key.columns, result.inserted_primary_key,
                                 strict=True):
            row[column.name] = value
        rows[table.name] = row
    return rows


def _normal(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, bool):
        return int(value)
    return value


@pytest.mark.parametrize("revision", EARLIER)
@pytest.mark.parametrize("fresh_db_url", BACKENDS, indirect=True)
def test_upgrade_from_revision_keeps_data(fresh_db_url: str, revision: str,
                                          tmp_path: Path) -> None:
    db = db_engine.Database(fresh_db_url)
    try:
        db_engine.upgrade(db, revision)
        assert db_engine.current_revision(db) == revision
        with db.engine.begin() as conn:
            before = _fill(conn, f"r{revision}")
        assert "images" in before
        db_engine.upgrade(db)
        assert db_engine.current_revision(db) == REVISIONS[-1]
        meta = MetaData()
        meta.reflect(db.engine)
        with db.engine.connect() as conn:
            for name, row in before.items():
                assert name in meta.tables, f"table {name} disappeared after {revision}"
                table = meta.tables[name]
                where = [table.c[c.name] == row[c.name] for c in table.primary_key.columns]
                found = conn.execute(select(table).where(*where)).mappings().one_or_none()
                assert found is not None, f"{name} row lost upgrading from {revision}"
                for column, value in row.items():
                    if column in found:
                        assert _normal(found[column]) == _normal(value), (name, column)
        assert _schema_differences(db) == []
    finally:
        db.dispose()
    image = before["images"]
    _api_reads_image(tmp_path, fresh_db_url, image, before)


def _api_reads_image(tmp_path: Path, url: str, image: dict[str, Any],
                     rows: dict[str, dict[str, Any]]) -> None:
    conf = make_conf(tmp_path, url)
    rt = runtime_mod.build(conf, migrate=True)
    try:
        client = TestClient(create_app(conf, rt), headers={"Accept": "application/json"})
        resp = client.get(f"/v2/images/{image['id']}", headers=as_project(PROJECT))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["name"] == image["name"] and body["size"] == image["size"]
        assert body["checksum"] == image["checksum"] and body["status"] == "active"
        if "image_properties" in rows:
            prop = rows["image_properties"]
            assert body[prop["name"]] == prop["value"]
        if "image_tags" in rows:
            assert body["tags"] == [rows["image_tags"]["value"]]
        listed = client.get("/v2/images", headers=as_project(PROJECT)).json()["images"]
        assert [i["id"] for i in listed] == [image["id"]]
    finally:
        rt.close()


def test_revisions_form_one_line_from_base_to_head() -> None:
    from alembic.script import ScriptDirectory

    assert REVISIONS[0] == "0001" and len(REVISIONS) == len(set(REVISIONS)) >= 5
    # Glimpse reads the heads without Alembic: they must be Alembic's.
    script = ScriptDirectory.from_config(db_engine.alembic_config("sqlite://"))
    assert db_engine.head_revisions() == frozenset(script.get_heads()) == {REVISIONS[-1]}


# ---------------------------------------------------------------- expand-only revisions

# From here on every revision only adds (tables, nullable or defaulted columns,
# indexes): a node still running the previous release keeps working on a database
# migrated by the next one (rolling upgrades; 0007 adds the image cache's tables).
EXPAND_ONLY_FROM = "0006"


def _shape(db: db_engine.Database) -> dict[str, dict[str, tuple[str, bool]]]:
    from sqlalchemy import inspect

    inspector = inspect(db.engine)
    return {table: {c["name"]: (str(c["type"]), bool(c["nullable"]))
                    for c in inspector.get_columns(table)}
            for table in inspector.get_table_names()}


EXPAND_PAIRS = [(old, new) for old, new in zip(REVISIONS, REVISIONS[1:], strict=False)
                if old >= EXPAND_ONLY_FROM]


@pytest.mark.parametrize(("previous", "revision"), EXPAND_PAIRS)
@pytest.mark.parametrize("fresh_db_url", BACKENDS, indirect=True)
def test_revision_only_expands_the_previous_schema(fresh_db_url: str, previous: str,
                                                   revision: str, tmp_path: Path) -> None:
    db = db_engine.Database(fresh_db_url)
    try:
        db_engine.upgrade(db, previous)
        with db.engine.begin() as conn:
            rows = _fill(conn, f"e{revision}")
        before = _shape(db)
        db_engine.upgrade(db, revision)
        after = _shape(db)
        for table, columns in before.items():
            assert table in after, f"{revision} drops table {table}"
            for name, shape in columns.items():
                assert after[table].get(name) == shape, f"{revision} changes {table}.{name}"
        for table in set(after) & set(before):
            for name in set(after[table]) - set(before[table]):
                assert after[table][name][1], f"{revision} adds NOT NULL {table}.{name}"
        # What the previous release writes and reads still works: a new row in
        # every table it knows, then every row read back.
        with db.engine.begin() as conn:
            again = _fill(conn, f"f{revision}")
        meta = MetaData()
        meta.reflect(db.engine, only=list(before))
        with db.engine.connect() as conn:
            for table_rows in (rows, again):
                for name, row in table_rows.items():
                    if name not in before:
                        continue  # new in this revision
                    table = meta.tables[name]
                    where = [table.c[c.name] == row[c.name] for c in table.primary_key.columns]
                    assert conn.execute(select(table).where(*where)).first() is not None
    finally:
        db.dispose()


# ---------------------------------------------------------------- runtime start-up


@pytest.mark.parametrize("fresh_db_url", ["sqlite"], indirect=True)
def test_runtime_migrates_a_new_database_and_skips_a_current_one(
        fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = make_conf(tmp_path, fresh_db_url)
    runtime_mod.build(conf, migrate=True).close()
    db = db_engine.Database(fresh_db_url)
    assert db_engine.current_revision(db) == REVISIONS[-1]
    db.dispose()

    def no_upgrade(*args: object, **kwargs: object) -> None:
        raise AssertionError("upgrade called on a database already at head")

    monkeypatch.setattr(db_engine, "upgrade", no_upgrade)
    runtime_mod.build(conf, migrate=True).close()
