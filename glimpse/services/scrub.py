"""The scrubber: removes the data of images deleted with delayed_delete."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from glimpse.db import repository as repo
from glimpse.domain.status import Event, Status, transition
from glimpse.errors import NotFound
from glimpse.services.runtime import Runtime
from glimpse.stores.base import DataNotFound, StoreError

LOG = logging.getLogger(__name__)


@dataclass
class ScrubReport:
    images: int = 0
    locations: int = 0
    errors: int = 0


def scrub(rt: Runtime, ignore_scrub_time: bool = False) -> ScrubReport:
    report = ScrubReport()
    wait = 0 if ignore_scrub_time else rt.conf.scrub_time
    cutoff = repo.utcnow() - timedelta(seconds=wait)
    with rt.db.read() as session:
        locations = repo.pending_delete_locations(session, cutoff)
        image_ids = repo.images_pending_delete(session, cutoff)
    failed_images: set[str] = set()
    for loc in locations:
        try:
            rt.stores.for_url(loc["url"]).delete(loc["url"])
        except (DataNotFound, NotFound):
            pass
        except StoreError:
            LOG.exception("Scrubber could not delete %s; will retry", loc["url"])
            report.errors += 1
            failed_images.add(loc["image_id"])
            continue
        with rt.db.write() as session, session.begin():
            repo.set_location_status(session, loc["image_id"], "deleted", loc["id"])
        report.locations += 1
    for image_id in image_ids:
        if image_id in failed_images:
            continue
        new = transition(Status.PENDING_DELETE, Event.SCRUB)
        with rt.db.write() as session, session.begin():
            if repo.set_deleted_status(session, image_id, Status.PENDING_DELETE, new):
                report.images += 1
    return report
