"""SQLAlchemy models. One schema for SQLite, PostgreSQL and MariaDB.

Changing a table means adding an Alembic migration in db/migrations/versions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# MariaDB's DATETIME drops fractions of a second unless asked; keep microseconds
# everywhere so created_at ordering and marker pagination agree on all databases.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


# MariaDB: binary collation so ids, property names, tags and members compare
# case-sensitively, as on PostgreSQL and SQLite; MEDIUMTEXT for long values.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class Image(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    disk_format: Mapped[str | None] = mapped_column(String(20))
    container_format: Mapped[str | None] = mapped_column(String(20))
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    visibility: Mapped[str] = mapped_column(String(20), nullable=False)
    checksum: Mapped[str | None] = mapped_column(String(32))
    os_hash_algo: Mapped[str | None] = mapped_column(String(64))
    os_hash_value: Mapped[str | None] = mapped_column(String(128))
    min_disk: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    owner: Mapped[str | None] = mapped_column(String(255))
    protected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    os_hidden: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        Index("ix_images_deleted_visibility", "deleted", "visibility"),
        Index("ix_images_owner", "owner"),
        Index("ix_images_status", "status"),
        Index("ix_images_name", "name"),
        Index("ix_images_created_at", "created_at"),
        Index("ix_images_updated_at", "updated_at"),
        Index("ix_images_os_hash_value", "os_hash_value"),
        Index("ix_images_deleted_created_at_id", "deleted", "created_at", "id"),
        Index("ix_images_deleted_updated_at_id", "deleted", "updated_at", "id"),
        MYSQL_TABLE,
    )


class ImageProperty(Base):
    __tablename__ = "image_properties"

    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(LongText, nullable=False)

    __table_args__ = (Index("ix_image_properties_name", "name"), MYSQL_TABLE)


class ImageTag(Base):
    __tablename__ = "image_tags"

    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (Index("ix_image_tags_value", "value"), MYSQL_TABLE)


class ImageMember(Base):
    __tablename__ = "image_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), nullable=False
    )
    member: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    can_share: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)

    __table_args__ = (
        UniqueConstraint("image_id", "member", name="uq_image_members_image_member"),
        Index("ix_image_members_member_status", "member", "status"),
        MYSQL_TABLE,
    )


class ImageLocation(Base):
    __tablename__ = "image_locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), nullable=False
    )
    value: Mapped[str] = mapped_column(LongText, nullable=False)
    meta_data: Mapped[str] = mapped_column(LongText, nullable=False, default="{}")
    # active | pending_delete | deleted
    status: Mapped[str] = mapped_column(String(30), nullable=False, default="active")
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)

    __table_args__ = (
        Index("ix_image_locations_image_id", "image_id"),
        Index("ix_image_locations_image_id_status", "image_id", "status"),
        Index("ix_image_locations_status", "status"),
        MYSQL_TABLE,
    )


class Task(Base):
    """An asynchronous task: an image import (api_image_import) or a legacy
    tasks-API import. Glance splits input/result/message into a task_info
    table; one table is enough here."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(30), nullable=False)
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    owner: Mapped[str | None] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    input: Mapped[str | None] = mapped_column(LongText)      # JSON
    result: Mapped[str | None] = mapped_column(LongText)     # JSON
    message: Mapped[str] = mapped_column(LongText, nullable=False, default="")
    # Which worker runs the task, so a restarted worker can tell its own dead tasks.
    host: Mapped[str | None] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(255))
    # Roles of the requester (comma-separated), for plugins; never shown.
    roles: Mapped[str | None] = mapped_column(LongText)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        Index("ix_tasks_owner", "owner"),
        Index("ix_tasks_image_id", "image_id"),
        Index("ix_tasks_status", "status"),
        Index("ix_tasks_created_at", "created_at"),
        Index("ix_tasks_updated_at", "updated_at"),
        MYSQL_TABLE,
    )


class Lease(Base):
    """Ownership of a long operation that holds an image in a transient status
    (upload, stage, import task, data removal of a delete). The owning worker
    renews ``expires_at`` while it lives; once it has passed, any node may undo
    or finish the operation (glimpse.services.recovery)."""

    __tablename__ = "leases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # upload | stage | import | delete
    operation: Mapped[str] = mapped_column(String(20), nullable=False)
    image_id: Mapped[str | None] = mapped_column(String(36))
    task_id: Mapped[str | None] = mapped_column(String(36))
    # The machine and staging directory of the owner, and "<pid>/<token>".
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    worker: Mapped[str] = mapped_column(String(255), nullable=False)
    # JSON: the store written to, the locations a delete still has to remove.
    detail: Mapped[str] = mapped_column(LongText, nullable=False, default="{}")
    expires_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)

    __table_args__ = (
        Index("ix_leases_expires_at", "expires_at"),
        Index("ix_leases_worker", "worker"),
        Index("ix_leases_image_id", "image_id"),
        MYSQL_TABLE,
    )


# ---------------------------------------------------------------- image cache
# Records of the API nodes' image caches (image_cache_driver = centralized_db):
# each node, named by its worker_self_reference_url, keeps its own rows. No
# foreign key to images: a node's copy outlives the image row until that node
# evicts it, and an older release deleting images never trips over these rows.


class CacheNode(Base):
    __tablename__ = "cache_nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(255), nullable=False)

    __table_args__ = (UniqueConstraint("url", name="uq_cache_nodes_url"), MYSQL_TABLE)


class CachedImage(Base):
    __tablename__ = "cached_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("cache_nodes.id", ondelete="CASCADE"), nullable=False)
    image_id: Mapped[str] = mapped_column(String(36), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    checksum: Mapped[str | None] = mapped_column(String(32))
    hits: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_accessed: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    last_modified: Mapped[datetime] = mapped_column(Timestamp, nullable=False)

    __table_args__ = (
        UniqueConstraint("node_id", "image_id", name="uq_cached_images_node_image"),
        MYSQL_TABLE,
    )


# ---------------------------------------------------------------- metadefs
# Metadata definitions (Glance's metadef_* tables). Objects and properties keep
# their JSON-schema-like definitions as JSON text.


class MetadefNamespace(Base):
    __tablename__ = "metadef_namespaces"
    __table_args__ = (UniqueConstraint("namespace", name="uq_metadef_namespaces_namespace"),
                      MYSQL_TABLE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(80), nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(32), nullable=False)
    protected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class MetadefObject(Base):
    __tablename__ = "metadef_objects"
    __table_args__ = (UniqueConstraint("namespace_id", "name", name="uq_metadef_objects_name"),
                      MYSQL_TABLE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    required: Mapped[str | None] = mapped_column(Text)          # JSON list
    json_schema: Mapped[str] = mapped_column(LongText, nullable=False)  # JSON object
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class MetadefProperty(Base):
    __tablename__ = "metadef_properties"
    __table_args__ = (
        UniqueConstraint("namespace_id", "name", name="uq_metadef_properties_name"),
        MYSQL_TABLE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    json_schema: Mapped[str] = mapped_column(LongText, nullable=False)  # JSON object
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class MetadefResourceType(Base):
    __tablename__ = "metadef_resource_types"
    __table_args__ = (UniqueConstraint("name", name="uq_metadef_resource_types_name"),
                      MYSQL_TABLE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    protected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class MetadefNamespaceResourceType(Base):
    __tablename__ = "metadef_namespace_resource_types"
    __table_args__ = (MYSQL_TABLE,)

    resource_type_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_resource_types.id", ondelete="CASCADE"),
        primary_key=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE"), primary_key=True)
    properties_target: Mapped[str | None] = mapped_column(String(80))
    prefix: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class MetadefTag(Base):
    __tablename__ = "metadef_tags"
    __table_args__ = (UniqueConstraint("namespace_id", "name", name="uq_metadef_tags_name"),
                      MYSQL_TABLE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("metadef_namespaces.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
