"""image_size_cap and user_storage_quota: the limit put on incoming data, and the
quota checked again once an image's size is known.

Before the data arrives an upload, a stage or an import is limited by
:func:`size_limit` to the size cap and the quota that remains then. Two uploads of one
project that run at the same time both see the same room, so each would fit
alone and together they would exceed it. Glance checks the quota again after
the upload; so does Glimpse, in the transaction that records the size, with the
project's rows locked so that concurrent finishers take turns (see
repository.storage_used_locked). The loser's data is removed by its caller's
clean-up and it answers 413.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.orm import Session

from glimpse.db import repository as repo
from glimpse.errors import RequestEntityTooLarge
from glimpse.services.runtime import Runtime

# The words of the 413 for each way data comes in: (over the size cap, over the quota).
_MESSAGES = {
    "upload": ("Image exceeds the maximum image size of {cap} bytes",
               "Denying attempt to upload image because it exceeds the quota: the "
               "remaining storage quota is {remaining} bytes"),
    "stage": ("The incoming image is too large: exceeds the maximum of {cap} bytes",
              "Image exceeds the storage quota: the remaining storage quota is "
              "{remaining} bytes"),
}


def size_limit(rt: Runtime, owner: str | None, image_id: str, *,
               session: Session | None = None, with_quota: bool = True,
               wording: Literal["upload", "stage"] = "upload") -> tuple[int, str]:
    """The most bytes ``image_id`` may receive now, and the message when it gets more.

    That is the size cap, lowered to what remains of the owner's quota (other
    images' data) when ``with_quota``. Read in ``session`` when given (the
    caller's transaction), otherwise in a read session of its own."""
    cap = rt.conf.image_size_cap
    cap_message, quota_message = _MESSAGES[wording]
    limit, message = cap, cap_message.format(cap=cap)
    quota = rt.storage_quota
    if with_quota and quota > 0 and owner is not None:
        if session is not None:
            used = repo.storage_used(session, owner, exclude_image=image_id)
        else:
            with rt.db.read() as read:
                used = repo.storage_used(read, owner, exclude_image=image_id)
        if quota - used < limit:
            limit = max(quota - used, 0)
            message = quota_message.format(remaining=limit)
    return limit, message


def recheck(rt: Runtime, session: Session, owner: str | None, image_id: str,
            size: int) -> None:
    """Raise RequestEntityTooLarge if ``size`` more bytes for ``image_id`` exceed the quota."""
    quota = rt.storage_quota
    if quota <= 0 or owner is None:
        return
    used = repo.storage_used_locked(session, owner, exclude_image=image_id)
    if used + size > quota:
        raise RequestEntityTooLarge(
            "Denying attempt to upload image because it exceeds the quota: the remaining "
            f"storage quota is {max(quota - used, 0)} bytes")
