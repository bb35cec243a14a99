from __future__ import annotations

import pytest

from glimpse.domain.locations import without_credentials


@pytest.mark.parametrize(("url", "shown"), [
    ("s3://AK:SK@127.0.0.1:8333/bucket/img", "s3://127.0.0.1:8333/bucket/img"),
    ("s3+https://AK:S%2FK@s3.example.org/b/img", "s3+https://s3.example.org/b/img"),
    ("swift+http://acct:user:key@127.0.0.1:8080/auth/v1.0/glance/img",
     "swift+http://127.0.0.1:8080/auth/v1.0/glance/img"),
    ("swift://u:k@auth.example.org/v3/glance/img", "swift://auth.example.org/v3/glance/img"),
    ("swift+config://ref1/glance/img", "swift+config://ref1/glance/img"),
    ("s3://127.0.0.1:8333/bucket/img", "s3://127.0.0.1:8333/bucket/img"),
    # Other schemes are shown as stored (an http location is the user's own URL).
    ("rbd://fsid/images/img/snap", "rbd://fsid/images/img/snap"),
    ("http://user:pw@example.org/img", "http://user:pw@example.org/img"),
    ("file:///var/lib/glance/images/img", "file:///var/lib/glance/images/img"),
    ("s3://[bad", "s3://[bad"),
])
def test_credentials_are_removed_from_object_store_locations(url, shown):
    assert without_credentials(url) == shown


# ---------------------------------------------------------------- order, positions, validation


def _loc(store: str) -> dict:
    return {"url": f"x://{store}", "metadata": {"store": store}}


def test_order_by_weight_is_stable():
    from glimpse.domain.locations import ordered

    locs = [_loc("a"), _loc("b"), _loc("c"), _loc("d")]
    got = ordered(locs, {"c": 5, "b": 5}, {}, "location_order")
    assert [loc["metadata"]["store"] for loc in got] == ["b", "c", "a", "d"]
    assert ordered(locs, {}, {}) == locs


def test_order_by_store_type():
    from glimpse.domain.locations import ordered

    locs = [_loc("f"), _loc("s"), _loc("r"), _loc("x")]
    types = {"f": "file", "s": "swift", "r": "rbd", "x": "s3"}
    got = ordered(locs, {"f": 100}, types, "store_type", ["rbd", "swift", "file"])
    assert [loc["metadata"]["store"] for loc in got] == ["r", "s", "f", "x"]


def test_positions():
    from glimpse.domain.locations import position

    assert position("-", 2, allow_end=True) == 2
    assert position("-", 2, allow_end=False) == 1
    assert position("0", 2, allow_end=False) == 0
    assert position("2", 2, allow_end=False) is None
    assert position("5", 2, allow_end=True) == 5  # list.insert clamps, as in Glance
    assert position("x", 2, allow_end=True) is None
    assert position(None, 2, allow_end=True) is None


def test_validation_values():
    from glimpse.domain.locations import new_validation_values
    from glimpse.errors import Conflict

    empty = {"checksum": None, "os_hash_algo": None, "os_hash_value": None}
    given = [{"validation_data": {"checksum": "a" * 32, "os_hash_algo": "sha512",
                                  "os_hash_value": "b" * 128}}]
    assert new_validation_values(empty, "queued", "sha512", given) == \
        given[0]["validation_data"]
    with pytest.raises(Conflict):
        new_validation_values(empty, "active", "sha512", given)
    with pytest.raises(Conflict):
        new_validation_values(empty, "queued", "sha256", given)
    with pytest.raises(Conflict):
        new_validation_values({**empty, "checksum": "c" * 32}, "queued", "sha512", given)
    same = dict(given[0]["validation_data"])
    assert new_validation_values(same, "active", "sha512", given) == {}
    bad = [{"validation_data": {"os_hash_algo": "sha512", "os_hash_value": "zz" * 64}}]
    with pytest.raises(Conflict):
        new_validation_values(empty, "queued", "sha512", bad)


def test_add_location_body():
    from glimpse.domain.locations import check_add_location_body
    from glimpse.errors import BadRequest

    sha = "ab" * 32
    assert check_add_location_body({"url": "http://h/x"}, "sha512") == ("http://h/x", {})
    assert check_add_location_body(
        {"url": "u", "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha}},
        "sha512") == ("u", {"os_hash_algo": "sha256", "os_hash_value": sha})
    for body in ([], {}, {"url": 1}, {"url": "u", "validation_data": {"os_hash_value": sha}},
                 {"url": "u", "validation_data": {"os_hash_algo": "sha3_256",
                                                  "os_hash_value": sha}},
                 {"url": "u", "validation_data": {"os_hash_algo": "sha512",
                                                  "os_hash_value": sha}},
                 {"url": "u", "validation_data": {"os_hash_algo": "sha256",
                                                  "os_hash_value": "x" * 64}}):
        with pytest.raises(BadRequest):
            check_add_location_body(body, "sha512")
