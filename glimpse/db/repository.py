"""Database access for images, properties, tags, members and locations.

Functions take an open Session and return domain records; the service layer
owns transactions. Status changes are compare-and-set (``set_status``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from glimpse.context import RequestContext
from glimpse.db.models import Image, ImageLocation, ImageMember, ImageProperty, ImageTag
from glimpse.domain.images import ImageRecord
from glimpse.errors import BadRequest, Conflict

IMAGE_COLUMNS = (
    "id", "name", "status", "visibility", "owner", "protected", "os_hidden", "disk_format",
    "container_format", "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
    "min_disk", "min_ram", "created_at", "updated_at",
)

SORT_KEYS = frozenset({
    "name", "status", "container_format", "disk_format", "size", "virtual_size", "id",
    "created_at", "updated_at", "min_disk", "min_ram", "owner", "visibility", "protected",
    "os_hidden",
})

# Nullable sort keys sort as if NULL were the smallest value, the same on
# every database (they disagree on where NULLs go), so markers work everywhere.
_NULL_SENTINEL: dict[str, Any] = {
    "name": "", "container_format": "", "disk_format": "", "owner": "",
    "size": -1, "virtual_size": -1,
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _record_from_row(row: Any, properties: dict[str, str] | None = None,
                     tags: list[str] | None = None, locations: list[dict] | None = None,
                     ) -> ImageRecord:
    """An ImageRecord from a Core row of IMAGE_COLUMNS (in that order)."""
    return ImageRecord(*row, properties=properties or {}, tags=tags or [],
                       locations=locations or [])


if tuple(f.name for f in fields(ImageRecord))[:len(IMAGE_COLUMNS)] != IMAGE_COLUMNS:
    raise ImportError("ImageRecord fields must start with IMAGE_COLUMNS, in order")

# Hot paths run prebuilt Core statements on the session's connection: the ORM's
# per-statement work costs more than SQLite's own execution of these queries.
_IMAGES = Image.__table__
_PROPS = ImageProperty.__table__
_TAGS = ImageTag.__table__
_LOCS = ImageLocation.__table__
_IMAGE_COLS = [_IMAGES.c[c] for c in IMAGE_COLUMNS]
_INSERT_IMAGE = insert(_IMAGES)
_INSERT_PROPERTY = insert(ImageProperty.__table__)
_INSERT_TAG = insert(ImageTag.__table__)
_BY_ID = select(*_IMAGE_COLS).where(_IMAGES.c.id == bindparam("id"),
                                    _IMAGES.c.deleted == false())
_BY_ID_ANY = select(*_IMAGE_COLS).where(_IMAGES.c.id == bindparam("id"))
_BY_ID_FOR_UPDATE = _BY_ID.with_for_update()


def _children_of(match: Any) -> Any:
    """Properties, tags and active locations of the images ``match(image_id
    column)`` selects, in one round trip: rows of (image_id, kind, a, b, ordinal);
    locations keep their id as ordinal, the order they were added in."""
    return union_all(
        select(_PROPS.c.image_id, cast(literal("p"), String(1)), _PROPS.c.name,
               _PROPS.c.value, cast(literal(0), Integer))
        .where(match(_PROPS.c.image_id)),
        select(_TAGS.c.image_id, cast(literal("t"), String(1)), _TAGS.c.value,
               cast(literal(None), Text), cast(literal(0), Integer))
        .where(match(_TAGS.c.image_id)),
        select(_LOCS.c.image_id, cast(literal("l"), String(1)), _LOCS.c.value,
               _LOCS.c.meta_data, _LOCS.c.id)
        .where(match(_LOCS.c.image_id), _LOCS.c.status == "active"),
    )


# An expanding IN costs a statement rewrite per call; one image needs none.
_CHILDREN_OF_ONE = _children_of(lambda col: col == bindparam("id"))
_CHILDREN_OF_MANY = _children_of(lambda col: col.in_(bindparam("ids", expanding=True)))


def _aggregates(dialect: str, image_id: Any) -> list[Any]:
    """Properties, tags and active locations of the image whose id is
    ``image_id`` (a column of the enclosing query), as three JSON arrays: on
    PostgreSQL and MariaDB the image row and its children come back in one
    statement, so one round trip (and one consistent snapshot) per image or page."""
    agg, arr = ((func.json_agg, func.json_build_array) if dialect == "postgresql"
                else (func.json_arrayagg, func.json_array))
    return [
        select(agg(arr(_PROPS.c.name, _PROPS.c.value)))
        .where(_PROPS.c.image_id == image_id).scalar_subquery().label("agg_props"),
        select(agg(_TAGS.c.value)).where(_TAGS.c.image_id == image_id)
        .scalar_subquery().label("agg_tags"),
        select(agg(arr(_LOCS.c.id, _LOCS.c.value, _LOCS.c.meta_data)))
        .where(_LOCS.c.image_id == image_id, _LOCS.c.status == "active")
        .scalar_subquery().label("agg_locs"),
    ]


def _json(value: Any) -> list:
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str | bytes) else value


def _record_from_aggregated(row: Any, with_locations: bool = True) -> ImageRecord:
    """An ImageRecord from a row of IMAGE_COLUMNS followed by ``_aggregates``."""
    n = len(IMAGE_COLUMNS)
    props, tags, locs = (_json(v) for v in row[n:n + 3])
    locations = [{"id": i, "url": url, "metadata": json.loads(meta or "{}"), "status": "active"}
                 for i, url, meta in sorted(locs, key=lambda loc: loc[0])] if with_locations else []
    return ImageRecord(*row[:n], properties=dict(props), tags=sorted(tags), locations=locations)


# MariaDB builds JSON_ARRAYAGG (like GROUP_CONCAT) in an internal temporary
# table, on disk (Aria) when an argument is a TEXT column: a GET cost two such
# tables, and under 32 clients their files made requests queue (issue 13).
# There one image and its children come back instead as one UNION ALL, which
# MariaDB streams without a temporary table: the image row (children columns
# NULL), then one row per child (image columns NULL but the id). One statement
# still, so one consistent snapshot. (List pages keep the aggregates: their
# two temporary tables serve the whole page; decision 0004.)


def _with_child_columns(head: Any) -> Any:
    """``head`` (the image rows) with the child columns, NULL, typed for the union."""
    return head.add_columns(cast(literal_column("NULL"), String(1)).label("kind"),
                            cast(literal_column("NULL"), Text).label("a"),
                            cast(literal_column("NULL"), Text).label("b"),
                            cast(literal_column("NULL"), Integer).label("ordinal"))


def _union_with_children(head: Any, match: Any, width: int) -> Any:
    """``head``, a select of ``width`` columns starting with the image id,
    followed by the children of the images ``match(image_id column)`` selects."""
    def branch(table: Any, kind: str, a: Any, b: Any, ordinal: Any, *where: Any) -> Any:
        pad = [literal_column("NULL").label(f"pad{i}") for i in range(1, width)]
        return select(table.c.image_id, *pad, literal_column(f"'{kind}'").label("kind"),
                      a, b, ordinal).where(match(table.c.image_id), *where)
    # In parentheses: MariaDB takes FOR UPDATE in a union's branch only so.
    return union_all(
        _with_child_columns(head).self_group(),
        branch(_PROPS, "p", _PROPS.c.name, _PROPS.c.value, literal_column("0")),
        branch(_TAGS, "t", _TAGS.c.value, literal_column("NULL"), literal_column("0")),
        branch(_LOCS, "l", _LOCS.c.value, _LOCS.c.meta_data, _LOCS.c.id,
               _LOCS.c.status == "active"))


def _records_from_union(rows: Iterable[Any], width: int, with_locations: bool = True,
                        ) -> list[tuple[Any, ImageRecord]]:
    """(head row, record) per image row of a ``_union_with_children`` result,
    in the order the image rows came."""
    heads: list[Any] = []
    props: dict[str, dict[str, str]] = {}
    tags: dict[str, list[str]] = {}
    locs: dict[str, list[tuple[int, dict]]] = {}
    for row in rows:
        kind = row[width]
        if kind is None:
            heads.append(row)
        elif kind == "p":
            props.setdefault(row[0], {})[row[width + 1]] = row[width + 2]
        elif kind == "t":
            tags.setdefault(row[0], []).append(row[width + 1])
        elif with_locations:
            locs.setdefault(row[0], []).append((row[width + 3], {
                "id": row[width + 3], "url": row[width + 1],
                "metadata": json.loads(row[width + 2] or "{}"), "status": "active"}))
    n = len(IMAGE_COLUMNS)
    return [(head, ImageRecord(
        *head[:n], properties=props.get(head[0], {}), tags=sorted(tags.get(head[0], [])),
        locations=[d for _, d in sorted(locs.get(head[0], []), key=lambda t: t[0])]))
        for head in heads]


_PAGE_AGGREGATES: dict[str, list[Any]] = {}


def _page_aggregates(dialect: str) -> list[Any]:
    aggs = _PAGE_AGGREGATES.get(dialect)
    if aggs is None:
        aggs = _PAGE_AGGREGATES[dialect] = _aggregates(dialect, _IMAGES.c.id)
    return aggs


_DERIVED_PAGE: dict[str, tuple[dict[str, Any], list[Any]]] = {}


def _derived_page(dialect: str) -> tuple[dict[str, Any], list[Any]]:
    """The columns of a derived table named ``page`` (of IMAGE_COLUMNS) and
    the aggregates of its rows, built once: as typed textual columns, so a
    request's statement is not a select over a new subquery's column proxies
    (building those and their aggregates cost as much as the rest of the
    statement, about 0.7 ms a list on MariaDB)."""
    found = _DERIVED_PAGE.get(dialect)
    if found is None:
        columns = {c: literal_column(f"page.{c}", _IMAGES.c[c].type) for c in IMAGE_COLUMNS}
        found = _DERIVED_PAGE[dialect] = (columns, _aggregates(dialect, columns["id"]))
    return found


_AGG_BY_ID: dict[tuple[str, bool, bool, bool], Any] = {}


def _aggregated_by_id(dialect: str, include_deleted: bool, for_update: bool,
                      member: bool) -> Any:
    """One image, its children and (with ``member``) whether project
    ``:member`` is a member of it, in one statement (built once per shape)."""
    key = (dialect, include_deleted, for_update, member)
    stmt = _AGG_BY_ID.get(key)
    if stmt is None:
        union = dialect != "postgresql"
        cols = [*_IMAGE_COLS, *([] if union else _aggregates(dialect, _IMAGES.c.id))]
        if member:
            cols.append(exists().where(_MEMBERS.c.image_id == _IMAGES.c.id,
                                       _MEMBERS.c.member == bindparam("member"))
                        .label("is_member"))
        stmt = select(*cols).where(_IMAGES.c.id == bindparam("id"))
        if not include_deleted:
            stmt = stmt.where(_IMAGES.c.deleted == false())
        if for_update:
            stmt = stmt.with_for_update(of=_IMAGES) if dialect == "postgresql" \
                else stmt.with_for_update()
        if union:
            stmt = _union_with_children(stmt, lambda col: col == bindparam("id"), len(cols))
        _AGG_BY_ID[key] = stmt
    return stmt


# Read paths take a Session or, cheaper, a Connection (Database.reading()).
Reader = Session | Connection


def _conn(reader: Reader) -> Connection:
    return reader.connection() if isinstance(reader, Session) else reader


def _children(session: Reader, ids: Sequence[str], with_locations: bool = True,
              ) -> tuple[dict[str, dict[str, str]], dict[str, list[str]], dict[str, list[dict]]]:
    props: dict[str, dict[str, str]] = {}
    tags: dict[str, list[str]] = {}
    locs: dict[str, list[tuple[int, dict]]] = {}
    if ids:
        if len(ids) == 1:
            rows = _conn(session).execute(_CHILDREN_OF_ONE, {"id": ids[0]}).all()
        else:
            rows = _conn(session).execute(_CHILDREN_OF_MANY, {"ids": list(ids)}).all()
        for image_id, kind, a, b, ordinal in rows:
            if kind == "p":
                props.setdefault(image_id, {})[a] = b
            elif kind == "t":
                tags.setdefault(image_id, []).append(a)
            elif with_locations:
                locs.setdefault(image_id, []).append(
                    (ordinal, {"id": ordinal, "url": a, "metadata": json.loads(b or "{}"),
                               "status": "active"}))
    for values in tags.values():
        values.sort()
    return props, tags, {k: [d for _, d in sorted(v, key=lambda t: t[0])]
                         for k, v in locs.items()}


# ---------------------------------------------------------------- images


def create_image(session: Session, values: dict[str, Any], properties: dict[str, str],
                 tags: Iterable[str]) -> ImageRecord:
    """Insert an image with its properties and tags; returns it as stored."""
    now = utcnow()
    conn = _conn(session)
    row = {"created_at": now, "updated_at": now, "deleted": False, **values}
    image_id = values["id"]
    tag_list = sorted(set(tags))
    try:
        conn.execute(_INSERT_IMAGE, [row])
        if properties:
            conn.execute(_INSERT_PROPERTY, [
                {"image_id": image_id, "name": k, "value": v} for k, v in properties.items()])
        if tag_list:
            conn.execute(_INSERT_TAG, [{"image_id": image_id, "value": t} for t in tag_list])
    except IntegrityError:
        raise Conflict(f"Image ID {image_id} already exists!") from None
    stored = {c.name: row.get(c.name, c.default.arg if c.default is not None else None)
              for c in _IMAGE_COLS}
    return ImageRecord(**stored, properties=dict(properties), tags=tag_list)


_EXISTS_ANY = select(_IMAGES.c.id).where(_IMAGES.c.id == bindparam("id"))


def image_exists_any(session: Reader, image_id: str) -> bool:
    """True if the id was ever used, deleted images included (ids are never reused)."""
    return _conn(session).execute(_EXISTS_ANY, {"id": image_id}).first() is not None


def readable_image_ids(session: Reader, image_ids: Sequence[str]) -> list[str]:
    """Those of ``image_ids`` that are images with data one may still read (active or
    deactivated, not deleted): the image cache keeps copies of these only."""
    if not image_ids:
        return []
    query = select(Image.id).where(Image.id.in_(list(image_ids)), Image.deleted.is_(False),
                                   Image.status.in_(("active", "deactivated")))
    return list(_conn(session).execute(query).scalars())


def get_image(session: Reader, image_id: str, *, with_locations: bool = True,
              include_deleted: bool = False, for_update: bool = False) -> ImageRecord | None:
    """One image with its properties, tags and locations (two queries).

    ``for_update`` locks the row until the transaction ends (PostgreSQL and
    MariaDB; SQLite's write transactions are already exclusive), so concurrent
    read-modify-write changes of one image run one after the other."""
    return find_image(session, image_id, with_locations=with_locations,
                      include_deleted=include_deleted, for_update=for_update)[0]


def find_image(session: Reader, image_id: str, member: str | None = None, *,
               with_locations: bool = True, include_deleted: bool = False,
               for_update: bool = False) -> tuple[ImageRecord | None, bool]:
    """``get_image``, and whether project ``member`` is a consumer of the image:
    it is shared, owned by another project, and has a membership of ``member``
    (any status). On PostgreSQL and MariaDB that is one statement; on SQLite,
    where a statement costs microseconds, two (three to look up a membership)."""
    conn = _conn(session)
    dialect = conn.dialect.name
    if dialect != "sqlite":
        params = {"id": image_id} if member is None else {"id": image_id, "member": member}
        stmt = _aggregated_by_id(dialect, include_deleted, for_update, member is not None)
        if dialect == "postgresql":
            row = conn.execute(stmt, params).first()
            if row is None:
                return None, False
            image = _record_from_aggregated(row, with_locations)
            return image, bool(member is not None and row[-1] and _consumer(image, member))
        width = len(IMAGE_COLUMNS) + (member is not None)
        found = _records_from_union(conn.execute(stmt, params), width, with_locations)
        if not found:
            return None, False
        row, image = found[0]
        return image, bool(member is not None and row[width - 1] and _consumer(image, member))
    stmt = _BY_ID_ANY if include_deleted else (_BY_ID_FOR_UPDATE if for_update else _BY_ID)
    row = conn.execute(stmt, {"id": image_id}).first()
    if row is None:
        return None, False
    props, tags, locs = _children(session, [image_id], with_locations)
    image = _record_from_row(row, props.get(image_id), tags.get(image_id), locs.get(image_id))
    is_member = (member is not None and _consumer(image, member)
                 and get_member(session, image_id, member) is not None)
    return image, is_member


def _consumer(image: ImageRecord, project: str) -> bool:
    return image.visibility == "shared" and image.owner != project


def update_image(session: Session, image_id: str, values: dict[str, Any],
                 expected_status: str | None = None) -> bool:
    """Update columns; with ``expected_status`` this is a compare-and-set."""
    values = {**values, "updated_at": utcnow()}
    stmt = update(Image).where(Image.id == image_id, Image.deleted == false())
    if expected_status is not None:
        stmt = stmt.where(Image.status == expected_status)
    result = _conn(session).execute(stmt.values(**values))
    return result.rowcount == 1


def set_status(session: Session, image_id: str, expected: str, new: str,
               **values: Any) -> bool:
    return update_image(session, image_id, {"status": new, **values}, expected_status=expected)


def mark_deleted(session: Session, image_id: str, expected: str, new_status: str) -> bool:
    now = utcnow()
    result = _conn(session).execute(
        update(Image)
        .where(Image.id == image_id, Image.status == expected, Image.deleted == false())
        .values(status=new_status, deleted=True, deleted_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def touch(session: Session, image_id: str) -> None:
    _conn(session).execute(update(Image).where(Image.id == image_id).values(updated_at=utcnow())
                    .execution_options(synchronize_session=False))


def set_properties(session: Session, image_id: str, to_set: dict[str, str],
                   to_remove: Iterable[str]) -> None:
    """Remove ``to_remove`` and set ``to_set`` (insert or overwrite): one
    statement each, none when there is nothing to do."""
    conn = _conn(session)
    remove = set(to_remove) - set(to_set)
    if remove:
        conn.execute(delete(ImageProperty).where(
            ImageProperty.image_id == image_id, ImageProperty.name.in_(remove)))
    if to_set:
        conn.execute(_upsert_property(conn.dialect.name), [
            {"image_id": image_id, "name": k, "value": v} for k, v in to_set.items()])


_UPSERT_PROPERTY: dict[str, Any] = {}


def _dialect_insert(dialect: str) -> Any:
    """The dialect's own ``insert`` construct, which knows its conflict clauses."""
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _upsert_property(dialect: str) -> Any:
    stmt = _UPSERT_PROPERTY.get(dialect)
    if stmt is None:
        ins = _dialect_insert(dialect)(_PROPS)
        if dialect in ("mysql", "mariadb"):
            stmt = ins.on_duplicate_key_update(value=ins.inserted.value)
        else:
            stmt = ins.on_conflict_do_update(index_elements=[_PROPS.c.image_id, _PROPS.c.name],
                                             set_={"value": ins.excluded.value})
        _UPSERT_PROPERTY[dialect] = stmt
    return stmt


def patch_image(session: Session, image: ImageRecord, core: dict[str, Any],
                properties: dict[str, str], tags: Iterable[str]) -> ImageRecord | None:
    """Write a PATCH's outcome over ``image`` as read in this transaction (with
    its row locked) and return the image as now stored, without reading it back;
    None if the image went away. Only what changed is written: on PostgreSQL in
    one statement (data-modifying CTEs), elsewhere one statement per kind of change."""
    now = utcnow()
    change = _PatchChange(image, properties, sorted(set(tags)))
    conn = _conn(session)
    image_update = (update(_IMAGES).where(_IMAGES.c.id == image.id, _IMAGES.c.deleted == false())
                    .values(**core, updated_at=now))
    if conn.dialect.name == "postgresql":
        if conn.execute(_patch_in_one_statement(image_update, change)).scalar() != 1:
            return None
    else:
        if conn.execute(image_update).rowcount != 1:
            return None
        set_properties(session, image.id, change.props_to_set, change.props_removed)
        if change.tags_removed:
            conn.execute(delete(_TAGS).where(_TAGS.c.image_id == image.id,
                                             _TAGS.c.value.in_(change.tags_removed)))
        if change.tags_added:
            conn.execute(_insert_tag_if_absent(conn.dialect.name),
                         [{"image_id": image.id, "value": t} for t in change.tags_added])
    return replace(image, **core, updated_at=now, properties=dict(properties),
                   tags=change.tags)


@dataclass
class _PatchChange:
    """What a PATCH changes in an image's properties and tags."""

    props_to_set: dict[str, str]
    props_removed: list[str]
    tags: list[str]
    tags_added: list[str]
    tags_removed: list[str]

    def __init__(self, image: ImageRecord, properties: dict[str, str], tags: list[str]):
        self.props_to_set = {k: v for k, v in properties.items()
                             if image.properties.get(k) != v}
        self.props_removed = sorted(set(image.properties) - set(properties))
        self.tags = tags
        self.tags_added = sorted(set(tags) - set(image.tags))
        self.tags_removed = sorted(set(image.tags) - set(tags))


def _patch_in_one_statement(image_update: Any, change: _PatchChange) -> Any:
    """PostgreSQL: the image update and every child change as CTEs of one
    statement, which returns how many image rows were updated (the children
    are changed only if that is 1). The CTEs touch disjoint rows.

    New properties and tags come as array parameters unnested in the statement
    (not as a VALUES list of literals), so that the statement's shape depends
    only on which kinds of change there are and its compiled form is cached:
    compiling it took most of a PATCH's client CPU."""
    from sqlalchemy import ARRAY, column, literal
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    updated = image_update.returning(_IMAGES.c.id).cte("updated_image")
    target = select(updated.c.id)
    ctes = []
    if change.props_removed:
        ctes.append(delete(_PROPS).where(_PROPS.c.image_id.in_(target),
                                         _PROPS.c.name.in_(change.props_removed))
                    .returning(_PROPS.c.name).cte("removed_props"))
    if change.props_to_set:
        rows = func.unnest(literal(list(change.props_to_set), ARRAY(String)),
                           literal(list(change.props_to_set.values()), ARRAY(Text))
                           ).table_valued(column("name", String), column("value", Text),
                                          name="new_props").render_derived()
        ins = pg_insert(_PROPS).from_select(
            ["image_id", "name", "value"],
            select(updated.c.id, rows.c.name, rows.c.value).select_from(updated.join(rows, true())))
        ctes.append(ins.on_conflict_do_update(index_elements=[_PROPS.c.image_id, _PROPS.c.name],
                                              set_={"value": ins.excluded.value})
                    .returning(_PROPS.c.name).cte("set_props"))
    if change.tags_removed:
        ctes.append(delete(_TAGS).where(_TAGS.c.image_id.in_(target),
                                        _TAGS.c.value.in_(change.tags_removed))
                    .returning(_TAGS.c.value).cte("removed_tags"))
    if change.tags_added:
        rows = func.unnest(literal(change.tags_added, ARRAY(String))).table_valued(
            column("value", String), name="new_tags").render_derived()
        pairs = select(updated.c.id, rows.c.value).select_from(updated.join(rows, true()))
        ctes.append(pg_insert(_TAGS).from_select(["image_id", "value"], pairs)
                    .on_conflict_do_nothing().returning(_TAGS.c.value).cte("added_tags"))
    return select(func.count()).select_from(updated).add_cte(*ctes)


def replace_tags(session: Session, image_id: str, tags: Iterable[str]) -> None:
    _conn(session).execute(delete(ImageTag).where(ImageTag.image_id == image_id))
    tag_list = sorted(set(tags))
    if tag_list:
        _conn(session).execute(_INSERT_TAG,
                               [{"image_id": image_id, "value": t} for t in tag_list])


def add_tag(session: Session, image_id: str, tag: str) -> None:
    """Add a tag unless the image has it: one statement, whatever a concurrent
    request did meanwhile."""
    conn = _conn(session)
    conn.execute(_insert_tag_if_absent(conn.dialect.name), {"image_id": image_id, "value": tag})


_INSERT_TAG_IF_ABSENT: dict[str, Any] = {}


def _insert_tag_if_absent(dialect: str) -> Any:
    stmt = _INSERT_TAG_IF_ABSENT.get(dialect)
    if stmt is None:
        ins = _dialect_insert(dialect)(_TAGS)
        if dialect in ("mysql", "mariadb"):
            stmt = ins.on_duplicate_key_update(value=ins.inserted.value)
        else:
            stmt = ins.on_conflict_do_nothing()
        _INSERT_TAG_IF_ABSENT[dialect] = stmt
    return stmt


def remove_tag(session: Session, image_id: str, tag: str) -> bool:
    result = session.execute(delete(ImageTag).where(
        ImageTag.image_id == image_id, ImageTag.value == tag))
    return result.rowcount > 0


def storage_used(session: Session, owner: str, exclude_image: str | None = None) -> int:
    """Bytes a project holds: live images plus deleted ones whose data the
    scrubber has not removed yet (as Glance counts them)."""
    stmt = select(func.coalesce(func.sum(Image.size), 0)).where(
        Image.owner == owner,
        or_(Image.deleted == false(), Image.status == "pending_delete"))
    if exclude_image is not None:
        stmt = stmt.where(Image.id != exclude_image)
    return int(session.scalar(stmt) or 0)


def storage_used_locked(session: Session, owner: str, exclude_image: str | None = None) -> int:
    """storage_used, read under row locks on ALL the owner's images (FOR UPDATE, in
    id order, ``exclude_image`` included), so that two transactions recording new
    sizes for one owner take turns, in the same lock order (no deadlock), and the
    second sees what the first committed. SQLite serializes writers anyway (BEGIN
    IMMEDIATE) and renders no FOR UPDATE."""
    stmt = select(Image.id, Image.size).where(
        Image.owner == owner,
        or_(Image.deleted == false(), Image.status == "pending_delete"))
    rows = session.execute(stmt.order_by(Image.id).with_for_update())
    return sum(size or 0 for image_id, size in rows if image_id != exclude_image)


# ---------------------------------------------------------------- related rows


def add_location(session: Session, image_id: str, url: str, metadata: dict) -> None:
    now = utcnow()
    session.add(ImageLocation(image_id=image_id, value=url, meta_data=json.dumps(metadata),
                              status="active", created_at=now, updated_at=now))
    session.flush()


def set_location_metadata(session: Session, image_id: str, location_id: int,
                          metadata: dict) -> None:
    session.execute(update(ImageLocation)
                    .where(ImageLocation.image_id == image_id, ImageLocation.id == location_id)
                    .values(meta_data=json.dumps(metadata), updated_at=utcnow())
                    .execution_options(synchronize_session=False))


def set_location_status(session: Session, image_id: str, status: str,
                        location_id: int | None = None) -> None:
    stmt = update(ImageLocation).where(ImageLocation.image_id == image_id)
    if location_id is not None:
        stmt = stmt.where(ImageLocation.id == location_id)
    session.execute(stmt.values(status=status, updated_at=utcnow())
                    .execution_options(synchronize_session=False))


def pending_delete_locations(session: Session, older_than: datetime) -> list[dict]:
    rows = session.execute(
        select(ImageLocation.id, ImageLocation.image_id, ImageLocation.value,
               ImageLocation.meta_data)
        .join(Image, Image.id == ImageLocation.image_id)
        .where(ImageLocation.status == "pending_delete", Image.deleted_at <= older_than)
        .order_by(ImageLocation.id))
    return [{"id": i, "image_id": img, "url": v, "metadata": json.loads(m or "{}")}
            for i, img, v, m in rows]


def images_pending_delete(session: Session, older_than: datetime) -> list[str]:
    return list(session.scalars(select(Image.id).where(
        Image.status == "pending_delete", Image.deleted_at <= older_than)))


# ---------------------------------------------------------------- members


@dataclass
class MemberRecord:
    image_id: str
    member_id: str
    status: str
    created_at: datetime
    updated_at: datetime


def _member(row: ImageMember) -> MemberRecord:
    return MemberRecord(row.image_id, row.member, row.status, row.created_at, row.updated_at)


_MEMBERS = ImageMember.__table__
_MEMBER = select(_MEMBERS.c.image_id, _MEMBERS.c.member, _MEMBERS.c.status,
                 _MEMBERS.c.created_at, _MEMBERS.c.updated_at).where(
    _MEMBERS.c.image_id == bindparam("image_id"), _MEMBERS.c.member == bindparam("member"))


def get_member(session: Reader, image_id: str, member: str) -> MemberRecord | None:
    row = _conn(session).execute(_MEMBER, {"image_id": image_id, "member": member}).first()
    return MemberRecord(*row) if row else None


def list_members(session: Session, image_id: str) -> list[MemberRecord]:
    rows = session.scalars(select(ImageMember).where(ImageMember.image_id == image_id)
                           .order_by(ImageMember.created_at, ImageMember.id))
    return [_member(r) for r in rows]


def count_members(session: Session, image_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(ImageMember)
                              .where(ImageMember.image_id == image_id)) or 0)


def add_member(session: Session, image_id: str, member: str) -> MemberRecord:
    now = utcnow()
    row = ImageMember(image_id=image_id, member=member, status="pending", can_share=False,
                      created_at=now, updated_at=now)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"Member {member} is duplicated for image {image_id}") from None
    return _member(row)


def update_member_status(session: Session, image_id: str, member: str, status: str) -> None:
    session.execute(update(ImageMember).where(
        ImageMember.image_id == image_id, ImageMember.member == member)
        .values(status=status, updated_at=utcnow()).execution_options(synchronize_session=False))


def delete_member(session: Session, image_id: str, member: str) -> bool:
    result = session.execute(delete(ImageMember).where(
        ImageMember.image_id == image_id, ImageMember.member == member))
    return result.rowcount > 0


def delete_all_members(session: Session, image_id: str) -> None:
    session.execute(delete(ImageMember).where(ImageMember.image_id == image_id))


# ---------------------------------------------------------------- listing


@dataclass
class ListQuery:
    visibility: str | None = None          # None, public, private, shared, community, all
    member_status: str = "accepted"        # pending, accepted, rejected, all
    filters: list[ColumnElement[bool]] | None = None
    tags: list[str] | None = None
    properties: dict[str, str] | None = None
    sort: list[tuple[str, str]] | None = None
    tiebreak_dir: str = "desc"             # direction of the appended created_at, id
    limit: int = 25
    marker: str | None = None


def _membership(project: str | None, member_status: str) -> ColumnElement[bool]:
    cond = [ImageMember.image_id == Image.id, ImageMember.member == project]
    if member_status != "all":
        cond.append(ImageMember.status == member_status)
    return exists().where(*cond)


def visibility_clause(ctx: RequestContext, visibility: str | None,
                      member_status: str) -> ColumnElement[bool]:
    """Which images a list request may return (the listing side of
    glimpse.domain.images.can_view), as Glance's image_get_all decides.

    A regular user's candidates are public and community images, the images
    of its own project, and shared images its project is a member of with the
    requested member_status. An admin's candidates are all images, whatever
    the membership (member_status does not apply). Then: an explicit
    visibility keeps only that visibility, ``all`` keeps every candidate, and
    no visibility keeps every candidate except community images of other
    projects.
    """
    project = ctx.project_id
    owned = Image.owner == project if project is not None else false()
    if ctx.is_admin:
        candidates: ColumnElement[bool] = true()
    else:
        shared_to_me = and_(Image.visibility == "shared", _membership(project, member_status))
        candidates = or_(owned, Image.visibility.in_(("public", "community")), shared_to_me)
    if visibility == "all":
        return candidates
    if visibility is not None:
        return and_(candidates, Image.visibility == visibility)
    return and_(candidates, or_(owned, Image.visibility != "community"))


def _marker_row(session: Reader, ctx: RequestContext, marker_id: str) -> Any:
    """The marker image, if it exists, is not deleted and the caller may see it
    (a shared image counts for a member in any member status)."""
    stmt = select(*_IMAGE_COLS).where(Image.id == marker_id, Image.deleted == false())
    if not ctx.is_admin:
        project = ctx.project_id
        owned = Image.owner == project if project is not None else false()
        stmt = stmt.where(or_(owned, Image.visibility.in_(("public", "community")),
                              and_(Image.visibility == "shared", _membership(project, "all"))))
    row = _conn(session).execute(stmt).first()
    if row is None:
        raise BadRequest(f"Invalid marker. Image {marker_id} could not be found.")
    return row


def _sort_expr(key: str, columns: Any = None) -> ColumnElement[Any]:
    col = getattr(Image, key) if columns is None else columns[key]
    if key in _NULL_SENTINEL:
        return func.coalesce(col, literal(_NULL_SENTINEL[key]))
    return col


def _sort_value(row: Image, key: str) -> Any:
    value = getattr(row, key)
    if value is None and key in _NULL_SENTINEL:
        return _NULL_SENTINEL[key]
    return value


def list_images(session: Reader, ctx: RequestContext, q: ListQuery) -> list[ImageRecord]:
    sort = list(q.sort or [("created_at", "desc")])
    # created_at then id make the order total, so markers never skip or repeat.
    for key in ("created_at", "id"):
        if not any(k == key for k, _ in sort):
            sort.append((key, q.tiebreak_dir))
    stmt = select(Image).where(
        Image.deleted == false(),
        Image.status != "killed",  # Glance never lists killed images
        visibility_clause(ctx, q.visibility, q.member_status))
    for cond in q.filters or []:
        stmt = stmt.where(cond)
    # IN (subquery) rather than a correlated EXISTS: the planner may then start
    # from the few images carrying a tag or property instead of testing every
    # image in list order.
    for tag in q.tags or []:
        stmt = stmt.where(Image.id.in_(select(ImageTag.image_id).where(ImageTag.value == tag)))
    for name, value in (q.properties or {}).items():
        stmt = stmt.where(Image.id.in_(select(ImageProperty.image_id).where(
            ImageProperty.name == name, ImageProperty.value == value)))
    if q.marker is not None:
        stmt = stmt.where(_after_marker(_marker_row(session, ctx, q.marker), sort))
    order = [(_sort_expr(k).desc() if d == "desc" else _sort_expr(k).asc()) for k, d in sort]
    stmt = stmt.with_only_columns(*_IMAGE_COLS).order_by(*order).limit(q.limit)
    conn = _conn(session)
    if conn.dialect.name != "sqlite":
        dialect = conn.dialect.name
        if dialect == "postgresql":
            # The children as correlated subqueries of the page's select list:
            # PostgreSQL evaluates them after the sort, for the rows kept only.
            page = stmt.add_columns(*_page_aggregates(dialect))
        else:
            # MariaDB would evaluate them for every candidate row before a
            # filesort; over a derived table of the page they run per page row.
            # (Their temporary tables on disk, two, serve the whole page: the
            # union form of find_image measured slower here, its CTE built
            # about fifteen temporary tables a page.)
            columns, aggregates = _derived_page(dialect)
            page = select(*columns.values(), *aggregates).select_from(
                stmt.subquery("page")).order_by(*(
                    _sort_expr(k, columns).desc() if d == "desc"
                    else _sort_expr(k, columns).asc() for k, d in sort))
        return [_record_from_aggregated(r) for r in conn.execute(page).all()]
    rows = conn.execute(stmt).all()
    ids = [r.id for r in rows]
    props, tags, locs = _children(session, ids)
    return [_record_from_row(r, props.get(r.id), tags.get(r.id), locs.get(r.id))
            for r in rows]


def _after_marker(marker: Image, sort: list[tuple[str, str]]) -> ColumnElement[bool]:
    """Keyset condition: rows strictly after the marker in the sort order."""
    directions = {d for _, d in sort}
    if len(directions) == 1:
        # One row-value comparison, (a, b) < (x, y): every database turns it
        # into a range on an index of those columns, where the expanded OR
        # form below makes it scan from the first row to the marker.
        exprs = tuple_(*(_sort_expr(k) for k, _ in sort))
        values = tuple_(*(literal(_sort_value(marker, k), _sort_expr(k).type) for k, _ in sort))
        return exprs < values if directions == {"desc"} else exprs > values
    clauses = []
    # Values as typed literals: SQLAlchemy refuses ``column > False`` (a boolean
    # sort key: protected, os_hidden) as a comparison with a Python constant.
    for i, (key, direction) in enumerate(sort):
        equal_prefix = [_sort_expr(k) == literal(_sort_value(marker, k), _sort_expr(k).type)
                        for k, _ in sort[:i]]
        expr = _sort_expr(key)
        value = literal(_sort_value(marker, key), expr.type)
        beyond = expr < value if direction == "desc" else expr > value
        clauses.append(and_(*equal_prefix, beyond))
    return or_(*clauses)


def set_deleted_status(session: Session, image_id: str, expected: str, new: str) -> bool:
    """Compare-and-set on an already deleted image row (the scrubber's step)."""
    result = session.execute(
        update(Image).where(Image.id == image_id, Image.status == expected)
        .values(status=new, updated_at=utcnow()).execution_options(synchronize_session=False))
    return result.rowcount == 1
