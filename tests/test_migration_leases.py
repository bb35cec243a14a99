"""Migration 0006 (leases) matches the model on every database, and goes down again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from glimpse.db.engine import Database, alembic_config, head_revision, upgrade
from glimpse.db.models import Base
from tests.conftest import BACKENDS


@pytest.mark.parametrize("fresh_db_url", BACKENDS, indirect=True)
def test_leases_table_matches_the_model_and_downgrades(fresh_db_url):
    db = Database(fresh_db_url)
    try:
        upgrade(db)
        assert head_revision() >= "0006"
        with db.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diffs if "leases" in repr(d)] == []
        indexes = {i["name"] for i in inspect(db.engine).get_indexes("leases")}
        assert {"ix_leases_expires_at", "ix_leases_worker", "ix_leases_image_id"} <= indexes
        with db.engine.begin() as conn:
            config = alembic_config(db.url)
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")
        assert "leases" not in inspect(db.engine).get_table_names()
        upgrade(db)
        assert "leases" in inspect(db.engine).get_table_names()
    finally:
        db.dispose()
