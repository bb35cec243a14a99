"""This worker's staging area and task work directory.

Glance keeps staged data (glance-direct) in a local directory per worker:
``node_staging_uri`` in a single-store set-up, the reserved
``os_glance_staging_store`` in a multi-store one. Downloads and copies in
progress go to the reserved ``os_glance_tasks_store`` (``[task] work_dir``
without multi-store). Both are plain file stores; nothing here is shared
between workers.

Staged data is always complete: a stage is written to a temporary file and
renamed, so ``<staging>/<image_id>`` existing means a whole upload is there.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any
from urllib.parse import unquote, urlparse

from oslo_config import cfg

from glimpse.config import data_path
from glimpse.stores.file import FileStore
from glimpse.stores.registry import RESERVED_STORES, register_store_opts

LOG = logging.getLogger(__name__)

# Image ids are UUIDs; other names in the staging directory are plugin outputs
# (<image_id>.<format>), what a stage measured (<image_id>.measures) or temporary
# files of stages in progress (.<image_id>.*).
_IMAGE_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                       r"[0-9a-fA-F]{12}$")

STAGING_STORE, TASKS_STORE = RESERVED_STORES

# Image property naming the worker that holds the image's staged data (Glance's name).
STAGE_HOST = "os_glance_stage_host"


def self_url(conf: cfg.ConfigOpts) -> str | None:
    """The URL other workers reach this one at (Glance: worker_self_reference_url,
    else public_endpoint)."""
    return conf.worker_self_reference_url or conf.public_endpoint


def remote_stage_host(conf: cfg.ConfigOpts, properties: dict[str, str]) -> str | None:
    """The worker holding an image's staged data when it is not this one.

    Requests that need the staged data (import, delete) are proxied there.
    A trailing slash does not make a URL another worker's: a worker must never
    proxy to itself."""
    host = properties.get(STAGE_HOST)
    if not host:
        return None
    own = self_url(conf)
    if own is not None and host.rstrip("/") == own.rstrip("/"):
        return None
    return host


def register_opts(conf: cfg.ConfigOpts) -> None:
    """The reserved stores' sections ([os_glance_staging_store], [os_glance_tasks_store])."""
    for name in RESERVED_STORES:
        register_store_opts(conf, name)


def _uri_path(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme != "file" or not parsed.path.startswith("/"):
        raise ValueError(f"node_staging_uri must be file://<absolute path>, not {uri!r}")
    return unquote(parsed.path)


def staging_dir(conf: cfg.ConfigOpts) -> str:
    register_opts(conf)
    if conf.enabled_backends and conf[STAGING_STORE].filesystem_store_datadir:
        return os.path.abspath(conf[STAGING_STORE].filesystem_store_datadir)
    if conf.node_staging_uri:
        return os.path.abspath(_uri_path(conf.node_staging_uri))
    return data_path(conf, "staging")


def tasks_dir(conf: cfg.ConfigOpts) -> str:
    register_opts(conf)
    if conf.enabled_backends and conf[TASKS_STORE].filesystem_store_datadir:
        return os.path.abspath(conf[TASKS_STORE].filesystem_store_datadir)
    if conf.task.work_dir:
        return os.path.abspath(conf.task.work_dir)
    return data_path(conf, "tasks_work_dir")


class Staging:
    """The staging store (staged uploads) and the tasks store (work files)."""

    def __init__(self, conf: cfg.ConfigOpts):
        self.store = FileStore(STAGING_STORE, staging_dir(conf))
        self.work = FileStore(TASKS_STORE, tasks_dir(conf))

    # -- staged data, named by image id

    def path(self, image_id: str) -> str:
        return os.path.join(self.store.datadir, image_id)

    def has(self, image_id: str) -> bool:
        return os.path.isfile(self.path(image_id))

    def remove(self, image_id: str) -> None:
        """Remove the staged data and what plugins derived from it beside it."""
        _unlink(self.path(image_id))
        self.remove_derived(image_id)

    def remove_derived(self, image_id: str) -> None:
        try:
            names = os.listdir(self.store.datadir)
        except FileNotFoundError:
            return
        for name in names:
            # Derived files (<id>.<suffix>) and a partial stage a dead worker left
            # (the file store's in-progress name, .<id>.<random>.tmp).
            if name.startswith((f"{image_id}.", f".{image_id}.")):
                _unlink(os.path.join(self.store.datadir, name))

    def staged_images(self) -> list[str]:
        """Image ids with staged data (temporary files of stages in progress excluded)."""
        try:
            names = os.listdir(self.store.datadir)
        except FileNotFoundError:
            return []
        return [n for n in names if _IMAGE_ID.match(n)]

    # -- what the stage measured, so that the import need not read the data again

    def save_measures(self, image_id: str, measures: dict[str, Any]) -> None:
        """Record the staged data's size, digests and virtual size beside it,
        tied to this very file (inode, size, mtime). Best effort: without the
        record the import measures the data itself."""
        try:
            stat = os.stat(self.path(image_id))
            doc = {**measures, "file": [stat.st_ino, stat.st_size, stat.st_mtime_ns]}
            record = self._measures_path(image_id)
            with open(record + ".tmp", "w") as out:
                json.dump(doc, out)
            os.replace(record + ".tmp", record)
        except OSError:
            LOG.warning("Could not record the measures of the staged data of image %s",
                        image_id, exc_info=True)

    def measures(self, image_id: str) -> dict[str, Any] | None:
        """The measures the stage recorded, if the staged file is still that one."""
        try:
            with open(self._measures_path(image_id)) as record:
                doc = json.load(record)
            stat = os.stat(self.path(image_id))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.pop("file", None) != [
                stat.st_ino, stat.st_size, stat.st_mtime_ns]:
            return None
        return doc

    def _measures_path(self, image_id: str) -> str:
        # Named like a plugin output, so it goes with the staged data (remove_derived).
        return self.path(image_id) + ".measures"

    # -- work files of tasks, named by task id

    def work_path(self, task_id: str, suffix: str = "") -> str:
        return os.path.join(self.work.datadir, task_id + suffix)

    def remove_work(self, task_id: str) -> None:
        """Remove every work file of a task (download, copy, plugin outputs)."""
        try:
            names = os.listdir(self.work.datadir)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith((task_id, f".{task_id}")):
                _unlink(os.path.join(self.work.datadir, name))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        LOG.exception("Could not remove %s", path)
