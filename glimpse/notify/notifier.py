"""The notifier every service function calls after its change has committed.

One object per Runtime, built from config. Each method builds the payload
Glance sends for that event (glimpse.notify.payloads) and queues it; sending
happens in the background (glimpse.notify.sender). With the ``noop`` driver
(the default) every call returns at once and builds nothing.

    rt.notifier.image_event("image.update", image)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from oslo_config import cfg

from glimpse.domain.images import ImageRecord
from glimpse.notify import options, payloads
from glimpse.notify.sender import Sender

LOG = logging.getLogger(__name__)

INFO, ERROR, WARN = "INFO", "ERROR", "WARN"


def _never_raises(method: Callable[..., None]) -> Callable[..., None]:
    """A notification must never fail the request whose change already committed."""
    @functools.wraps(method)
    def safe(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception:  # noqa: BLE001 - logged, the request goes on
            LOG.exception("Could not build or queue the notification of %s", method.__name__)

    return safe


def is_enabled(disabled: Iterable[str], event_type: str) -> bool:
    """Glance's rule: disabled by its exact type or by its group (text before the first dot)."""
    group = event_type.split(".", 1)[0]
    return not any(item in (event_type, group) for item in disabled)


class Notifier:
    def __init__(self, conf: cfg.ConfigOpts | None = None, sender: Sender | None = None):
        self.sender = sender
        self.enabled = sender is not None and conf is not None
        self.publisher_id = conf.default_publisher_id if self.enabled else ""
        self.disabled = frozenset(d.strip() for d in conf.disabled_notifications
                                  if d.strip()) if self.enabled else frozenset()

    # ------------------------------------------------------------ generic

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.disabled or is_enabled(self.disabled, event_type))

    @_never_raises
    def emit(self, event_type: str, payload: Any, priority: str = INFO) -> None:
        if self.wants(event_type):
            self.sender.put(event_type, payload, priority, self.publisher_id)  # type: ignore[union-attr]

    def error(self, event_type: str, payload: Any) -> None:
        self.emit(event_type, payload, ERROR)

    # ------------------------------------------------------------ images

    @_never_raises
    def image_event(self, event_type: str, image: ImageRecord, *, backend: str | None = None,
                    touched: bool = False, **fields: Any) -> None:
        """image.create / update / delete / prepare / upload / activate.

        ``fields`` override payload fields (e.g. the status after a delete);
        ``touched``: the change just made moved updated_at to now. image.delete
        gets deleted/deleted_at, image.prepare and image.upload the import
        store lists, and ``backend`` when a store is named."""
        if not self.wants(event_type):
            return
        payload = payloads.image(image)
        if event_type in ("image.prepare", "image.upload"):
            payload.update(payloads.import_stores(image))
        if event_type == "image.delete":
            payload.update(payloads.deleted_fields())
        if touched:
            payload["updated_at"] = payloads.isotime()
        payload.update(fields)
        if backend:
            payload["backend"] = backend
        self.emit(event_type, payload)

    @_never_raises
    def upload_started(self, image: ImageRecord, status: str, backend: str | None) -> None:
        """Glance's image.update (status saving), then image.prepare."""
        self.image_event("image.update", image, status=status, touched=True)
        self.image_event("image.prepare", image, status=status, backend=backend)

    @_never_raises
    def image_uploaded(self, image: ImageRecord, backend: str | None = None,
                       was_active: bool = False) -> None:
        """What Glance sends when data was stored: image.upload, image.activate
        (unless the image already was active), then image.update."""
        self.image_event("image.upload", image, backend=backend)
        if not was_active and image.status == "active":
            self.image_event("image.activate", image)
        self.image_event("image.update", image)

    @_never_raises
    def upload_failed(self, image_id: str, error: BaseException) -> None:
        """image.upload at ERROR priority; the payload is a message, as Glance's."""
        reason = getattr(error, "message", None) or str(error) or type(error).__name__
        self.error("image.upload", f"Failed to upload image data for image {image_id}: "
                   f"{reason}")

    def watch_send(self, image: ImageRecord | None, project_id: str | None,
                   user_id: str | None, chunks: Iterator[bytes], expected: int,
                   ) -> Iterator[bytes]:
        """The download chunks, counted: image.send follows with the bytes sent
        (ERROR priority when they are not the bytes expected, e.g. the client
        went away)."""
        if image is None or not self.wants("image.send"):
            return chunks
        return self._counted(image, project_id, user_id, chunks, expected)

    def image_sent(self, image: ImageRecord | None, project_id: str | None,
                   user_id: str | None, sent: int, expected: int) -> None:
        """image.send for data the HTTP server sent itself (no chunks to count)."""
        if image is not None and self.wants("image.send"):
            self._sent(image, sent, expected, project_id, user_id)

    def _counted(self, image: ImageRecord, project_id: str | None, user_id: str | None,
                 chunks: Iterable[bytes], expected: int) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in chunks:
                sent += len(chunk)
                yield chunk
        finally:
            self._sent(image, sent, expected, project_id, user_id)

    @_never_raises
    def _sent(self, image: ImageRecord, sent: int, expected: int, project_id: str | None,
              user_id: str | None) -> None:
        payload = payloads.image_send(image, sent, project_id, user_id)
        self.emit("image.send", payload, INFO if sent == expected else ERROR)

    # ------------------------------------------------------------ members, tasks, metadefs

    @_never_raises
    def member_event(self, event_type: str, member: Any) -> None:
        if self.wants(event_type):
            payload = payloads.member(member)
            if event_type == "image.member.delete":
                payload.update(payloads.deleted_fields())
            self.emit(event_type, payload)

    @_never_raises
    def task_event(self, event_type: str, task: Any) -> None:
        if self.wants(event_type):
            payload = payloads.task(task)
            if event_type == "task.delete":
                payload.update(payloads.deleted_fields())
            self.emit(event_type, payload)

    @_never_raises
    def task_started(self, task: Any) -> None:
        """Glance's task.create, then task.run (the task is handed to its executor)."""
        self.task_event("task.create", task)
        self.task_event("task.run", task)

    @_never_raises
    def metadef_event(self, event_type: str, namespace: str, doc: dict[str, Any],
                      old_name: str | None = None) -> None:
        """Any metadef_* event; ``doc`` is the API document of what changed."""
        if self.wants(event_type):
            self.emit(event_type, payloads.metadef(event_type, namespace, doc, old_name))

    @_never_raises
    def metadef_namespace_created(self, doc: dict[str, Any]) -> None:
        """metadef_namespace.create, then the create event of everything the
        namespace document brought along (Glance adds each through its repository)."""
        name = doc["namespace"]
        self.metadef_event("metadef_namespace.create", name, doc)
        for assoc in doc.get("resource_type_associations") or []:
            self.metadef_event("metadef_resource_type.create", name, assoc)
        for prop_name, definition in (doc.get("properties") or {}).items():
            self.metadef_event("metadef_property.create", name, {"name": prop_name,
                                                                 **definition})
        for obj in doc.get("objects") or []:
            self.metadef_event("metadef_object.create", name, obj)
        for tag in doc.get("tags") or []:
            self.metadef_event("metadef_tag.create", name, tag)

    # ------------------------------------------------------------ lifecycle

    def flush(self, timeout: float = 10.0) -> bool:
        return True if self.sender is None else self.sender.flush(timeout)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()


def build(conf: cfg.ConfigOpts) -> Notifier:
    """The notifier [oslo_messaging_notifications] asks for (noop: one that sends nothing)."""
    options.register_opts(conf)
    drivers = options.drivers(conf)
    if not drivers:
        return Notifier()
    sender = Sender(conf, drivers, list(conf[options.NOTIFICATIONS_GROUP].topics),
                    options.transport_url(conf), conf.notification_queue_size)
    LOG.info("Notifications: driver %s, topics %s", ",".join(drivers),
             ",".join(sender.topics))
    return Notifier(conf, sender)
