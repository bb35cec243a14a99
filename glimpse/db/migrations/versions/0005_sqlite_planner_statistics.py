"""SQLite: starting statistics for the query planner

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 04:00:00

Without statistics SQLite assumes every index is equally selective and lists
filtered by name, tag or property walk the whole list-order index. These rows
describe a typical catalogue (a name matches a couple of images, a tag a few
dozen) so the planner starts from the selective index. They are written only
when no statistics exist: an operator's ANALYZE replaces them with real ones.
PostgreSQL and MariaDB keep their own statistics.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, index, "rows rows-per-key-prefix...") as ANALYZE writes them.
STATISTICS = [
    ("images", "sqlite_autoindex_images_1", "10000 1"),
    ("images", "ix_images_deleted_created_at_id", "10000 5000 1 1"),
    ("images", "ix_images_deleted_updated_at_id", "10000 5000 1 1"),
    ("images", "ix_images_created_at", "10000 1"),
    ("images", "ix_images_updated_at", "10000 1"),
    ("images", "ix_images_status", "10000 2000"),
    ("images", "ix_images_owner", "10000 100"),
    ("images", "ix_images_os_hash_value", "10000 1"),
    ("images", "ix_images_name", "10000 2"),
    ("images", "ix_images_deleted_visibility", "10000 5000 2000"),
    ("image_properties", "sqlite_autoindex_image_properties_1", "50000 5 1"),
    ("image_properties", "ix_image_properties_name", "50000 500"),
    ("image_tags", "sqlite_autoindex_image_tags_1", "20000 2 1"),
    ("image_tags", "ix_image_tags_value", "20000 20"),
    ("image_locations", "ix_image_locations_image_id", "10000 1"),
    ("image_locations", "ix_image_locations_status", "10000 5000"),
    ("image_locations", "ix_image_locations_image_id_status", "10000 1 1"),
    ("image_members", "sqlite_autoindex_image_members_1", "1000 2 1"),
    ("image_members", "ix_image_members_member_status", "1000 10 5"),
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.exec_driver_sql("ANALYZE sqlite_master")  # creates sqlite_stat1 if missing
    known = bind.exec_driver_sql(
        "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'images'").scalar()
    if known:
        return
    bind.execute(sa.text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (:t, :i, :s)"),
                 [{"t": t, "i": i, "s": s} for t, i, s in STATISTICS])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl IN "
                             "('images', 'image_properties', 'image_tags', "
                             "'image_locations', 'image_members')")
