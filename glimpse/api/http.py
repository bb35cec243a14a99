"""Shared HTTP plumbing: request ids, authentication, errors, JSON, threads."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import html
import json
import logging
import os
import platform
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glimpse import logs
from glimpse.api import auth, render
from glimpse.context import RequestContext
from glimpse.errors import BadRequest, GlimpseError, NotFound, RequestTimeout
from glimpse.services.runtime import Runtime

LOG = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("glimpse.access")
T = TypeVar("T")

JSON_TYPE = "application/json"
# Request bodies reach the store in chunks of this size: large enough that the
# hand-off to a thread and the per-write costs vanish, small enough to keep
# a worker's memory flat (a few chunks in flight per upload).
UPLOAD_CHUNK = 4 * 1024 * 1024


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None,
                  ) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers,
                    media_type="application/json; charset=UTF-8")


def _error_media_type(accept: str | None) -> str:
    """WebOb's choice: JSON if asked for, HTML for ``*/*`` or HTML, else plain text."""
    wanted = (accept or "").lower()
    if "application/json" in wanted:
        return "json"
    if "text/html" in wanted or "*/*" in wanted or "text/*" in wanted:
        return "html"
    return "plain"


def error_response(exc: GlimpseError, accept: str | None = None) -> Response:
    """An error body in the form the client asked for, as Glance (WebOb) does:
    JSON when the client accepts application/json; an HTML page for ``*/*``
    (what python-requests, so glanceclient and openstacksdk's DELETE, send;
    both clients strip the tags and show the message); plain text otherwise."""
    if exc.status < 500:
        LOG.info("refused: %d %s: %s", exc.status, exc.title, exc.message)
    if exc.status == 401 and "WWW-Authenticate" in exc.headers:
        # Token refusals look like keystonemiddleware's, whatever the Accept.
        doc = {"error": {"code": 401, "title": "Unauthorized", "message": exc.message}}
        return json_response(doc, 401, headers=exc.headers)
    kind = _error_media_type(accept)
    if kind == "json":
        return json_response(render.error(exc.status, exc.title, exc.message), exc.status,
                             headers=exc.headers)
    status = f"{exc.status} {exc.title}"
    if kind == "html":
        # Only <, > and & need escaping in text; WebOb also turns quotes into
        # &#x27;, which clients then show verbatim ("Attribute &#x27;x&#x27;").
        text = html.escape(exc.message, quote=False)
        page = (f"<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n"
                f"  <h1>{status}</h1>\n  {text}<br /><br />\n\n\n\n </body>\n</html>")
        return Response(page, status_code=exc.status, headers=exc.headers,
                        media_type="text/html; charset=UTF-8")
    body = f"{status}\n\n{exc.message}\n\n   "
    return Response(body, status_code=exc.status, headers=exc.headers,
                    media_type="text/plain; charset=UTF-8")


class ContextMiddleware:
    """Pure ASGI middleware: request id on every response, context on every request,
    JSON error bodies for every failure (never an HTML page, never a bare 500)."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app = app
        self.runtime = runtime
        self.authenticate = auth.Authenticator(runtime.conf, runtime.policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req-" + str(uuid.uuid4())
        started = False
        # for the one line per request (logs.py): status, bytes sent, duration
        status = 0
        sent = 0
        expected = -1  # Content-Length of the response, when it has one
        t0 = time.perf_counter()
        log_token = logs.bind(request_id)

        with_id = True  # False for a refused authentication (no request id, as Glance)

        async def send_with_id(message: Message) -> None:
            nonlocal started, status, sent, expected
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                for name, value in headers:
                    if name.lower() == b"content-length":
                        expected = int(value)
                if with_id:
                    headers.append((b"x-openstack-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":
                sent += os.path.getsize(message["path"])
            await send(message)

        headers: dict[str, str] = {}
        try:
            headers = header_dict(scope)
            scope.setdefault("state", {})
            try:
                ctx = await self.authenticate(scope["path"], headers, request_id)
            except GlimpseError:
                # Refused before there is a request context: as keystonemiddleware's
                # 401 in Glance, without an x-openstack-request-id.
                with_id = False
                raise
            if "\x00" in scope["path"]:
                # No image, namespace, object or tag is named with a NUL (they are
                # refused on create), and PostgreSQL cannot even compare one.
                raise NotFound("The resource could not be found.")
            scope["state"]["context"] = ctx
            scope["state"]["runtime"] = self.runtime
            if ctx.user_id or ctx.project_id:
                logs.unbind(log_token)
                log_token = logs.bind(request_id, ctx.user_id, ctx.project_id,
                                      headers.get("x-openstack-request-id"))
            await self.app(scope, receive, send_with_id)
        except GlimpseError as exc:
            if started:
                raise
            await error_response(exc, headers.get("accept"))(scope, receive, send_with_id)
        except Exception:
            LOG.exception("Unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            exc = GlimpseError("The server has either erred or is incapable of performing "
                               "the requested operation.")
            await error_response(exc, headers.get("accept"))(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            if scope.get("query_string"):
                path += "?" + scope["query_string"].decode("latin-1")
            elapsed = time.perf_counter() - t0
            method = scope.get("method")
            if method != "HEAD" and (not status or 0 <= expected != sent):
                ACCESS_LOG.warning("%s %s status: %s len: %d of %s time: %.4f: transfer "
                                   "aborted", method, path, status or "none", sent,
                                   expected if expected >= 0 else "?", elapsed)
            else:
                ACCESS_LOG.info("%s %s status: %s len: %d time: %.4f", method, path,
                                status, sent, elapsed)
            logs.unbind(log_token)


def header_dict(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (the first of repeated ones), built once:
    a dict lookup is much cheaper than scanning Starlette's Headers each time."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def link_base(request: Request) -> str:
    """Scheme, host and port of absolute links: ``public_endpoint`` when set, else what
    the client used (through a proxy's headers when those are trusted)."""
    conf = request.state.runtime.conf
    return (conf.public_endpoint or str(request.base_url)).rstrip("/")


def ctx_of(request: Request) -> RequestContext:
    return request.state.context


def rt_of(request: Request) -> Runtime:
    return request.state.runtime


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) service function in the thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def call_read(rt: Runtime, fn: Callable[..., T], *args: Any) -> T:
    """Run a read-only service function: inline on SQLite, in the thread pool otherwise.

    A SQLite read in WAL mode never waits for a lock and takes a fraction of a
    millisecond, less than handing it to a thread and back; a server
    database's round trips must not hold up the event loop."""
    if rt.db.is_sqlite:
        return fn(*args)
    return await _in_db_thread(rt, fn, *args)


# One limiter per event loop (each worker has one; tests start many).
_DB_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary())


async def call_db(fn: Callable[..., T], rt: Runtime, *args: Any) -> T:
    """Run ``fn(rt, *args)``, a short service function that uses the database, in a thread.

    On PostgreSQL and MariaDB at most ``[database] max_pool_size`` of them run
    at once per worker; the others wait their turn, in order, on the event
    loop. So no thread ever waits for a pooled connection (each pool holds
    that many), and a handful of threads, not dozens, take turns on the
    interpreter lock after each database round trip: more threads add no
    throughput to one process, only latency to the slowest requests. Calls that
    stream data (uploads) use ``call`` and do not count here."""
    if rt.db.is_sqlite:
        return await run_in_threadpool(fn, rt, *args)
    return await _in_db_thread(rt, fn, rt, *args)


async def _in_db_thread(rt: Runtime, fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    limiter = _DB_LIMITERS.get(loop)
    if limiter is None:
        limiter = _DB_LIMITERS[loop] = anyio.CapacityLimiter(rt.conf.database.max_pool_size)
    return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=limiter)


async def body_pieces(request: Request) -> AsyncIterator[bytes]:
    """The request body as the server receives it, given up (408) when no byte
    arrives for ``client_socket_timeout`` seconds: a client that stops sending
    half-way must not hold an upload, its image and its partial data forever."""
    timeout = request.state.runtime.conf.client_socket_timeout or None
    pieces = aiter(request.stream())
    while True:
        try:
            async with asyncio.timeout(timeout):  # a timer handle, no task per piece
                piece = await anext(pieces, None)
        except TimeoutError:
            # Closing the connection too: the rest of the body will never be read.
            raise RequestTimeout(f"The client sent no data for {timeout} seconds; the "
                                 "request was given up",
                                 headers={"Connection": "close"}) from None
        except ClientDisconnect:
            # Not a server fault: the upload is rolled back and nobody is
            # left to read the answer, so no 500 and no traceback in the log.
            raise BadRequest("The client disconnected before sending all the data") from None
        if piece is None:
            return
        if piece:
            yield piece


async def read_json(request: Request, max_bytes: int = 1024 * 1024) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BadRequest("Request body is too large")
    parts: list[bytes] = []
    held = 0
    # Read no more than the limit: a body that never ends must not fill the memory.
    async for piece in body_pieces(request):
        held += len(piece)
        if held > max_bytes:
            raise BadRequest("Request body is too large")
        parts.append(piece)
    body = b"".join(parts)
    if not body:
        raise BadRequest("Body expected in request.")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed JSON in request body.") from None


# glibc mallopt() parameters, and the values the data path wants.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREE_HEAP = 32 * 1024 * 1024


@functools.cache
def tune_allocator() -> bool:
    """Stop glibc's malloc from handing memory back to the kernel between chunks.

    Streaming a body allocates and frees buffers of 256 KiB (the server's) to
    4 MiB (ours) all the time. By default glibc maps big buffers afresh and trims
    the heap as soon as they are freed, so every chunk is page-faulted in again:
    measured here, that was 1.3 page faults per 4 KiB streamed and tripled the
    event loop's CPU per byte received. Serving big buffers from the heap and
    keeping up to 32 MiB of it free costs at most that much resident memory.
    Process-wide and idempotent; create_app calls it once per worker. A no-op
    (False) where libc is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_FREE_HEAP)
                    and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_HEAP))
    except (OSError, AttributeError):
        return False


async def _coalesced(stream: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Gather the server's small body pieces (~64-256 KiB) into chunks of ``size``
    bytes or more, with one copy (join) per chunk."""
    parts: list[bytes] = []
    held = 0
    async for piece in stream:
        parts.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(parts)
            parts.clear()
            held = 0
    if parts:
        yield b"".join(parts)


def body_chunks(request: Request, size: int = UPLOAD_CHUNK) -> Iterator[bytes]:
    """A blocking iterator over the request body, for use in a worker thread.

    Must be called on the event loop. While the thread works on one chunk, the
    loop already reads the next one (one chunk of read-ahead), so the client is
    read only as fast as the store writes (back-pressure) but without pauses."""
    loop = asyncio.get_running_loop()
    pieces = _coalesced(body_pieces(request), size)

    async def next_chunk() -> bytes | None:
        return await anext(pieces, None)

    def chunks() -> Iterator[bytes]:
        ahead = asyncio.run_coroutine_threadsafe(next_chunk(), loop)
        current = _PendingRead(ahead)
        _READS_IN_FLIGHT.add(current)  # so a shutdown can cut it short (abort_body_reads)
        try:
            while (chunk := ahead.result()) is not None:
                ahead = asyncio.run_coroutine_threadsafe(next_chunk(), loop)
                current.future = ahead
                yield chunk
        finally:
            # The consumer gave up (error, size limit): stop reading for it.
            ahead.cancel()
            _READS_IN_FLIGHT.discard(current)

    return chunks()


class _PendingRead:
    """The pending read of one request body being streamed to a thread."""

    __slots__ = ("future",)

    def __init__(self, future: Any):
        self.future = future


_READS_IN_FLIGHT: set[_PendingRead] = set()


def abort_body_reads() -> int:
    """At shutdown, once the grace period is over: make every upload still reading its
    body fail now, while the process can still roll it back (image queued again, no
    data left). Returns how many were cut short."""
    pending = list(_READS_IN_FLIGHT)
    for current in pending:
        current.future.cancel()
    return len(pending)


@functools.cache
def _read_pool() -> ThreadPoolExecutor:
    # Store reads get threads of their own: uploads hold anyio's worker threads
    # for as long as they last, and must not be able to starve downloads.
    return ThreadPoolExecutor(32, thread_name_prefix="glimpse-read")


async def iterate_in_thread(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Serve a blocking store iterator from the event loop, reading the next
    chunk in a thread while the current one is being sent."""
    loop = asyncio.get_running_loop()
    sentinel = object()

    def read_ahead() -> asyncio.Future:
        return loop.run_in_executor(_read_pool(), next, iterator, sentinel)

    ahead = read_ahead()
    try:
        while (chunk := await ahead) is not sentinel:
            ahead = read_ahead()
            yield chunk  # type: ignore[misc]
    finally:
        # Also on disconnect or cancellation: wait for a read in flight, then close
        # the file, without being cancelled again half-way.
        with anyio.CancelScope(shield=True):
            if not ahead.done():
                await asyncio.wait([ahead])
            if not ahead.cancelled():
                ahead.exception()  # a read that failed after the client left is moot
            close = getattr(iterator, "close", None)
            if close is not None:
                await loop.run_in_executor(_read_pool(), close)
