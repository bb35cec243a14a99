"""Query-string parsing for GET /v2/images: filters, sorting, pagination."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from oslo_config import cfg
from sqlalchemy.sql.elements import ColumnElement
from starlette.datastructures import QueryParams

from glimpse.db.models import Image
from glimpse.db.repository import SORT_KEYS, ListQuery
from glimpse.errors import BadRequest

VISIBILITY_FILTERS = ("public", "private", "shared", "community", "all")
MEMBER_STATUSES = ("pending", "accepted", "rejected", "all")
IN_LIST_FIELDS = ("id", "name", "status", "disk_format", "container_format", "owner")
EXACT_FIELDS = ("checksum", "os_hash_value")
TIME_FIELDS = ("created_at", "updated_at")
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
PAGING = {"limit", "marker", "sort_key", "sort_dir", "sort"}
SPECIAL = {"visibility", "member_status", "tag", "size_min", "size_max", "protected",
           "os_hidden", *IN_LIST_FIELDS, *EXACT_FIELDS, *TIME_FIELDS}


def split_in_list(value: str) -> list[str]:
    """Values of an ``in:`` filter: comma separated, double quotes protect commas."""
    items, buf, quoted = [], [], False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise BadRequest("Invalid filter value: unterminated quote")
    items.append("".join(buf))
    return items


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise BadRequest(f"Invalid value for {name}: {value!r} is not a boolean")


def _int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Invalid value for {name}: {value!r} is not an integer") from None
    if number < minimum:
        raise BadRequest(f"Invalid value for {name}: must be >= {minimum}")
    return number


def _time_condition(field: str, raw: str) -> ColumnElement[bool]:
    op, sep, value = raw.partition(":")
    if not sep or op not in TIME_OPERATORS:
        op, value = "eq", raw
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"Invalid time format for {field}: {value!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    col = getattr(Image, field)
    return {"gt": col > moment, "gte": col >= moment, "lt": col < moment,
            "lte": col <= moment, "eq": col == moment, "neq": col != moment}[op]


def _sort(params: QueryParams) -> list[tuple[str, str]]:
    keys = params.getlist("sort_key")
    dirs = params.getlist("sort_dir")
    combined = params.get("sort")
    if combined is not None:
        if keys or dirs:
            raise BadRequest("The 'sort' parameter cannot be combined with sort_key/sort_dir")
        result = []
        for part in combined.split(","):
            key, _, direction = part.strip().partition(":")
            result.append((key, direction or "desc"))
    else:
        if not keys:
            keys = ["created_at"]
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise BadRequest("Number of sort dirs does not match the number of sort keys")
        if not dirs:
            dirs = ["desc"] * len(keys)
        elif len(dirs) == 1:
            dirs = dirs * len(keys)
        result = list(zip(keys, dirs, strict=True))
    for key, direction in result:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {key}. It is not in the list of allowed "
                             f"keys: {', '.join(sorted(SORT_KEYS))}")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {direction}")
    seen = set()
    for key, _ in result:
        if key in seen:
            raise BadRequest(f"Sort key {key} is given more than once")
        seen.add(key)
    return result


def parse(params: QueryParams, conf: cfg.ConfigOpts) -> ListQuery:
    q = ListQuery()
    limit = params.get("limit")
    q.limit = min(_int("limit", limit) if limit is not None else conf.limit_param_default,
                  conf.api_limit_max)
    q.marker = params.get("marker")
    q.sort = _sort(params)
    visibility = params.get("visibility")
    if visibility is not None and visibility not in VISIBILITY_FILTERS:
        raise BadRequest(f"Invalid visibility value: {visibility}")
    q.visibility = visibility
    member_status = params.get("member_status", "accepted")
    if member_status not in MEMBER_STATUSES:
        raise BadRequest(f"Invalid member_status value: {member_status}")
    q.member_status = member_status
    conds: list[ColumnElement[bool]] = []
    for field in IN_LIST_FIELDS:
        raw = params.get(field)
        if raw is None:
            continue
        col = getattr(Image, field)
        if raw.startswith("in:"):
            conds.append(col.in_(split_in_list(raw[3:])))
        else:
            conds.append(col == raw)
    for field in EXACT_FIELDS:
        if (raw := params.get(field)) is not None:
            conds.append(getattr(Image, field) == raw)
    for field in TIME_FIELDS:
        for raw in params.getlist(field):
            conds.append(_time_condition(field, raw))
    if (raw := params.get("size_min")) is not None:
        conds.append(Image.size >= _int("size_min", raw))
    if (raw := params.get("size_max")) is not None:
        conds.append(Image.size <= _int("size_max", raw))
    if (raw := params.get("protected")) is not None:
        conds.append(Image.protected == _bool("protected", raw))
    hidden = params.get("os_hidden")
    conds.append(Image.os_hidden == (_bool("os_hidden", hidden) if hidden else False))
    q.filters = conds
    q.tags = params.getlist("tag")
    q.properties = {k: v for k, v in params.multi_items() if k not in SPECIAL | PAGING}
    return q


def page_links(params: QueryParams, next_marker: str | None) -> dict[str, Any]:
    items = [(k, v) for k, v in params.multi_items() if k != "marker"]
    first = "/v2/images" + ("?" + urlencode(items) if items else "")
    doc: dict[str, Any] = {"first": first, "schema": "/v2/schemas/images"}
    if next_marker is not None:
        doc["next"] = "/v2/images?" + urlencode(items + [("marker", next_marker)])
    return doc

