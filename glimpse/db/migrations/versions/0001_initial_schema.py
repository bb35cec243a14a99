"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 23:53:47.624533
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# MariaDB: binary collation so ids, property names, tags and members compare
# case-sensitively as on PostgreSQL and SQLite; MEDIUMTEXT for long values.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

# Microsecond timestamps on MariaDB too (its DATETIME drops fractions by default).
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("disk_format", sa.String(length=20), nullable=True),
        sa.Column("container_format", sa.String(length=20), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("virtual_size", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("visibility", sa.String(length=20), nullable=False),
        sa.Column("checksum", sa.String(length=32), nullable=True),
        sa.Column("os_hash_algo", sa.String(length=64), nullable=True),
        sa.Column("os_hash_value", sa.String(length=128), nullable=True),
        sa.Column("min_disk", sa.Integer(), nullable=False),
        sa.Column("min_ram", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("os_hidden", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_images_deleted_visibility", ["deleted", "visibility"], unique=False
        )
        batch_op.create_index("ix_images_name", ["name"], unique=False)
        batch_op.create_index("ix_images_os_hash_value", ["os_hash_value"], unique=False)
        batch_op.create_index("ix_images_owner", ["owner"], unique=False)
        batch_op.create_index("ix_images_status", ["status"], unique=False)
        batch_op.create_index("ix_images_updated_at", ["updated_at"], unique=False)

    op.create_table(
        "image_locations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("value", LONG_TEXT, nullable=False),
        sa.Column("meta_data", LONG_TEXT, nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("image_locations", schema=None) as batch_op:
        batch_op.create_index("ix_image_locations_image_id", ["image_id"], unique=False)
        batch_op.create_index("ix_image_locations_status", ["status"], unique=False)

    op.create_table(
        "image_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("can_share", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "member", name="uq_image_members_image_member"),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("image_members", schema=None) as batch_op:
        batch_op.create_index("ix_image_members_member_status", ["member", "status"], unique=False)

    op.create_table(
        "image_properties",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", LONG_TEXT, nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "name"),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("image_properties", schema=None) as batch_op:
        batch_op.create_index("ix_image_properties_name", ["name"], unique=False)

    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "value"),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("image_tags", schema=None) as batch_op:
        batch_op.create_index("ix_image_tags_value", ["value"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_image_tags_value")

    op.drop_table("image_tags")
    with op.batch_alter_table("image_properties", schema=None) as batch_op:
        batch_op.drop_index("ix_image_properties_name")

    op.drop_table("image_properties")
    with op.batch_alter_table("image_members", schema=None) as batch_op:
        batch_op.drop_index("ix_image_members_member_status")

    op.drop_table("image_members")
    with op.batch_alter_table("image_locations", schema=None) as batch_op:
        batch_op.drop_index("ix_image_locations_status")
        batch_op.drop_index("ix_image_locations_image_id")

    op.drop_table("image_locations")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_updated_at")
        batch_op.drop_index("ix_images_status")
        batch_op.drop_index("ix_images_owner")
        batch_op.drop_index("ix_images_os_hash_value")
        batch_op.drop_index("ix_images_name")
        batch_op.drop_index("ix_images_deleted_visibility")
        batch_op.drop_index("ix_images_created_at")

    op.drop_table("images")
