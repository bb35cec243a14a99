"""image cache: the centralized_db driver's records

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:30:00

Expand only: two new tables, nothing existing is altered, so a node still
running the previous release keeps serving from a database at this revision.
Each API node (by worker_self_reference_url) has one cache_nodes row and one
cached_images row per image copy it holds.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "cache_nodes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("url", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url", name="uq_cache_nodes_url"),
        **MYSQL_TABLE,
    )
    op.create_table(
        "cached_images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=32), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("last_accessed", TS, nullable=False),
        sa.Column("last_modified", TS, nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["cache_nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("node_id", "image_id", name="uq_cached_images_node_image"),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("cached_images")
    op.drop_table("cache_nodes")
