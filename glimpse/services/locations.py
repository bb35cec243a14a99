"""Where an image's data lives: the order of its locations, checking a location a
client names, PATCH /locations, DELETE /v2/stores/{store}/{image} and the
Images API 2.17 locations calls (POST / GET /v2/images/{id}/locations).

Glance's rules, status codes and policy names (delete_image_location,
set_image_location, get_image_location, add_image_location,
fetch_image_location); the work of POST /locations runs as a ``location_import``
task (glimpse.imports.location_import) under the image's import lock.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

from glimpse.context import RequestContext
from glimpse.db import repository as repo
from glimpse.db import tasks_repo
from glimpse.db.retry import retry_on_conflict
from glimpse.db.tasks_repo import IMPORT_LOCK
from glimpse.domain import locations as rules
from glimpse.domain.images import ImageRecord
from glimpse.domain.locations import without_credentials
from glimpse.domain.status import Event, transition
from glimpse.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GlimpseError,
    NotFound,
    RequestEntityTooLarge,
)
from glimpse.services.images import enforce_on_image, load_visible
from glimpse.services.leases import DELETE
from glimpse.services.runtime import Runtime
from glimpse.stores.base import Credentials, DataNotFound, Store, StoreError

LOG = logging.getLogger(__name__)

# Schemes Glance never accepts for a location a client names (its
# RESTRICTED_URI_SCHEMAS): local files, and Swift references into the
# operator's own credentials file.
RESTRICTED_SCHEMES = ("file", "filesystem", "swift+config", "sheepdog")
LOCATION_PURPOSE = "image location"
SERVICE_ROLE = "service"


# ---------------------------------------------------------------- order


@dataclass(frozen=True)
class _OrderInputs:
    weight_of: dict[str, int]
    type_of: dict[str, str]
    strategy: str
    preference: list[str]


_ORDER: weakref.WeakKeyDictionary[Any, _OrderInputs] = weakref.WeakKeyDictionary()


def _order_inputs(rt: Runtime) -> _OrderInputs:
    """The stores' weights and types, read from the config once per registry."""
    cached = _ORDER.get(rt.stores)
    if cached is None:
        weights: dict[str, int] = {}
        if rt.conf.enabled_backends:
            for name in rt.stores.names():
                weight = rt.conf[name].weight
                if weight:
                    weights[name] = weight
        cached = _OrderInputs(
            weights,
            {name: store.type for name, store in rt.stores.stores.items()},
            rt.conf.location_strategy,
            list(rt.conf.store_type_location_strategy.store_type_preference),
        )
        _ORDER[rt.stores] = cached
    return cached


def ordered(rt: Runtime, locations: list[dict]) -> list[dict]:
    """``locations`` in the order they are shown and read (location_strategy)."""
    if len(locations) < 2:
        return locations
    inputs = _order_inputs(rt)
    return rules.ordered(
        locations, inputs.weight_of, inputs.type_of, inputs.strategy, inputs.preference
    )


def in_order(rt: Runtime, image: ImageRecord) -> ImageRecord:
    """The record with its locations in the order clients see them."""
    locations = ordered(rt, image.locations)
    if locations is image.locations or locations == image.locations:
        return image
    return replace(image, locations=locations)


# ---------------------------------------------------------------- a location a client names


@dataclass
class CheckedLocation:
    url: str
    metadata: dict
    store: Store
    size: int


def check_location(rt: Runtime, url: Any, metadata: Any = None,
                   creds: Credentials | None = None) -> CheckedLocation:
    """Accept a location a client names, or refuse it (400): a scheme Glance
    allows, for http(s) the web-download URI filter and the address guard
    (glimpse.outbound), a configured store that holds it, and data there."""
    from glimpse.outbound import check_destination  # noqa: PLC0415

    if not isinstance(url, str) or not url:
        raise BadRequest("Invalid location")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise BadRequest("Invalid location: metadata must be an object")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in RESTRICTED_SCHEMES:
        raise BadRequest(f"Invalid location: the {scheme} scheme is not allowed")
    if scheme in ("http", "https"):
        check_destination(rt.conf, url, LOCATION_PURPOSE)
    try:
        store = rt.stores.for_url(url)
    except NotFound:
        raise BadRequest(f"Invalid location: no configured store holds {url}") from None
    try:
        size = store.size(url, creds)
    except (StoreError, GlimpseError) as exc:
        raise BadRequest(f"Invalid location: {exc}") from None
    if size <= 0:
        raise BadRequest("Invalid location: there is no data at this location")
    # As Glance (get_updated_store_location): the store is recorded with the location.
    return CheckedLocation(url, {**metadata, "store": store.name}, store, size)


def _check_quota(rt: Runtime, attempted: int) -> None:
    maximum = rt.conf.image_location_quota
    if 0 <= maximum < attempted:
        raise RequestEntityTooLarge(
            "The limit has been exceeded on the number of allowed image locations. "
            f"Attempted: {attempted}, Maximum: {maximum}"
        )


# ---------------------------------------------------------------- PATCH /locations


@dataclass
class LocationEdit:
    """The locations of one PATCH, changed in order on a copy and written with
    the rest of the PATCH (``write``); data of removed locations is deleted
    after the commit (``removed_urls``)."""

    rt: Runtime
    ctx: RequestContext
    image: ImageRecord
    target: dict[str, Any]
    current: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    changed: bool = False

    def __post_init__(self) -> None:
        self.current = [
            dict(loc, metadata=dict(loc["metadata"]))
            for loc in ordered(self.rt, self.image.locations)
        ]
        self.status = self.image.status

    def _enforce(self, rule: str) -> None:
        self.rt.policy.enforce(self.ctx, rule, self.target)

    def _visible(self, verb: str) -> None:
        if not self.rt.conf.show_multiple_locations:
            raise Forbidden(f"It's not allowed to {verb} locations if locations are invisible.")

    def _image_values(self) -> dict[str, Any]:
        return {
            key: self.values.get(key, getattr(self.image, key))
            for key in ("checksum", "os_hash_algo", "os_hash_value")
        }

    def _validation(self, given: list[dict]) -> dict[str, str]:
        for loc in given:
            if not isinstance(loc, dict):
                raise BadRequest("Invalid locations")
        return rules.new_validation_values(
            self._image_values(), self.status, self.rt.conf.hashing_algorithm, given
        )

    def _activate(self, new_values: dict[str, str], size: int) -> None:
        if self.status == "queued":
            self.values.update(new_values)
            self.status = transition("queued", Event.LOCATION_ADDED)
        if not (self.values.get("size") or self.image.size):
            self.values["size"] = size

    def _new(self, value: dict) -> dict:
        checked = check_location(self.rt, value.get("url"), value.get("metadata"),
                                 Credentials.of(self.ctx))
        for loc in self.current:
            if loc["url"] == checked.url and loc["metadata"] == checked.metadata:
                raise BadRequest(f"The location {checked.url} already exists")
        return {"id": None, "url": checked.url, "metadata": checked.metadata, "size": checked.size}

    def apply(self, op: str, position: str | None, value: Any) -> None:
        if op == "add":
            self._add(position, value)
        elif op == "replace":
            self._replace(value)
        else:
            self._remove(position)
        self.changed = True

    def _add(self, position: str | None, value: Any) -> None:
        self._enforce("set_image_location")
        self._visible("add")
        if self.status not in ("active", "queued"):
            raise Conflict(f"It's not allowed to add locations if image status is {self.status}.")
        new_values = self._validation([value])
        pos = rules.position(position, len(self.current), allow_end=True)
        if pos is None:
            raise BadRequest("Invalid position for adding a location.")
        _check_quota(self.rt, len(self.current) + 1)
        loc = self._new(value)
        self.current.insert(pos, loc)
        self._activate(new_values, loc["size"])

    def _replace(self, value: Any) -> None:
        if not value:
            raise Forbidden("Cannot set locations to empty list.")
        self._enforce("set_image_location")
        self._visible("update")
        if self.status not in ("active", "queued"):
            raise Conflict(
                f"It's not allowed to replace locations if image status is {self.status}."
            )
        if not isinstance(value, list):
            raise BadRequest("Invalid locations")
        new_values = self._validation(value)
        _check_quota(self.rt, len(value))
        urls = sorted(loc.get("url") or "" for loc in value)
        have = sorted(loc["url"] for loc in self.current)
        if self.current and urls != have:
            raise BadRequest(
                f"Original locations is not empty: {[loc['url'] for loc in self.current]}"
            )
        if urls == have:
            # The same URLs: only the metadata changes (the store stays recorded).
            by_url = {loc["url"]: loc for loc in self.current}
            for given in value:
                loc = by_url[given["url"]]
                metadata = dict(given.get("metadata") or {})
                if "store" in loc["metadata"]:
                    metadata["store"] = loc["metadata"]["store"]
                loc["metadata"] = metadata
            return
        added: list[dict] = []
        for given in value:
            loc = self._new(given)
            if any(a["url"] == loc["url"] and a["metadata"] == loc["metadata"] for a in added):
                raise BadRequest(f"The location {loc['url']} already exists")
            added.append(loc)
        self.current = added
        self._activate(new_values, added[0]["size"])

    def _remove(self, position: str | None) -> None:
        self._enforce("delete_image_location")
        self._visible("remove")
        if self.status != "active":
            raise Conflict(
                f"It's not allowed to remove locations if image status is {self.status}."
            )
        if len(self.current) == 1:
            raise Forbidden("Cannot remove last location in the image.")
        pos = rules.position(position, len(self.current), allow_end=False)
        if pos is None:
            raise BadRequest("Invalid position for removing a location.")
        loc = self.current.pop(pos)
        if loc.get("id") is not None:
            self.removed.append(loc)

    def write(self, session: Any) -> list[str]:
        """Write the outcome in the PATCH's transaction; the URLs whose data is to
        be removed once it commits (none with delayed_delete: the scrubber does)."""
        if not self.changed:
            return []
        delayed = self.rt.conf.delayed_delete
        for loc in self.removed:
            repo.set_location_status(
                session, self.image.id, "pending_delete" if delayed else "deleted", loc["id"]
            )
        before = {loc["id"]: loc for loc in self.image.locations}
        for loc in self.current:
            if loc.get("id") is None:
                repo.add_location(session, self.image.id, loc["url"], loc["metadata"])
            elif before[loc["id"]]["metadata"] != loc["metadata"]:
                repo.set_location_metadata(session, self.image.id, loc["id"], loc["metadata"])
        if self.status != self.image.status:
            if not repo.set_status(
                session, self.image.id, self.image.status, self.status, **self.values
            ):
                raise Conflict(f"Image {self.image.id} changed status during the request; retry")
        elif self.values:
            repo.update_image(session, self.image.id, self.values)
        return [] if delayed else [loc["url"] for loc in self.removed]


def remove_data(rt: Runtime, image_id: str, urls: list[str], lease: str | None,
                creds: Credentials | None = None) -> None:
    """Delete the data of locations an operation dropped (after its commit); the
    lease taken with the commit lets the recovery sweep finish if this fails."""
    if lease is not None:
        rt.leases.held(lease)
    removed = True
    for url in urls:
        try:
            store = rt.stores.for_url(url)
            if store.read_only:
                continue  # an http location: nothing of ours to remove
            store.delete(url, creds)
        except (DataNotFound, NotFound):
            LOG.info("Data of image %s at %s was already gone", image_id, url)
        except StoreError:
            LOG.exception(
                "Could not delete data of image %s at %s; the recovery sweep retries", image_id, url
            )
            removed = False
    if lease is not None:
        if removed:
            rt.leases.release_now(lease)
        else:
            rt.leases.forget(lease)


def delete_lease(rt: Runtime, session: Any, image_id: str, urls: list[str]) -> str | None:
    return (
        rt.leases.acquire(session, DELETE, image_id=image_id, detail={"urls": urls})
        if urls
        else None
    )


# ---------------------------------------------------------------- DELETE /v2/stores/...


@retry_on_conflict
def delete_from_store(rt: Runtime, ctx: RequestContext, store_id: str, image_id: str) -> None:
    """Remove the copy of an image's data in one store (Glance's delete_from_store)."""
    if not rt.conf.enabled_backends:
        raise NotFound("Multi backend is not supported at this site.")
    if store_id not in rt.stores.stores:
        raise Conflict(f"The selected store {store_id} is not available on this node.")
    delayed = rt.conf.delayed_delete
    with rt.db.write() as session, session.begin():
        try:
            image, is_member = load_visible(rt, session, ctx, image_id, for_update=True)
        except NotFound:
            raise NotFound(f"Failed to find image {image_id}") from None
        enforce_on_image(rt, ctx, image, is_member, "get_image_location")
        enforce_on_image(rt, ctx, image, is_member, "delete_image_location")
        if image.status != "active":
            raise Conflict(
                "It's not allowed to remove image data from store if image status is not 'active'"
            )
        if len(image.locations) == 1:
            raise Forbidden(
                "Cannot delete image data from the only store containing it. "
                "Consider deleting the image instead."
            )
        for loc in ordered(rt, image.locations):
            if loc["metadata"].get("store") == store_id:
                break
        else:
            raise NotFound(f"Image {image_id} is not stored in store {store_id}.")
        repo.set_location_status(
            session, image_id, "pending_delete" if delayed else "deleted", loc["id"]
        )
        repo.touch(session, image_id)
        urls = [] if delayed else [loc["url"]]
        lease = delete_lease(rt, session, image_id, urls)
        updated = repo.get_image(session, image_id)
    remove_data(rt, image_id, urls, lease, Credentials.of(ctx))
    LOG.info(
        "Removed the copy of image %s in store %s%s",
        image_id,
        store_id,
        " (data kept for the scrubber)" if delayed else "",
    )
    if updated is not None:
        rt.notifier.image_event("image.update", updated)


# ---------------------------------------------------------------- Images API 2.17


def _is_service(ctx: RequestContext) -> bool:
    return SERVICE_ROLE in {*ctx.roles, *ctx.service_roles}


def _http_store_configured(rt: Runtime, url: str) -> bool:
    return url.startswith("http") and any(
        store.type == "http" for store in rt.stores.stores.values()
    )


def add_location(rt: Runtime, ctx: RequestContext, image_id: str, body: Any) -> str:
    """POST /v2/images/{id}/locations: check, take the import lock, start the
    ``location_import`` task; returns its id (the API answers 202)."""
    from glimpse.services.imports import _lock_is_stale  # noqa: PLC0415

    url, validation = rules.check_add_location_body(body, rt.conf.hashing_algorithm)
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
    if image.status != "queued":
        raise Conflict(f"It's not allowed to add locations if image status is {image.status}.")
    enforce_on_image(rt, ctx, image, is_member, "add_image_location")
    if not _is_service(ctx) and not _http_store_configured(rt, url):
        raise Forbidden("http store must be enabled to use location API by normal user.")
    # The location is checked now too (Glance checks it in the task): a URL the
    # filters refuse or no store holds is a 400 here rather than a failed task.
    check_location(rt, url, creds=Credentials.of(ctx))
    task_id = str(uuid.uuid4())
    with rt.db.write() as session, session.begin():
        current = repo.get_image(session, image_id, for_update=True)
        if current is None:
            raise NotFound(f"No image found with ID {image_id}")
        if current.status != "queued":
            raise Conflict(
                f"It's not allowed to add locations if image status is {current.status}."
            )
        holder = current.properties.get(IMPORT_LOCK)
        if holder is not None:
            stolen = _lock_is_stale(rt, session, current)  # 409 while the lock is valid
            if stolen is not None and stolen.status in ("pending", "processing"):
                tasks_repo.update_task(
                    session,
                    stolen.id,
                    {"status": "failure", "message": "Expired lock preempted"},
                    expected_status=("pending", "processing"),
                )
            tasks_repo.release_import_lock(session, image_id, holder)
        if not tasks_repo.acquire_import_lock(session, image_id, task_id):
            raise Conflict(
                f"New operation on image '{image_id}' is not permitted as prior "
                "operation is still in progress"
            )
        task = tasks_repo.create_task(
            session,
            {
                "id": task_id,
                "type": "location_import",
                "status": "pending",
                "owner": ctx.owner,
                "image_id": image_id,
                "request_id": ctx.request_id,
                "user_id": ctx.user_id,
                "roles": ctx.roles,
                "input": {"image_id": image_id, "loc_url": url, "validation_data": validation},
                **rt.runner.task_values(),
            },
        )
    rt.notifier.task_started(task)
    rt.runner.submit(task_id, ctx)
    return task_id


def get_locations(rt: Runtime, ctx: RequestContext, image_id: str) -> list[dict]:
    """GET /v2/images/{id}/locations: a bare list of {url, metadata} (services only)."""
    with rt.db.read() as session:
        image, is_member = load_visible(rt, session, ctx, image_id)
    enforce_on_image(rt, ctx, image, is_member, "fetch_image_location")
    return [
        {"url": without_credentials(loc["url"]), "metadata": loc["metadata"]}
        for loc in ordered(rt, image.locations)
    ]
