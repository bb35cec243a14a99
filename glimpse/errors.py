"""Errors raised by services and domain rules; the API layer maps them to HTTP.

Each carries the HTTP status Glance answers with, so the mapping lives here
and only here.
"""

from __future__ import annotations


class GlimpseError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, message: str = "", headers: dict[str, str] | None = None):
        super().__init__(message or self.title)
        self.message = message or self.title
        self.headers = headers or {}


class BadRequest(GlimpseError):
    status, title = 400, "Bad Request"


class Unauthorized(GlimpseError):
    status, title = 401, "Unauthorized"


class Forbidden(GlimpseError):
    status, title = 403, "Forbidden"


class NotFound(GlimpseError):
    status, title = 404, "Not Found"


class MethodNotAllowed(GlimpseError):
    status, title = 405, "Method Not Allowed"


class NotAcceptable(GlimpseError):
    status, title = 406, "Not Acceptable"


class Conflict(GlimpseError):
    status, title = 409, "Conflict"


class Gone(GlimpseError):
    status, title = 410, "Gone"


class RequestTimeout(GlimpseError):
    status, title = 408, "Request Timeout"


class RequestEntityTooLarge(GlimpseError):
    status, title = 413, "Request Entity Too Large"


class UnsupportedMediaType(GlimpseError):
    status, title = 415, "Unsupported Media Type"


class RangeNotSatisfiable(GlimpseError):
    status, title = 416, "Requested Range Not Satisfiable"


class ServiceUnavailable(GlimpseError):
    status, title = 503, "Service Unavailable"


class InvalidStatusTransition(Conflict):
    """A status change the domain's transition table does not allow."""
