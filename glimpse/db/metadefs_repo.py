"""Database access for metadata definitions (namespaces, objects, properties,
resource types and their associations, tags).

Functions take an open Session; the service layer owns transactions. Rows are
returned as ORM objects (sessions do not expire them on commit). Children are
deleted explicitly: SQLite does not enforce ON DELETE CASCADE by default.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from glimpse.db.models import (
    MetadefNamespace,
    MetadefNamespaceResourceType,
    MetadefObject,
    MetadefProperty,
    MetadefResourceType,
    MetadefTag,
)
from glimpse.db.repository import utcnow

NAMESPACE_SORT_KEYS = frozenset({
    "id", "namespace", "display_name", "description", "visibility", "protected", "owner",
    "created_at", "updated_at",
})

# The kinds of things a namespace holds, by the URL segment that names them.
CHILD_MODELS: dict[str, type[MetadefObject] | type[MetadefProperty] | type[MetadefTag]] = {
    "objects": MetadefObject, "properties": MetadefProperty, "tags": MetadefTag,
}


# ---------------------------------------------------------------- namespaces


def get_namespace(session: Session, name: str) -> MetadefNamespace | None:
    return session.scalars(
        select(MetadefNamespace).where(MetadefNamespace.namespace == name)).first()


def list_namespaces(
    session: Session, *, visible_to: str | None, all_visible: bool,
    visibility: str | None = None, resource_types: list[str] | None = None,
    sort_key: str = "created_at", sort_dir: str = "desc", limit: int | None = None,
    marker: MetadefNamespace | None = None,
) -> list[MetadefNamespace]:
    """Namespaces ordered by sort_key then id; non-admins see public ones and
    their own project's (``visible_to``)."""
    query = select(MetadefNamespace)
    if not all_visible:
        query = query.where(or_(MetadefNamespace.visibility == "public",
                                MetadefNamespace.owner == visible_to)
                            if visible_to else MetadefNamespace.visibility == "public")
    if visibility:
        query = query.where(MetadefNamespace.visibility == visibility)
    if resource_types:
        assoc = (select(MetadefNamespaceResourceType.namespace_id)
                 .join(MetadefResourceType,
                       MetadefResourceType.id == MetadefNamespaceResourceType.resource_type_id)
                 .where(MetadefResourceType.name.in_(resource_types)))
        query = query.where(MetadefNamespace.id.in_(assoc))
    column = getattr(MetadefNamespace, sort_key)
    desc = sort_dir == "desc"
    if marker is not None:
        value = getattr(marker, sort_key)
        after = (column < value) if desc else (column > value)
        tie = (MetadefNamespace.id < marker.id) if desc else (MetadefNamespace.id > marker.id)
        if value is None:
            query = query.where(or_(column.is_not(None), tie) if desc
                                else and_(column.is_(None), tie))
        else:
            query = query.where(or_(after, and_(column == value, tie)))
    order = [column.desc(), MetadefNamespace.id.desc()] if desc else [
        column.asc(), MetadefNamespace.id.asc()]
    query = query.order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_namespaces(session: Session, owner: str | None) -> int:
    return session.scalar(select(func.count()).select_from(MetadefNamespace)
                          .where(MetadefNamespace.owner == owner)) or 0


def create_namespace(session: Session, values: dict[str, Any]) -> MetadefNamespace:
    now = utcnow()
    row = MetadefNamespace(created_at=now, updated_at=now, **values)
    session.add(row)
    session.flush()
    return row


def update_namespace(session: Session, row: MetadefNamespace,
                     values: dict[str, Any]) -> MetadefNamespace:
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_children(session: Session, namespace_id: int, kind: str) -> None:
    model = CHILD_MODELS[kind]
    session.execute(delete(model).where(model.namespace_id == namespace_id))


def delete_namespace(session: Session, row: MetadefNamespace) -> None:
    for kind in CHILD_MODELS:
        delete_children(session, row.id, kind)
    session.execute(delete(MetadefNamespaceResourceType).where(
        MetadefNamespaceResourceType.namespace_id == row.id))
    session.execute(delete(MetadefNamespace).where(MetadefNamespace.id == row.id))


# ---------------------------------------------------------------- objects, properties, tags


def list_children(session: Session, namespace_id: int, kind: str) -> list[Any]:
    model = CHILD_MODELS[kind]
    return list(session.scalars(select(model).where(model.namespace_id == namespace_id)
                                .order_by(model.created_at, model.id)))


def count_children(session: Session, namespace_id: int, kind: str) -> int:
    model = CHILD_MODELS[kind]
    return session.scalar(select(func.count()).select_from(model)
                          .where(model.namespace_id == namespace_id)) or 0


def get_child(session: Session, namespace_id: int, kind: str, name: str) -> Any:
    model = CHILD_MODELS[kind]
    return session.scalars(select(model).where(model.namespace_id == namespace_id,
                                               model.name == name)).first()


def add_child(session: Session, namespace_id: int, kind: str, values: dict[str, Any]) -> Any:
    now = utcnow()
    row = CHILD_MODELS[kind](namespace_id=namespace_id, created_at=now, updated_at=now,
                             **values)
    session.add(row)
    session.flush()
    return row


def update_child(session: Session, row: Any, values: dict[str, Any]) -> Any:
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_child(session: Session, row: Any) -> None:
    model = type(row)
    session.execute(delete(model).where(model.id == row.id))


# ---------------------------------------------------------------- resource types


def list_resource_types(session: Session) -> list[MetadefResourceType]:
    return list(session.scalars(select(MetadefResourceType)
                                .order_by(MetadefResourceType.name)))


def get_resource_type(session: Session, name: str) -> MetadefResourceType | None:
    return session.scalars(select(MetadefResourceType)
                           .where(MetadefResourceType.name == name)).first()


def ensure_resource_type(session: Session, name: str) -> MetadefResourceType:
    row = get_resource_type(session, name)
    if row is None:
        now = utcnow()
        row = MetadefResourceType(name=name, protected=False, created_at=now, updated_at=now)
        session.add(row)
        session.flush()
    return row


def list_associations(
    session: Session, namespace_id: int,
) -> list[tuple[MetadefNamespaceResourceType, str]]:
    rows = session.execute(
        select(MetadefNamespaceResourceType, MetadefResourceType.name)
        .join(MetadefResourceType,
              MetadefResourceType.id == MetadefNamespaceResourceType.resource_type_id)
        .where(MetadefNamespaceResourceType.namespace_id == namespace_id)
        .order_by(MetadefNamespaceResourceType.created_at, MetadefResourceType.name))
    return [(assoc, name) for assoc, name in rows]


def get_association(session: Session, namespace_id: int,
                    resource_type_id: int) -> MetadefNamespaceResourceType | None:
    return session.get(MetadefNamespaceResourceType, (resource_type_id, namespace_id))


def add_association(session: Session, namespace_id: int, resource_type_id: int,
                    prefix: str | None, properties_target: str | None,
                    ) -> MetadefNamespaceResourceType:
    now = utcnow()
    row = MetadefNamespaceResourceType(
        namespace_id=namespace_id, resource_type_id=resource_type_id, prefix=prefix,
        properties_target=properties_target, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def delete_association(session: Session, row: MetadefNamespaceResourceType) -> None:
    session.execute(delete(MetadefNamespaceResourceType).where(
        MetadefNamespaceResourceType.namespace_id == row.namespace_id,
        MetadefNamespaceResourceType.resource_type_id == row.resource_type_id))


def delete_unprotected_resource_types(session: Session) -> None:
    session.execute(delete(MetadefResourceType).where(
        MetadefResourceType.protected.is_(False)).where(
        MetadefResourceType.id.not_in(select(MetadefNamespaceResourceType.resource_type_id))))
