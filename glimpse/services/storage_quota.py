"""user_storage_quota, checked again once an image's size is known.

Before the data arrives the upload is limited to the quota that remains then
(services/data.py, services/imports.py, imports/methods.py). Two uploads of one
project that run at the same time both see the same room, so each would fit
alone and together they would exceed it. Glance checks the quota again after
the upload; so does Glimpse, in the transaction that records the size, with the
project's rows locked so that concurrent finishers take turns (see
repository.storage_used_locked). The loser's data is removed by its caller's
clean-up and it answers 413.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from glimpse.db import repository as repo
from glimpse.errors import RequestEntityTooLarge
from glimpse.services.runtime import Runtime


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
