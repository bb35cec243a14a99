"""Access lists of image data in the stores that keep them (multi-tenant Swift).

Other projects read such data with their own tokens, so the store itself must let
them: after every change of who may read an image (its visibility, its owner, its
members) and after data or a location is added, ``sync`` sets the lists of each
location from scratch, with the one rule of glimpse.domain.images.data_readers.

Glance does the same on every save of an image or of its members; a failure there
escapes the API call (after the database change is committed). Here a failure is a
warning in the log and the call succeeds: the change is committed and cannot be
undone, and the lists are computed from scratch, so the next change repairs them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from glimpse.db import repository as repo
from glimpse.domain import images as rules
from glimpse.errors import GlimpseError
from glimpse.services.runtime import Runtime
from glimpse.stores.base import Credentials, StoreError

LOG = logging.getLogger(__name__)


def sync(rt: Runtime, image_id: str, creds: Credentials | None,
         urls: Iterable[str] | None = None) -> None:
    """Set the access lists of the image's locations (only ``urls`` if given) in
    the stores that keep them, acting with ``creds``. Never raises."""
    if not any(store.access_lists for store in rt.stores.stores.values()):
        return
    wanted = None if urls is None else set(urls)
    try:
        with rt.db.read() as session:
            image = repo.get_image(session, image_id)
            if image is None:
                return
            targets = []
            for loc in image.locations:
                if wanted is not None and loc["url"] not in wanted:
                    continue
                try:
                    store = rt.stores.for_url(loc["url"])
                except GlimpseError:
                    continue  # no store here holds it: nothing to set
                if store.access_lists:
                    targets.append((store, loc["url"]))
            if not targets:
                return
            members = (repo.list_members(session, image_id)
                       if image.visibility == "shared" else [])
    except Exception:  # noqa: BLE001 - the caller's change is committed; log, go on
        LOG.warning("Image %s: could not read who may read its data; store access lists "
                    "left as they were", image_id, exc_info=True)
        return
    readers = rules.data_readers(image, [m.member_id for m in members])
    for store, url in targets:
        try:
            store.set_acls(url, readers.public, readers.projects, (), creds)
        except StoreError as exc:
            LOG.warning("Image %s: access list of %s not updated (%s); other projects' "
                        "access to it may not match the image's visibility and members "
                        "until its next change", image_id, url, exc)
        else:
            LOG.debug("Image %s: access list of %s set (public: %s, projects: %s)",
                      image_id, url, readers.public, ", ".join(readers.projects))
