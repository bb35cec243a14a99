"""CADF audit events for every API request, as keystonemiddleware.audit sends them.

``audit.http.request`` before the request is handled and ``audit.http.response``
after it (the same event, with outcome, reason and a reporter step), built with
pycadf and sent through the notifier. The audit map file
(``glance_api_audit_map.conf``, keystonemiddleware's format) names the path
keywords that make the target's typeURI, custom actions and the typeURI of the
service. The initiator is the authenticated user and project; no token,
password or request body is ever part of an event.
"""

from __future__ import annotations

import configparser
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glimpse.notify import options
from glimpse.notify.notifier import Notifier
from glimpse.notify.sender import Sender

LOG = logging.getLogger(__name__)

# pycadf warns about every identifier that is not a UUID (user ids, image ids
# often are not, e.g. in noauth mode); the events are valid all the same.
warnings.filterwarnings("ignore", message="Invalid uuid", module="pycadf.identifier")

UNKNOWN = "unknown"
DEFAULT_SERVICE_TYPE_URI = "service/storage/image"


class AuditMapError(Exception):
    """The audit map file cannot be used (the service must not start with it)."""


@dataclass
class AuditMap:
    path_keywords: dict[str, str] = field(default_factory=dict)
    custom_actions: dict[str, str] = field(default_factory=dict)
    service_endpoints: dict[str, str] = field(default_factory=dict)
    target_endpoint_type: str | None = None

    @property
    def service_type_uri(self) -> str:
        kind = self.target_endpoint_type or "image"
        return self.service_endpoints.get(kind, DEFAULT_SERVICE_TYPE_URI)


def find_map_file(conf: cfg.ConfigOpts, name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    found = conf.find_file(name)
    if found:
        return found
    # pip installs pycadf's sample map files (glance's among them) in <prefix>/etc/pycadf.
    candidates = [name, os.path.join("/etc/pycadf", name), os.path.join("/etc/glance", name),
                  os.path.join(sys.prefix, "etc", "pycadf", name)]
    return next((c for c in candidates if os.path.isfile(c)), None)


def load_map(path: str | None) -> AuditMap:
    """Read a keystonemiddleware audit map file; no file: an empty map."""
    if path is None:
        return AuditMap()
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise AuditMapError(f"Audit map file {path} cannot be read: {exc}") from exc

    defaults = parser.defaults()

    def section(name: str) -> dict[str, str]:
        # configparser repeats [DEFAULT]'s keys in every section: they are not entries.
        if not parser.has_section(name):
            return {}
        return {k: v for k, v in parser.items(name) if k not in defaults}

    endpoint_type = defaults.get("target_endpoint_type")
    return AuditMap(
        path_keywords=section("path_keywords"),
        custom_actions=section("custom_actions"),
        service_endpoints=section("service_endpoints"),
        target_endpoint_type=None if endpoint_type in (None, "", "None") else endpoint_type,
    )


def _clean(segment: str) -> str:
    return segment[:-5] if segment.endswith(".json") else segment


def action(audit_map: AuditMap, method: str, path: str) -> str:
    """The CADF action, by keystonemiddleware.audit's rules."""
    path = path[:-1] if path.endswith("/") else path
    ending = _clean(path.rsplit("/", 1)[-1])
    custom = audit_map.custom_actions
    if f"{ending}/{method.lower()}" in custom:
        return custom[f"{ending}/{method.lower()}"]
    if ending in custom:
        return custom[ending]
    if method == "POST":
        # keystonemiddleware reads an "action" body; Glance's API has none.
        return "create" if ending in audit_map.path_keywords or ending == "action" \
            else "update"
    if method == "GET":
        return "read/list" if ending in audit_map.path_keywords else "read"
    if method in ("PUT", "PATCH"):
        return "update"
    if method == "DELETE":
        return "delete"
    if method == "HEAD":
        return "read"
    return UNKNOWN


def target_of(audit_map: AuditMap, path: str) -> tuple[str, str | None]:
    """(typeURI, id of the last resource named in the path, if any)."""
    type_uri = audit_map.service_type_uri
    previous = None
    resource_id = None
    keywords = audit_map.path_keywords
    for segment in path.split("/"):
        segment = _clean(segment)
        if segment in keywords:
            type_uri += "/" + segment
        elif previous in keywords and keywords[previous] not in ("None", ""):
            type_uri += "/" + keywords[previous]
            resource_id = segment
        previous = segment
    return type_uri, resource_id


class AuditMiddleware:
    """ASGI middleware inside the authentication (it reads the request context)."""

    def __init__(self, app: ASGIApp, notifier: Notifier, audit_map: AuditMap,
                 service_name: str = "glance", ignore_methods: tuple[str, ...] = (),
                 ignore_paths: tuple[str, ...] = ()):
        self.app = app
        self.notifier = notifier
        self.map = audit_map
        self.service_name = service_name
        self.ignore_methods = ignore_methods
        self.ignore_paths = ignore_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in self.ignore_methods
                or scope["path"] in self.ignore_paths or not self.notifier.enabled):
            await self.app(scope, receive, send)
            return
        event = self._new_event(scope)
        if event is not None:
            self.notifier.emit("audit.http.request", event.as_dict())
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if event is not None:
                self._respond(event, status)

    def _new_event(self, scope: Scope) -> Any:
        try:
            return self._build(scope)
        except Exception:  # noqa: BLE001 - auditing must never fail a request
            LOG.exception("Could not build the audit event of %s %s", scope.get("method"),
                          scope.get("path"))
            return None

    def _build(self, scope: Scope) -> Any:
        from pycadf import cadftaxonomy, cadftype, eventfactory, host, identifier, resource, tag

        ctx = (scope.get("state") or {}).get("context")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        client = scope.get("client") or (None, None)
        initiator = resource.Resource(
            typeURI=cadftaxonomy.ACCOUNT_USER,
            id=getattr(ctx, "user_id", None) or UNKNOWN,
            name=headers.get("x-user-name", UNKNOWN),
            host=host.Host(address=client[0] or UNKNOWN,
                           agent=headers.get("user-agent", UNKNOWN)))
        initiator.project_id = getattr(ctx, "project_id", None) or UNKNOWN
        request_id = getattr(ctx, "request_id", None)
        if request_id:
            initiator.request_id = request_id
        if headers.get("x-openstack-request-id"):
            initiator.global_request_id = headers["x-openstack-request-id"]
        type_uri, resource_id = target_of(self.map, scope["path"])
        target = resource.Resource(typeURI=type_uri, id=resource_id or self.service_name,
                                   name=self.service_name)
        event = eventfactory.EventFactory().new_event(
            eventType=cadftype.EVENTTYPE_ACTIVITY, outcome=cadftaxonomy.OUTCOME_PENDING,
            action=action(self.map, scope["method"], scope["path"]), initiator=initiator,
            target=target, observer=resource.Resource(id="target"))
        query = scope.get("query_string", b"").decode("latin-1")
        event.requestPath = scope["path"] + (f"?{query}" if query else "")
        event.add_tag(tag.generate_name_value_tag("correlation_id",
                                                  identifier.generate_uuid()))
        return event

    def _respond(self, event: Any, status: int | None) -> None:
        try:
            from pycadf import cadftaxonomy, cadftype, reason, reporterstep, resource, timestamp

            if status is None:
                event.outcome = cadftaxonomy.UNKNOWN
            else:
                event.outcome = (cadftaxonomy.OUTCOME_SUCCESS if 200 <= status < 400
                                 else cadftaxonomy.OUTCOME_FAILURE)
                event.reason = reason.Reason(reasonType="HTTP", reasonCode=str(status))
            event.add_reporterstep(reporterstep.Reporterstep(
                role=cadftype.REPORTER_ROLE_MODIFIER, reporter=resource.Resource(id="target"),
                reporterTime=timestamp.get_utc_now()))
            self.notifier.emit("audit.http.response", event.as_dict())
        except Exception:  # noqa: BLE001 - auditing must never fail a request
            LOG.exception("Could not send the audit response event")


def audit_notifier(conf: cfg.ConfigOpts, main: Notifier) -> Notifier:
    """The notifier of the audit events: the service's own, unless
    [audit_middleware_notifications] names another driver, topics or transport."""
    group = options.audit_settings(conf)
    if group.use_oslo_messaging and not (group.driver or group.topics or group.transport_url):
        return main
    drivers = ["log"] if not group.use_oslo_messaging else (
        [group.driver] if group.driver else options.drivers(conf))
    drivers = [d for d in drivers if d != "noop"]
    if not drivers:
        return Notifier()
    topics = list(group.topics or conf[options.NOTIFICATIONS_GROUP].topics)
    sender = Sender(conf, drivers, topics, options.transport_url(conf, group.transport_url),
                    conf.notification_queue_size, name="audit events")
    return Notifier(conf, sender)


def middleware_settings(conf: cfg.ConfigOpts, main: Notifier) -> dict[str, Any] | None:
    """AuditMiddleware's arguments when [audit_middleware_notifications] enabled is
    set, else None. A missing or unreadable map file stops the start."""
    options.register_opts(conf)
    group = options.audit_settings(conf)
    if not group.enabled:
        return None
    path = find_map_file(conf, group.audit_map_file)
    if path is None:
        raise AuditMapError(f"Audit map file {group.audit_map_file} (audit_map_file) was "
                            "not found")
    notifier = audit_notifier(conf, main)
    if not notifier.enabled:
        LOG.warning("Auditing is enabled but the notification driver is noop: no audit "
                    "event is sent")
    methods = tuple(m.strip().upper() for m in group.ignore_req_list.split(",") if m.strip())
    paths = tuple(p.strip() for p in group.ignore_path_list.split(",") if p.strip())
    LOG.info("Auditing every request (map file %s)", path)
    return {"notifier": notifier, "audit_map": load_map(path),
            "service_name": group.service_name, "ignore_methods": methods,
            "ignore_paths": paths}
