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
# Fields that take an operator prefix: "eq:" (the default) or "in:" (a list).
IN_LIST_FIELDS = ("id", "name", "status", "disk_format", "container_format")
# Other image columns: a plain equality on the column (never a property).
EXACT_FIELDS = ("checksum", "os_hash_value", "os_hash_algo", "owner")
INT_FIELDS = ("size", "virtual_size", "min_disk", "min_ram")
TIME_FIELDS = ("created_at", "updated_at")
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
PAGING = {"limit", "marker", "sort_key", "sort_dir", "sort"}
# Glance forces deleted=False on every list, whatever the client sends.
IGNORED = {"deleted", "deleted_at"}
SPECIAL = {"visibility", "member_status", "tag", "size_min", "size_max", "protected",
           "os_hidden", *IN_LIST_FIELDS, *EXACT_FIELDS, *INT_FIELDS, *TIME_FIELDS, *IGNORED}


# Each tag or property filter is one more condition of the query: past a few
# hundred, SQLite refuses the statement ("Expression tree is too large") and the
# server databases spend long planning it. No image can match more than its
# quotas allow (128 of each by default).
MAX_TAG_AND_PROPERTY_FILTERS = 256


def _unescaped_quote(token: str) -> bool:
    return any(ch == '"' and (i == 0 or token[i - 1] != "\\") for i, ch in enumerate(token))


def split_in_list(value: str) -> list[str]:
    """Values of an ``in:`` filter, split the way Glance splits them.

    Commas separate values; a value wrapped in double quotes may contain
    commas. A quote must open right after a comma (or at the start) and close
    right before one (or at the end). A trailing comma adds nothing, an empty
    slot between two commas is the empty string.
    """
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] == '"':
            end = i + 1
            while end < n and not (value[end] == '"' and value[end - 1] != "\\"):
                end += 1
            if end >= n:
                raise BadRequest(f"Invalid filter value {value}. The quote is not closed.")
            items.append(value[i + 1:end])
            if end + 1 < n and value[end + 1] != ",":
                raise BadRequest(f"Invalid filter value {value}. There is no comma after "
                                 "closing quotation mark.")
            i = end + 2
        else:
            comma = value.find(",", i)
            end = n if comma < 0 else comma
            token = value[i:end]
            if _unescaped_quote(token):
                raise BadRequest(f"Invalid filter value {value}. There is no comma before "
                                 "opening quotation mark.")
            items.append(token)
            i = end + 1
    return items


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def split_operator(raw: str) -> tuple[str, str]:
    """``op:value`` -> (op, value); no operator means eq. As in Glance, a value
    that is itself an ISO 8601 time (it contains colons) is taken whole."""
    op, sep, value = raw.partition(":")
    if not sep:
        return "eq", raw
    try:
        _parse_time(raw)
    except (ValueError, OverflowError):
        return op, value
    return "eq", raw


def _bool(name: str, value: str) -> bool:
    """Glance's list filters take exactly 'true' or 'false' (lowercase)."""
    if value in ("true", "false"):
        return value == "true"
    raise BadRequest(f"Invalid value '{value}' for '{name}' filter. Valid values are "
                     "'true' or 'false'.")


# Databases store at most signed 64-bit integers; a larger bound is refused
# rather than overflowing the driver.
INT64 = range(-(2**63), 2**63)
INT32 = range(-(2**31), 2**31)
# The columns' widths (min_disk and min_ram are 32-bit integers in Glance's schema).
INT_RANGES = {"size": INT64, "virtual_size": INT64, "min_disk": INT32, "min_ram": INT32}


def _int(name: str, value: str, minimum: int | None = 0, bounded: bool = True,
         within: range = INT64) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Invalid value for {name}: {value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise BadRequest(f"Invalid value for {name}: must be >= {minimum}")
    if bounded and number not in within:
        raise BadRequest(f"Invalid value for {name}: out of range")
    return number


def _range_bound(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Unable to filter on a range with a non-numeric value "
                         f"({name}={value!r}).") from None
    if number not in INT64:
        raise BadRequest(f"Invalid value for {name}: out of range")
    return number


def _time_condition(field: str, raw: str) -> ColumnElement[bool]:
    op, value = split_operator(raw)
    if op not in TIME_OPERATORS:
        raise BadRequest(f"Unable to filter on a unknown operator '{op}' for {field}.")
    try:
        moment = _parse_time(value)
    except (ValueError, OverflowError):
        raise BadRequest(f'Bad "{field}" query filter format. Use ISO 8601 DateTime '
                         "notation.") from None
    col = getattr(Image, field)
    return {"gt": col > moment, "gte": col >= moment, "lt": col < moment,
            "lte": col <= moment, "eq": col == moment, "neq": col != moment}[op]


def _sort(params: QueryParams) -> tuple[list[tuple[str, str]], str]:
    """Sort keys with their directions, and the direction of the created_at/id
    tie-breakers Glance appends: the one sort_dir given, otherwise desc."""
    keys = params.getlist("sort_key")
    dirs = params.getlist("sort_dir")
    combined = params.get("sort")
    if combined is not None:
        if keys or dirs:
            raise BadRequest("The 'sort' parameter cannot be combined with sort_key/sort_dir")
        result = []
        for part in combined.strip().split(","):
            key, _, direction = part.partition(":")
            result.append((key.strip(), direction.strip() or "desc"))
        tiebreak = result[0][1] if len(result) == 1 else "desc"
    else:
        keys = [k.strip() for k in keys]
        dirs = [d.strip() for d in dirs]
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise BadRequest("Number of sort dirs does not match the number of sort keys")
        if not keys:
            keys = ["created_at"]
        if not dirs:
            dirs = ["desc"]
        tiebreak = dirs[0] if len(dirs) == 1 else "desc"
        if len(dirs) == 1:
            dirs = dirs * len(keys)
        result = list(zip(keys, dirs, strict=True))
    for key, direction in result:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {key}. It must be one of the following: "
                             f"{', '.join(sorted(SORT_KEYS))}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {direction}")
    # A repeated key adds nothing to the order (Glance accepts it).
    first: dict[str, str] = {}
    for key, direction in result:
        first.setdefault(key, direction)
    return list(first.items()), tiebreak


def parse(params: QueryParams, conf: cfg.ConfigOpts) -> ListQuery:
    if any("\x00" in k or "\x00" in v for k, v in params.multi_items()):
        raise BadRequest("Query parameters may not contain NUL characters.")
    q = ListQuery()
    limit = params.get("limit")
    # A limit above api_limit_max, however large, is clamped to it.
    q.limit = min(_int("limit", limit, bounded=False) if limit is not None
                  else conf.limit_param_default, conf.api_limit_max)
    q.marker = params.get("marker")
    q.sort, q.tiebreak_dir = _sort(params)
    if params.get("changes-since") is not None:
        raise BadRequest('The "changes-since" filter is no longer available on v2.')
    visibility = params.get("visibility")
    if visibility is not None and visibility not in VISIBILITY_FILTERS:
        raise BadRequest(f"Invalid visibility value: {visibility}")
    q.visibility = visibility
    member_status = params.get("member_status", "accepted")
    if member_status not in MEMBER_STATUSES:
        raise BadRequest(f"Invalid status: {member_status}")
    q.member_status = member_status
    conds: list[ColumnElement[bool]] = []
    for field in IN_LIST_FIELDS:
        raw = params.get(field)
        if raw is None:
            continue
        col = getattr(Image, field)
        op, value = split_operator(raw)
        if op == "in":
            conds.append(col.in_(split_in_list(value)))
        elif op == "eq":
            conds.append(col == value)
        else:
            raise BadRequest(f"Unable to filter by unknown operator '{op}'.")
    for field in EXACT_FIELDS:
        if (raw := params.get(field)) is not None:
            conds.append(getattr(Image, field) == raw)
    for field in INT_FIELDS:
        if (raw := params.get(field)) is not None:
            conds.append(getattr(Image, field) == _int(field, raw, minimum=None,
                                                       within=INT_RANGES[field]))
    for field in TIME_FIELDS:
        for raw in params.getlist(field):
            conds.append(_time_condition(field, raw))
    if (raw := params.get("size_min")) is not None:
        conds.append(Image.size >= _range_bound("size_min", raw))
    if (raw := params.get("size_max")) is not None:
        conds.append(Image.size <= _range_bound("size_max", raw))
    if (raw := params.get("protected")) is not None:
        conds.append(Image.protected == _bool("protected", raw))
    # Hidden images are left out unless asked for; os_hidden=true lists only them.
    hidden = _bool("os_hidden", params.get("os_hidden", "false").lower())
    conds.append(Image.os_hidden == hidden)
    q.filters = conds
    q.tags = [t.strip() for t in params.getlist("tag")]
    q.properties = {k: v for k, v in params.multi_items() if k not in SPECIAL | PAGING}
    if len(q.tags) + len(q.properties) > MAX_TAG_AND_PROPERTY_FILTERS:
        raise BadRequest(f"Too many tag and property filters: at most "
                         f"{MAX_TAG_AND_PROPERTY_FILTERS} may be given in one request.")
    return q


def page_links(params: QueryParams, next_marker: str | None) -> dict[str, Any]:
    items = [(k, v) for k, v in params.multi_items() if k != "marker"]
    first = "/v2/images" + ("?" + urlencode(items) if items else "")
    doc: dict[str, Any] = {"first": first, "schema": "/v2/schemas/images"}
    if next_marker is not None:
        doc["next"] = "/v2/images?" + urlencode(items + [("marker", next_marker)])
    return doc

