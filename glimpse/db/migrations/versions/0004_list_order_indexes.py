"""indexes that serve the default list orders without sorting, and location lookups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:00:00

A list page is ``WHERE deleted = false ... ORDER BY created_at DESC, id DESC
LIMIT n`` (updated_at for the other common order). With the ordering columns
after ``deleted`` in one index the database walks the index and stops after
``n`` visible rows, instead of sorting every live image for each page.

Locations are read by image and status together; with only single-column
indexes SQLite picked the status one and scanned every active location.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_deleted_created_at_id", "images",
                    ["deleted", "created_at", "id"])
    op.create_index("ix_images_deleted_updated_at_id", "images",
                    ["deleted", "updated_at", "id"])
    op.create_index("ix_image_locations_image_id_status", "image_locations",
                    ["image_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_image_locations_image_id_status", table_name="image_locations")
    op.drop_index("ix_images_deleted_updated_at_id", table_name="images")
    op.drop_index("ix_images_deleted_created_at_id", table_name="images")
