"""The image status state machine: the one table of allowed transitions.

Every status change goes through ``transition`` and every database write of a
status is a compare-and-set on the status read here, so two workers racing for
the same image cannot both win.
"""

from __future__ import annotations

from enum import StrEnum

from glimpse.errors import InvalidStatusTransition


class Status(StrEnum):
    QUEUED = "queued"
    SAVING = "saving"
    UPLOADING = "uploading"
    IMPORTING = "importing"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    KILLED = "killed"
    PENDING_DELETE = "pending_delete"
    DELETED = "deleted"


class Event(StrEnum):
    UPLOAD_START = "upload_start"      # PUT /file begins
    UPLOAD_DONE = "upload_done"        # data stored and verified
    UPLOAD_FAILED = "upload_failed"    # client went away, bad data, quota, store error
    STAGE_START = "stage_start"        # PUT /stage begins
    STAGE_DONE = "stage_done"          # stays 'uploading' until import
    STAGE_FAILED = "stage_failed"
    IMPORT_START = "import_start"      # POST /import accepted
    IMPORT_DONE = "import_done"
    IMPORT_FAILED = "import_failed"
    IMPORT_INTERRUPTED = "import_interrupted"  # worker died; the staged data is still there
    LOCATION_ADDED = "location_added"  # data registered from an existing location
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    KILL = "kill"                      # unrecoverable data error
    DELETE = "delete"
    DELETE_DELAYED = "delete_delayed"  # delayed_delete: data kept for the scrubber
    SCRUB = "scrub"                    # scrubber removed the data


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.QUEUED, E.UPLOAD_START): S.SAVING,
    (S.SAVING, E.UPLOAD_DONE): S.ACTIVE,
    (S.SAVING, E.UPLOAD_FAILED): S.QUEUED,
    (S.SAVING, E.KILL): S.KILLED,
    (S.QUEUED, E.STAGE_START): S.UPLOADING,
    (S.UPLOADING, E.STAGE_DONE): S.UPLOADING,
    (S.UPLOADING, E.STAGE_FAILED): S.QUEUED,
    (S.QUEUED, E.IMPORT_START): S.IMPORTING,      # web-download from a queued image
    (S.UPLOADING, E.IMPORT_START): S.IMPORTING,   # glance-direct after staging
    (S.IMPORTING, E.IMPORT_DONE): S.ACTIVE,
    (S.IMPORTING, E.IMPORT_FAILED): S.QUEUED,
    (S.IMPORTING, E.IMPORT_INTERRUPTED): S.UPLOADING,
    (S.QUEUED, E.LOCATION_ADDED): S.ACTIVE,
    (S.ACTIVE, E.DEACTIVATE): S.DEACTIVATED,
    (S.DEACTIVATED, E.DEACTIVATE): S.DEACTIVATED,
    (S.DEACTIVATED, E.REACTIVATE): S.ACTIVE,
    (S.ACTIVE, E.REACTIVATE): S.ACTIVE,
    (S.PENDING_DELETE, E.SCRUB): S.DELETED,
}

# Deletion is allowed from every live status; where it lands depends on
# delayed_delete and on whether the image has data.
_DELETABLE = (
    S.QUEUED, S.SAVING, S.UPLOADING, S.IMPORTING, S.ACTIVE, S.DEACTIVATED, S.KILLED,
)
for _status in _DELETABLE:
    TRANSITIONS[(_status, E.DELETE)] = S.DELETED
    TRANSITIONS[(_status, E.DELETE_DELAYED)] = S.PENDING_DELETE

# Statuses in which an image's data may be read (deactivated: by admins only).
READABLE = frozenset({S.ACTIVE, S.DEACTIVATED})
# Statuses that are gone for API users.
GONE = frozenset({S.DELETED, S.PENDING_DELETE})


def transition(current: str, event: Event) -> Status:
    """Return the status after ``event``, or raise InvalidStatusTransition."""
    try:
        return TRANSITIONS[(Status(current), event)]
    except (KeyError, ValueError):
        raise InvalidStatusTransition(
            f"Image status transition from {current} via {event.value} is not allowed"
        ) from None


def allows(current: str, event: Event) -> bool:
    try:
        return (Status(current), event) in TRANSITIONS
    except ValueError:
        return False
