"""Cache management use cases (the /v2/cache API, API 2.14-2.18).

Each function checks its cache_* policy first, then answers 404 when this node
has no cache, as Glance does; the cache itself is this node's (glimpse.cache).
"""

from __future__ import annotations

import logging
from typing import Any

from glimpse.context import RequestContext
from glimpse.errors import BadRequest, Conflict, NotFound
from glimpse.services.images import load_visible, target
from glimpse.services.runtime import Runtime

LOG = logging.getLogger(__name__)

NOT_SUPPORTED = "Caching via API is not supported at this site."
CLEAR_TARGETS = ("", "cache", "queue")


def _enforce(rt: Runtime, ctx: RequestContext, rule: str, tgt: dict[str, Any] | None = None,
             ) -> Any:
    rt.policy.enforce(ctx, rule, tgt if tgt is not None else {"project_id": ctx.project_id})
    if rt.cache is None:
        raise NotFound(NOT_SUPPORTED)
    return rt.cache


def _find(rt: Runtime, ctx: RequestContext, image_id: str) -> tuple[Any, bool] | None:
    try:
        with rt.db.read() as session:
            return load_visible(rt, session, ctx, image_id)
    except NotFound:
        return None


def cache_state(rt: Runtime, ctx: RequestContext) -> dict[str, Any]:
    cache = _enforce(rt, ctx, "cache_list")
    return {"cached_images": cache.cached_images(), "queued_images": cache.queued_images()}


def cached_nodes(rt: Runtime, ctx: RequestContext, image_id: str) -> list[str]:
    """The nodes (worker_self_reference_url) whose cache holds an image."""
    cache = _enforce(rt, ctx, "list_cached_nodes")
    if rt.conf.image_cache_driver != "centralized_db":
        raise Conflict("Centralized caching is not enabled")
    if _find(rt, ctx, image_id) is None:
        raise NotFound(f"Image {image_id} not found.")
    return cache.records.nodes_with(image_id)


def queue_image(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    """Queue an image and start caching it at once (the prefetcher retries failures)."""
    found = _find(rt, ctx, image_id)
    if found is None:
        raise NotFound(f"Image {image_id} not found.")
    image, is_member = found
    cache = _enforce(rt, ctx, "cache_image", target(image, ctx, is_member))
    if image.status != "active":
        raise BadRequest("Only images with status active can be targeted for queueing")
    if cache.queue(image_id):
        cache.prefetch_soon(image_id)


def delete_entry(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    """Drop an image from this node's cache and queue."""
    found = _find(rt, ctx, image_id)
    tgt = target(found[0], ctx, found[1]) if found is not None else None
    if found is None and (rt.cache is None or not _known(rt.cache, image_id)):
        raise NotFound(f"Image {image_id} not found.")
    cache = _enforce(rt, ctx, "cache_delete", tgt)
    cache.evict(image_id)
    cache.dequeue(image_id)


def _known(cache: Any, image_id: str) -> bool:
    return cache.is_cached(image_id) or image_id in cache.queued_images()


def clear(rt: Runtime, ctx: RequestContext, which: str) -> dict[str, int]:
    cache = _enforce(rt, ctx, "cache_delete")
    which = which.strip().lower()
    if which not in CLEAR_TARGETS:
        raise BadRequest("If provided 'x-image-cache-clear-target' must be 'cache', 'queue' "
                         "or empty string.")
    done: dict[str, int] = {}
    if which in ("", "cache"):
        done["cache_deleted"] = cache.evict_all()
    if which in ("", "queue"):
        done["queue_deleted"] = cache.dequeue_all()
    return done


def clean(rt: Runtime, ctx: RequestContext) -> int:
    return _enforce(rt, ctx, "cache_clean").clean()


def prune(rt: Runtime, ctx: RequestContext) -> dict[str, int]:
    files, size = _enforce(rt, ctx, "cache_prune").prune()
    return {"total_files_pruned": files, "total_bytes_pruned": size}
