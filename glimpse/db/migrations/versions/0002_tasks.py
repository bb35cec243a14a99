"""tasks table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# MariaDB: binary collation so ids, property names, tags and members compare
# case-sensitively as on PostgreSQL and SQLite; MEDIUMTEXT for long values.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("input", LONG_TEXT, nullable=True),
        sa.Column("result", LONG_TEXT, nullable=True),
        sa.Column("message", LONG_TEXT, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("roles", LONG_TEXT, nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_owner", ["owner"], unique=False)
        batch_op.create_index("ix_tasks_image_id", ["image_id"], unique=False)
        batch_op.create_index("ix_tasks_status", ["status"], unique=False)
        batch_op.create_index("ix_tasks_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_tasks_updated_at", ["updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_updated_at")
        batch_op.drop_index("ix_tasks_created_at")
        batch_op.drop_index("ix_tasks_status")
        batch_op.drop_index("ix_tasks_image_id")
        batch_op.drop_index("ix_tasks_owner")
    op.drop_table("tasks")
