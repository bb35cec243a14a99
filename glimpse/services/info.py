"""Discovery use cases: /v2/info/import, /v2/info/stores(/detail), /v2/info/usage."""

from __future__ import annotations

from typing import Any

from glimpse.context import RequestContext
from glimpse.db import tasks_repo
from glimpse.errors import NotFound
from glimpse.services.runtime import Runtime
from glimpse.stores.file import FileStore

MIB = 1024 * 1024
# glance_store's file store reads and writes in 64 KiB chunks; reported as is.
FILE_CHUNK_SIZE = 65536


def import_info(rt: Runtime) -> dict[str, Any]:
    return {"import-methods": {
        "description": "Import methods available.",
        "type": "array",
        "value": list(rt.conf.enabled_import_methods),
    }}


def stores_info(rt: Runtime) -> dict[str, Any]:
    """The stores clients may name. As Glance: 404 without multi-store, the
    flags as the strings "true", the reserved internal stores never listed."""
    if not rt.conf.enabled_backends:
        raise NotFound("Multi backend is not supported at this site.")
    stores = []
    for name, store in rt.stores.stores.items():
        entry: dict[str, Any] = {"id": name}
        if store.description:
            entry["description"] = store.description
        if name == rt.stores.default_name:
            entry["default"] = "true"
        if store.read_only:
            entry["read-only"] = "true"
        stores.append(entry)
    return {"stores": stores}


def stores_detail(rt: Runtime, ctx: RequestContext) -> dict[str, Any]:
    doc = stores_info(rt)
    rt.policy.enforce(ctx, "stores_info_detail", {})
    for entry in doc["stores"]:
        store = rt.stores.stores[entry["id"]]
        entry["type"] = store.type
        if isinstance(store, FileStore):
            entry["properties"] = {"data_dir": store.datadir, "chunk_size": FILE_CHUNK_SIZE,
                                   "thin_provisioning": False}
        elif store.type in ("swift", "s3"):
            entry["properties"] = store.properties()
        else:
            entry["properties"] = {}
        entry["weight"] = rt.conf[entry["id"]].weight
    return doc


def usage(rt: Runtime, ctx: RequestContext) -> dict[str, Any]:
    """The caller's project's usage, in Glance's units (sizes in MiB).

    Glance fills this from Keystone unified limits and answers an empty
    ``usage`` when they are off. Glimpse always reports the usage; the limit
    is ``user_storage_quota`` (in MiB) for image_size_total, -1 (unlimited)
    otherwise."""
    figures = {"image_size_total": 0, "image_stage_total": 0, "image_count_total": 0,
               "image_count_uploading": 0}
    if ctx.project_id is not None:
        with rt.db.read() as session:
            figures = tasks_repo.usage(session, ctx.project_id)
    quota = rt.storage_quota
    limits = {"image_size_total": quota // MIB if quota > 0 else -1}
    return {"usage": {
        "image_size_total": {"limit": limits["image_size_total"],
                             "usage": figures["image_size_total"] // MIB},
        "image_stage_total": {"limit": -1, "usage": figures["image_stage_total"] // MIB},
        "image_count_total": {"limit": -1, "usage": figures["image_count_total"]},
        "image_count_uploading": {"limit": -1, "usage": figures["image_count_uploading"]},
    }}
