"""The image status state machine (one table) and its compare-and-set in the database."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from glimpse.domain.status import (
    GONE,
    TRANSITIONS,
    Event,
    Status,
    allows,
    transition,
)
from glimpse.errors import Conflict, InvalidStatusTransition

S, E = Status, Event

ALLOWED = [
    (S.QUEUED, E.UPLOAD_START, S.SAVING),
    (S.SAVING, E.UPLOAD_DONE, S.ACTIVE),
    (S.SAVING, E.UPLOAD_FAILED, S.QUEUED),
    (S.SAVING, E.KILL, S.KILLED),
    (S.QUEUED, E.STAGE_START, S.UPLOADING),
    (S.UPLOADING, E.STAGE_FAILED, S.QUEUED),
    (S.UPLOADING, E.IMPORT_START, S.IMPORTING),
    (S.QUEUED, E.IMPORT_START, S.IMPORTING),
    (S.IMPORTING, E.IMPORT_DONE, S.ACTIVE),
    (S.IMPORTING, E.IMPORT_FAILED, S.QUEUED),
    (S.QUEUED, E.LOCATION_ADDED, S.ACTIVE),
    (S.ACTIVE, E.DEACTIVATE, S.DEACTIVATED),
    (S.DEACTIVATED, E.REACTIVATE, S.ACTIVE),
    # Glance answers 204 to deactivating a deactivated / reactivating an active image.
    (S.DEACTIVATED, E.DEACTIVATE, S.DEACTIVATED),
    (S.ACTIVE, E.REACTIVATE, S.ACTIVE),
    (S.ACTIVE, E.DELETE, S.DELETED),
    (S.ACTIVE, E.DELETE_DELAYED, S.PENDING_DELETE),
    (S.QUEUED, E.DELETE, S.DELETED),
    (S.SAVING, E.DELETE, S.DELETED),
    (S.KILLED, E.DELETE, S.DELETED),
    (S.DEACTIVATED, E.DELETE, S.DELETED),
    (S.PENDING_DELETE, E.SCRUB, S.DELETED),
]

REFUSED = [
    (S.ACTIVE, E.UPLOAD_START),        # data is immutable once active: 409
    (S.SAVING, E.UPLOAD_START),        # a second concurrent upload
    (S.DEACTIVATED, E.UPLOAD_START),
    (S.KILLED, E.UPLOAD_START),
    (S.UPLOADING, E.UPLOAD_START),
    (S.IMPORTING, E.UPLOAD_START),
    (S.ACTIVE, E.STAGE_START),
    (S.SAVING, E.STAGE_START),
    (S.QUEUED, E.UPLOAD_DONE),         # never skip saving
    (S.ACTIVE, E.IMPORT_START),
    (S.QUEUED, E.DEACTIVATE),
    (S.QUEUED, E.REACTIVATE),
    (S.SAVING, E.DEACTIVATE),
    (S.ACTIVE, E.SCRUB),
    (S.QUEUED, E.SCRUB),
    (S.PENDING_DELETE, E.DELETE),      # gone for the API
    (S.PENDING_DELETE, E.UPLOAD_START),
    (S.PENDING_DELETE, E.REACTIVATE),
    (S.DELETED, E.DELETE),
    (S.DELETED, E.SCRUB),
    (S.DELETED, E.UPLOAD_START),
    (S.DELETED, E.REACTIVATE),
]


@pytest.mark.parametrize(("current", "event", "expected"), ALLOWED)
def test_allowed_transitions(current, event, expected):
    assert transition(current, event) is expected
    assert transition(str(current), event) is expected  # database values are plain strings
    assert allows(current, event)


@pytest.mark.parametrize(("current", "event"), REFUSED)
def test_refused_transitions(current, event):
    assert not allows(current, event)
    with pytest.raises(InvalidStatusTransition) as info:
        transition(current, event)
    assert str(current) in str(info.value) and event.value in str(info.value)


def test_invalid_transition_is_a_409():
    with pytest.raises(Conflict) as info:
        transition("active", Event.UPLOAD_START)
    assert info.value.status == 409


@pytest.mark.parametrize("bogus", ["", "ACTIVE", "purged", "killed "])
def test_unknown_status_is_refused(bogus):
    assert not allows(bogus, Event.DELETE)
    with pytest.raises(InvalidStatusTransition):
        transition(bogus, Event.DELETE)


def test_allows_agrees_with_transition_everywhere():
    for status, event in itertools.product(Status, Event):
        if allows(status, event):
            assert transition(status, event) is TRANSITIONS[(status, event)]
        else:
            with pytest.raises(InvalidStatusTransition):
                transition(status, event)


def test_deleted_is_terminal_and_pending_delete_only_scrubs():
    assert [e for e in Event if allows(S.DELETED, e)] == []
    assert [e for e in Event if allows(S.PENDING_DELETE, e)] == [E.SCRUB]
    assert GONE == {S.DELETED, S.PENDING_DELETE}


def test_every_live_status_can_be_deleted():
    for status in set(Status) - GONE:
        assert transition(status, E.DELETE) is S.DELETED
        assert transition(status, E.DELETE_DELAYED) is S.PENDING_DELETE


def test_every_status_is_reachable_from_queued():
    reached = {S.QUEUED}
    frontier = [S.QUEUED]
    while frontier:
        current = frontier.pop()
        for (source, _event), target in TRANSITIONS.items():
            if source is current and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(Status)


# ---------------------------------------------------------------- compare-and-set


def _new_image(client) -> str:  # noqa: ANN001
    r = client.post("/v2/images", json={"name": "race", "disk_format": "raw",
                                        "container_format": "bare"})
    assert r.status_code == 201
    return r.json()["id"]


def _race_once(client) -> None:  # noqa: ANN001
    image_id = _new_image(client)
    start = threading.Barrier(2)
    loser_done = threading.Event()
    results: dict[int, int] = {}
    payloads = {0: b"a" * 100_000, 1: b"b" * 100_000}

    def body(n: int) -> Iterator[bytes]:
        yield payloads[n][:50_000]
        # Whoever gets here won the status change; hold on until the other has its answer.
        loser_done.wait(timeout=20)
        yield payloads[n][50_000:]

    def put(n: int) -> None:
        start.wait(timeout=20)
        try:
            r = client.put(f"/v2/images/{image_id}/file", content=body(n),
                           headers={"Content-Type": "application/octet-stream"})
            results[n] = r.status_code
        finally:
            if results.get(n) != 204:
                loser_done.set()

    threads = [threading.Thread(target=put, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results.values()) == [204, 409], results
    winner = next(n for n, code in results.items() if code == 204)
    image = client.get(f"/v2/images/{image_id}").json()
    assert image["status"] == "active" and image["size"] == 100_000
    assert client.get(f"/v2/images/{image_id}/file").content == payloads[winner]


def test_concurrent_uploads_exactly_one_wins(client):
    """Two uploads to one queued image, started together: one 204, one 409.

    The winner's body is held open until the loser has its answer, so the two
    requests really overlap; the loser must be refused by the database
    compare-and-set (or the status check before it), never with a 500."""
    for _round in range(3):
        _race_once(client)


def test_upload_refused_while_another_is_saving(client):
    image_id = _new_image(client)
    first_started = threading.Event()
    release = threading.Event()
    outcome: dict[str, int] = {}

    def slow_body() -> Iterator[bytes]:
        yield b"x" * 1000
        first_started.set()
        release.wait(timeout=20)
        yield b"y" * 1000

    def first() -> None:
        r = client.put(f"/v2/images/{image_id}/file", content=slow_body(),
                       headers={"Content-Type": "application/octet-stream"})
        outcome["first"] = r.status_code

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert first_started.wait(timeout=20)
        assert client.get(f"/v2/images/{image_id}").json()["status"] == "saving"
        r = client.put(f"/v2/images/{image_id}/file", content=b"z" * 10,
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 409
    finally:
        release.set()
        thread.join(timeout=30)
    assert outcome["first"] == 204
    assert client.get(f"/v2/images/{image_id}/file").content == b"x" * 1000 + b"y" * 1000
