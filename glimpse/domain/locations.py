"""What of a location URL may be shown to a client."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit, urlunsplit

from glimpse.errors import BadRequest, Conflict

# Glance wrote credentials into these locations (s3://access:secret@host/..., and
# swift+http://user:key@auth/... without swift_store_config_file). Glimpse's drivers
# never do, but databases taken over from Glance still hold such URLs.
_CREDENTIAL_SCHEMES = frozenset({"s3", "s3+http", "s3+https", "swift", "swift+http",
                                 "swift+https"})


def without_credentials(url: str) -> str:
    """``url`` with any ``user:secret@`` of an object-store location removed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme not in _CREDENTIAL_SCHEMES or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# ---------------------------------------------------------------- order


def ordered(locations: list[dict], weight_of: dict[str, int], type_of: dict[str, str],
            strategy: str = "location_order", preference: list[str] | None = None,
            ) -> list[dict]:
    """The locations in the order they are shown and read from.

    ``location_order``: the order they were added in, then (with named stores,
    as Glance's store weights) the heaviest store first; ``store_type``: by the
    position of the location's store type in ``preference`` (types not listed
    last). Sorting is stable, so ties keep the order they were added in."""
    def store(loc: dict) -> str | None:
        return (loc.get("metadata") or {}).get("store")

    if strategy == "store_type":
        rank = {kind: i for i, kind in enumerate(preference or [])}
        last = len(rank)
        return sorted(locations, key=lambda loc: rank.get(type_of.get(store(loc) or "", ""),
                                                           last))
    if not weight_of:
        return list(locations)
    return sorted(locations, key=lambda loc: -weight_of.get(store(loc) or "", 0))


# ---------------------------------------------------------------- PATCH /locations


def position(path_pos: str | None, count: int, allow_end: bool) -> int | None:
    """Glance's index of ``/locations/N`` or ``/locations/-`` for a list of ``count``:
    ``allow_end`` (add) admits ``count`` itself; None when the position is invalid."""
    if path_pos is None:
        return None
    pos = count if allow_end else count - 1
    if path_pos.isdigit():
        pos = int(path_pos)
    elif path_pos != "-":
        return None
    if not allow_end and not 0 <= pos < count:
        return None
    return pos


def _hex_of_size(value: object, size: int) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(bytes.fromhex(value)) == size
    except ValueError:
        return False


def new_validation_values(current: dict[str, str | None], status: str, hashing_algorithm: str,
                          given: list[dict]) -> dict[str, str]:
    """The image values (checksum, os_hash_algo, os_hash_value) the
    ``validation_data`` of the locations ``given`` set, with Glance's rules for
    PATCH: values equal to the image's are accepted and change nothing; others
    only on a queued image, consistent with one another, of the right size, with
    the configured hashing algorithm. Raises Conflict (409) otherwise."""
    wanted: dict[str, str] = {}
    for loc in given:
        for key, value in (loc.get("validation_data") or {}).items():
            if wanted.get(key, value) != value:
                raise Conflict(f"Conflicting values for {key}")
            wanted[key] = value
    new: dict[str, str] = {}
    for key, value in wanted.items():
        have = current.get(key)
        if value == have:
            continue
        if have:
            raise Conflict(f"{key} is already set with a different value")
        new[key] = value
    if not new:
        return {}
    if status != "queued":
        raise Conflict(f"New value(s) for {', '.join(new)} may only be provided when image "
                       "status is 'queued'")
    if "checksum" in new and not _hex_of_size(new["checksum"], 16):
        raise Conflict(f"checksum ({new['checksum']}) is not a valid md5 value "
                       "(32 hexadecimal digits)")
    algo = new.get("os_hash_algo")
    if algo != hashing_algorithm:
        raise Conflict(f"os_hash_algo must be {hashing_algorithm}, not {algo}")
    want = hashlib.new(algo).digest_size
    if not _hex_of_size(new.get("os_hash_value"), want):
        raise Conflict(f"os_hash_value ({new.get('os_hash_value')}) is not a valid "
                       f"{algo} value (should be {want} bytes in hexadecimal)")
    return new


# ---------------------------------------------------------------- POST /locations (2.17)

ADD_LOCATION_ALGOS = ("sha1", "sha256", "sha512", "md5")


def check_add_location_body(body: object, hashing_algorithm: str) -> tuple[str, dict[str, str]]:
    """The url and validation_data of a POST /v2/images/{id}/locations body, with
    Glance's 400s: ``url`` a string; ``validation_data`` only os_hash_algo (one of
    ADD_LOCATION_ALGOS) and os_hash_value, both or neither, the value valid
    hexadecimal of that digest's size."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    url = body.get("url")
    if not isinstance(url, str):
        raise BadRequest("'url' is a required property and must be a string.")
    data = body.get("validation_data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadRequest("validation_data must be an object.")
    extra = set(data) - {"os_hash_algo", "os_hash_value"}
    if extra:
        raise BadRequest("Additional properties are not allowed in validation_data "
                         f"({', '.join(sorted(extra))} unexpected)")
    if ("os_hash_algo" in data) != ("os_hash_value" in data):
        missing = "os_hash_algo" if "os_hash_value" in data else "os_hash_value"
        raise BadRequest(f"validation_data: '{missing}' is a dependency of "
                         f"'{({'os_hash_algo', 'os_hash_value'} - {missing}).pop()}'")
    if not data:
        return url, {}
    algo, value = data["os_hash_algo"], data["os_hash_value"]
    if algo not in ADD_LOCATION_ALGOS:
        raise BadRequest(f"os_hash_algo {algo!r} is not one of "
                         f"{', '.join(ADD_LOCATION_ALGOS)}")
    if not isinstance(value, str) or len(value) > 128:
        raise BadRequest("os_hash_value must be a string of at most 128 characters")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadRequest(f"os_hash_value ({value}) is not a valid hexadecimal value") from None
    want = hashlib.new(algo).digest_size
    if len(raw) != want:
        raise BadRequest(f"os_hash_value: ({value}) is not the correct size for ({algo}) "
                         f"(should be ({want}) bytes)")
    return url, {"os_hash_algo": algo, "os_hash_value": value}
