"""metadata definitions (metadef) tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 01:45:00
"""


import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# No resource types are seeded: as with Glance's schema, a fresh database lists
# none until a catalogue is loaded (glimpse db load-metadefs) or an association
# names one. (Databases migrated by an earlier version of this revision keep
# the five rows it seeded; they are harmless.)


def _stamps() -> list[sa.Column]:
    return [sa.Column("created_at", TS, nullable=False),
            sa.Column("updated_at", TS, nullable=False)]


def _namespace_fk() -> sa.Column:
    return sa.Column("namespace_id", sa.Integer(),
                     sa.ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "metadef_namespaces",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(80), nullable=False),
        sa.Column("display_name", sa.String(80), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("visibility", sa.String(32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        *_stamps(),
        sa.UniqueConstraint("namespace", name="uq_metadef_namespaces_namespace"),
        **MYSQL_TABLE,
    )
    op.create_index("ix_metadef_namespaces_owner", "metadef_namespaces", ["owner"])
    op.create_table(
        "metadef_objects",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _namespace_fk(),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("required", sa.Text(), nullable=True),
        sa.Column("json_schema", LONG_TEXT, nullable=False),
        *_stamps(),
        sa.UniqueConstraint("namespace_id", "name", name="uq_metadef_objects_name"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "metadef_properties",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _namespace_fk(),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("json_schema", LONG_TEXT, nullable=False),
        *_stamps(),
        sa.UniqueConstraint("namespace_id", "name", name="uq_metadef_properties_name"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "metadef_resource_types",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("name", name="uq_metadef_resource_types_name"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "metadef_namespace_resource_types",
        sa.Column("resource_type_id", sa.Integer(),
                  sa.ForeignKey("metadef_resource_types.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("namespace_id", sa.Integer(),
                  sa.ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("properties_target", sa.String(80), nullable=True),
        sa.Column("prefix", sa.String(80), nullable=True),
        *_stamps(),
        **MYSQL_TABLE,
    )
    op.create_table(
        "metadef_tags",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _namespace_fk(),
        sa.Column("name", sa.String(255), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("namespace_id", "name", name="uq_metadef_tags_name"),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("metadef_tags")
    op.drop_table("metadef_namespace_resource_types")
    op.drop_table("metadef_resource_types")
    op.drop_table("metadef_properties")
    op.drop_table("metadef_objects")
    op.drop_index("ix_metadef_namespaces_owner", table_name="metadef_namespaces")
    op.drop_table("metadef_namespaces")
