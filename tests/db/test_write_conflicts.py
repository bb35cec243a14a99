"""Writes that lose a real conflict are retried from the start, and no change is lost.

On a Galera cluster a conflicting commit on another node fails with MariaDB's
deadlock error (1213) whatever locks were taken, so PATCH and the tag and
member calls must survive that error. Here the conflict is a real deadlock on
one server: a second connection holds a row the PATCH needs, then asks for
the image row the PATCH has locked. The database rolls the (smaller) PATCH
transaction back; the service runs again, after the other transaction
committed, and applies its change on top of it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from glimpse.context import RequestContext
from glimpse.db import retry
from glimpse.services import images as image_svc
from glimpse.services import members as member_svc
from glimpse.services import runtime as runtime_mod
from glimpse.services.images import Change
from tests.conftest import make_conf
from tests.db.wire import server_backends

OWNER = RequestContext(user_id="u", project_id="owner", roles=("member", "reader"))


@pytest.fixture
def rt(tmp_path: Path, db_url: str):  # noqa: ANN201
    runtime = runtime_mod.build(make_conf(tmp_path, db_url), migrate=True)
    yield runtime
    runtime.close()


def _image(rt, **extra: object) -> str:  # noqa: ANN001
    doc = {"name": "conflict", "disk_format": "raw", "container_format": "bare",
           "keep": "me", **extra}
    return image_svc.create_image(rt, OWNER, doc).id


def _waiting_for_lock(admin, kind: str) -> bool:  # noqa: ANN001
    with admin.connect() as conn:
        if kind == "postgresql":
            sql = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                   "AND datname = current_database()")
        else:
            # innodb_trx did not always show the wait (seen in CI: the PATCH's INSERT
            # in state 'Update' for 20 s, no LOCK WAIT row), so a statement of this
            # database busy for a second or more counts too.
            sql = ("SELECT (SELECT count(*) FROM information_schema.innodb_trx "
                   "WHERE trx_state = 'LOCK WAIT') + (SELECT count(*) FROM "
                   "information_schema.processlist WHERE db = DATABASE() "
                   "AND command = 'Query' AND time >= 1 "
                   "AND info LIKE 'INSERT INTO image_properties%')")
        return conn.execute(text(sql)).scalar() > 0


def _sessions(admin, kind: str) -> list[tuple]:  # noqa: ANN001
    """What every session of the test database is doing (for a failure message: a
    PATCH that waits on something other than a row lock shows there)."""
    with admin.connect() as conn:
        if kind == "postgresql":
            sql = ("SELECT pid, state, wait_event_type, wait_event, left(query, 120) "
                   "FROM pg_stat_activity WHERE datname = current_database()")
        else:
            sql = ("SELECT id, command, state, time, left(info, 120) FROM "
                   "information_schema.processlist WHERE db = DATABASE()")
        return [tuple(row) for row in conn.execute(text(sql))]


# SQLite has one writer at a time: no lock cycle can form there.
SERVERS = pytest.mark.parametrize("db_url", server_backends(), indirect=True)


@SERVERS
def test_patch_deadlock_is_retried(rt, db_url: str) -> None:  # noqa: ANN001
    kind = rt.db.engine.dialect.name
    image_id = _image(rt)
    other = _image(rt, name="ballast")
    rival = create_engine(db_url)
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    before = retry.RETRIES.value
    outcome: dict[str, object] = {}

    def patch() -> None:
        try:
            outcome["image"] = image_svc.update_image(
                rt, OWNER, image_id, [Change("replace", "keep", "blue-from-patch"),
                                   Change("add", "color", "green")])
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = exc

    with rival.connect() as conn:
        tx = conn.begin()
        # Many rows changed make the rival the larger transaction, so the
        # database picks the PATCH as the deadlock victim.
        conn.execute(text("INSERT INTO image_properties (image_id, name, value) "
                          "VALUES (:i, :n, 'x')"),
                     [{"i": other, "n": f"ballast-{n}"} for n in range(200)])
        # A child row the PATCH will write, locked without touching the image
        # row (changing no key column takes no lock on the parent).
        conn.execute(text("UPDATE image_properties SET value = 'red-from-rival' "
                          "WHERE image_id = :i AND name = 'keep'"), {"i": image_id})
        worker = threading.Thread(target=patch)
        worker.start()
        deadline = time.monotonic() + 20
        while not _waiting_for_lock(admin, kind):
            assert time.monotonic() < deadline, (
                "the PATCH never waited for the rival's row; the database's sessions: "
                f"{_sessions(admin, kind)}")
            assert worker.is_alive(), outcome
            time.sleep(0.05)
        # The PATCH holds the image row and waits for our property row; asking
        # for the image row closes the cycle.
        conn.execute(text("SELECT id FROM images WHERE id = :i FOR UPDATE"), {"i": image_id})
        tx.commit()
    worker.join(30)
    rival.dispose()
    admin.dispose()
    assert "error" not in outcome, outcome.get("error")
    assert retry.RETRIES.value - before >= 1, "the PATCH was not the victim: nothing retried"
    image = outcome["image"]
    assert image.properties == {"keep": "blue-from-patch", "color": "green"}
    stored = image_svc.get_image(rt, OWNER, image_id)
    assert stored.properties == {"keep": "blue-from-patch", "color": "green"}
    assert len(image_svc.get_image(rt, OWNER, other).properties) == 201  # rival committed


@SERVERS
def test_conflict_classification(rt) -> None:  # noqa: ANN001
    """Only conflicts are retried: a real deadlock error is one, a unique
    violation is not (it must reach the caller as a 409 at once)."""
    kind = rt.db.engine.dialect.name
    image_id = _image(rt, visibility="shared")
    member_svc.add_member(rt, OWNER, image_id, "consumer")
    with rt.db.engine.connect() as conn, pytest.raises(DBAPIError) as dup:
        conn.execute(text("INSERT INTO image_members (image_id, member, status, can_share, "
                          "created_at, updated_at) VALUES (:i, 'consumer', 'pending', "
                          "false, now(), now())"), {"i": image_id})
    assert not retry.is_conflict(dup.value)
    failing = {"n": 0}

    @retry.retry_on_conflict
    def always_deadlocks() -> None:
        failing["n"] += 1
        _deadlock(rt.db.engine.url.render_as_string(hide_password=False), kind)

    with pytest.raises(DBAPIError) as err:
        always_deadlocks()
    assert retry.is_conflict(err.value)
    assert failing["n"] == retry.ATTEMPTS


def _deadlock(url: str, kind: str) -> None:
    """Make two connections deadlock for real; re-raise the victim's error."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM image_tags WHERE image_id IN ('dl-a', 'dl-b')"))
        conn.execute(text("DELETE FROM images WHERE id IN ('dl-a', 'dl-b')"))
        for i in ("dl-a", "dl-b"):
            conn.execute(text(
                "INSERT INTO images (id, status, visibility, min_disk, min_ram, protected, "
                "os_hidden, created_at, updated_at, deleted) VALUES (:i, 'queued', 'private', "
                "0, 0, false, false, now(), now(), false)"), {"i": i})
    errors: list[BaseException] = []
    first_locked = threading.Event()
    second_locked = threading.Event()

    def side(mine: str, theirs: str, locked: threading.Event, wait: threading.Event) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE images SET name = 'x' WHERE id = :i"), {"i": mine})
                locked.set()
                wait.wait(10)
                conn.execute(text("UPDATE images SET name = 'y' WHERE id = :i"), {"i": theirs})
        except DBAPIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=side, args=("dl-a", "dl-b", first_locked, second_locked)),
               threading.Thread(target=side, args=("dl-b", "dl-a", second_locked, first_locked))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    engine.dispose()
    assert len(errors) == 1, errors
    raise errors[0]


def test_create_with_children_refuses_a_used_id(rt) -> None:  # noqa: ANN001
    """Creating relies on the primary key, on every database and however the
    insert is written (one statement on PostgreSQL): a used id is a 409 and
    leaves the stored image as it was."""
    from glimpse.errors import Conflict

    image_id = _image(rt, tags=["first"])
    doc = {"id": image_id, "name": "again", "other": "x", "tags": ["second"]}
    with pytest.raises(Conflict, match=f"Image ID {image_id} already exists"):
        image_svc.create_image(rt, OWNER, doc)
    stored = image_svc.get_image(rt, OWNER, image_id)
    assert (stored.name, stored.properties, stored.tags) == ("conflict", {"keep": "me"},
                                                              ["first"])
