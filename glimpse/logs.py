"""Logging set up from oslo.log's options, the same in every process.

``setup(conf)`` is called by ``glimpse serve`` in the parent and by every worker
(glimpse.asgi), so all lines, uvicorn's own included, share one format. The request
being served (request id, user and project) is kept in a context variable that the
API sets once per request; a filter on every handler copies it onto each record as
``%(request_id)s``, ``%(global_request_id)s`` and ``%(user_identity)s``, the names
oslo.log's format strings use (and ``user_id``/``project_id`` for structured
handlers).

For fluentd (seed 002), log_config_append names fluent-logger's handler with
Glimpse's structured formatter (``pip install glimpse[fluent]``)::

    [handler_fluent]
    class = fluent.handler.FluentHandler
    args = ('glimpse.api', '127.0.0.1', 24224)
    formatter = fluent

    [formatter_fluent]
    class = glimpse.logs.FluentFormatter
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import logging.handlers
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg


@dataclass(frozen=True)
class LogContext:
    request_id: str
    user_identity: str
    global_request_id: str = "-"
    user_id: str = "-"
    project_id: str = "-"


_CURRENT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "glimpse_log_context", default=None)


def bind(request_id: str, user_id: str | None = None, project_id: str | None = None,
         global_request_id: str | None = None) -> contextvars.Token:
    """Make the lines logged from here on (this task and the threads it hands work
    to) carry this request's identity."""
    identity = f"{user_id or '-'} {project_id or '-'} - - -"
    return _CURRENT.set(LogContext(request_id, identity, global_request_id or "-",
                                   user_id or "-", project_id or "-"))


def unbind(token: contextvars.Token) -> None:
    _CURRENT.reset(token)


def current() -> LogContext | None:
    return _CURRENT.get()


class ContextFilter(logging.Filter):
    """Adds the request's fields (or "-") to every record, never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CURRENT.get()
        record.request_id = ctx.request_id if ctx else "-"
        record.user_identity = ctx.user_identity if ctx else "-"
        record.global_request_id = ctx.global_request_id if ctx else "-"
        record.user_id = ctx.user_id if ctx else "-"
        record.project_id = ctx.project_id if ctx else "-"
        record.in_request = ctx is not None
        if not hasattr(record, "instance"):
            record.instance = ""
        return True


class ContextFormatter(logging.Formatter):
    """oslo.log's two formats: one for lines logged while serving a request, one
    for the others; tracebacks get logging_exception_prefix on every line."""

    def __init__(self, context_fmt: str, default_fmt: str, datefmt: str,
                 exception_prefix: str):
        super().__init__(default_fmt, datefmt)
        self.context = logging.Formatter(context_fmt, datefmt)
        self.default = logging.Formatter(default_fmt, datefmt)
        self.prefix = exception_prefix

    def format(self, record: logging.LogRecord) -> str:
        fmt = self.context if getattr(record, "in_request", False) else self.default
        exc_info, record.exc_info = record.exc_info, None
        exc_text, record.exc_text = record.exc_text, None
        try:
            text = fmt.format(record)
        finally:
            record.exc_info, record.exc_text = exc_info, exc_text
        if exc_info:
            prefix = self.prefix % record.__dict__ if "%(" in self.prefix else self.prefix
            trace = self.formatException(exc_info)
            text += "\n" + "\n".join(prefix + line for line in trace.splitlines())
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return self.default.formatTime(record, datefmt)


class JSONFormatter(logging.Formatter):
    """One JSON object per line (use_json), with the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.document(record))

    def document(self, record: logging.LogRecord) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "name": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread_name": record.threadName,
            "request_id": getattr(record, "request_id", "-"),
            "global_request_id": getattr(record, "global_request_id", "-"),
            "user_identity": getattr(record, "user_identity", "-"),
        }
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info).splitlines()
        return doc


class FluentFormatter(JSONFormatter):
    """For fluent-logger's FluentHandler (log_config_append): the same fields as
    use_json's lines, as the record (a map) the handler sends to fluentd, plus the
    user and project apart and the host name."""

    hostname = socket.gethostname()

    def format(self, record: logging.LogRecord) -> dict[str, Any]:  # type: ignore[override]
        doc = self.document(record)
        doc["user_id"] = getattr(record, "user_id", "-")
        doc["project_id"] = getattr(record, "project_id", "-")
        doc["hostname"] = self.hostname
        return doc


SYSLOG_FACILITIES = {name: getattr(logging.handlers.SysLogHandler, name)
                     for name in dir(logging.handlers.SysLogHandler) if name.startswith("LOG_")}


class LoggingSetupError(Exception):
    """A logging option names something unusable (a file, a facility)."""


def _file_path(conf: cfg.ConfigOpts) -> str | None:
    if not conf.log_file:
        return None
    if conf.log_dir and not os.path.isabs(conf.log_file):
        return os.path.join(conf.log_dir, conf.log_file)
    return conf.log_file


def _handlers(conf: cfg.ConfigOpts) -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    path = _file_path(conf)
    if path:
        try:
            if conf.watch_log_file:
                handlers.append(logging.handlers.WatchedFileHandler(path))
            else:
                handlers.append(logging.FileHandler(path))
        except OSError as exc:
            raise LoggingSetupError(f"cannot open log_file {path}: {exc.strerror}") from exc
    if conf.use_syslog:
        facility = SYSLOG_FACILITIES.get(conf.syslog_log_facility.upper())
        if facility is None:
            raise LoggingSetupError(
                f"syslog_log_facility {conf.syslog_log_facility!r} is not a syslog facility "
                f"(one of {', '.join(sorted(SYSLOG_FACILITIES))})")
        address = "/dev/log" if os.path.exists("/dev/log") else ("127.0.0.1", 514)
        handlers.append(logging.handlers.SysLogHandler(address=address, facility=facility))
    if not handlers or conf.use_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    return handlers


def formatter(conf: cfg.ConfigOpts) -> logging.Formatter:
    if conf.use_json:
        return JSONFormatter()
    return ContextFormatter(conf.logging_context_format_string,
                            conf.logging_default_format_string, conf.log_date_format,
                            conf.logging_exception_prefix)


def setup(conf: cfg.ConfigOpts, debug: bool | None = None) -> None:
    """Configure the root logger from ``conf``; idempotent per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    debug = conf.debug if debug is None else debug
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        log = logging.getLogger(name)  # uvicorn's lines go through ours
        log.handlers.clear()
        log.propagate = True
    if conf.log_config_append:
        path = conf.log_config_append
        if not os.access(path, os.R_OK):
            raise LoggingSetupError(f"log_config_append {path} cannot be read")
        try:
            logging.config.fileConfig(path, disable_existing_loggers=False)
        except Exception as exc:  # fileConfig raises KeyError, ValueError, ...
            raise LoggingSetupError(f"log_config_append {path} is not a usable logging "
                                    f"configuration ({exc.__class__.__name__}: {exc})") from exc
        for handler in root.handlers:
            handler.addFilter(ContextFilter())
        return
    fmt = formatter(conf)
    for handler in _handlers(conf):
        handler.setFormatter(fmt)
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for pair in conf.default_log_levels or ():
        name, _, level = pair.partition("=")
        if name and level:
            logging.getLogger(name.strip()).setLevel(level.strip().upper())
    logging.captureWarnings(True)
