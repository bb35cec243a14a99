"""leases: ownership of long operations, for crash recovery

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:30:00

Every operation that holds an image in a transient status (upload, stage,
import task, the data removal of a delete) records its owner and an expiry
here; the owner renews it while it lives. glimpse.services.recovery reverts
or finishes the operations whose lease has expired.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("detail", LONG_TEXT, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index("ix_leases_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_leases_worker", ["worker"], unique=False)
        batch_op.create_index("ix_leases_image_id", ["image_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index("ix_leases_image_id")
        batch_op.drop_index("ix_leases_worker")
        batch_op.drop_index("ix_leases_expires_at")
    op.drop_table("leases")
