"""uvicorn's HTTP/1.1 protocol, with limits on how long a request's headers may take
and how large they may be.

uvicorn times out idle keep-alive connections, but not a connection whose
request headers never end (or that never sends a byte): each such client would
hold a socket and its buffers for ever. Glance's server applies
``client_socket_timeout`` to every read of the connection; here it bounds the
headers, and glimpse.api.http bounds each wait for the body.

httptools (uvicorn's parser) buffers headers without a size limit; past
``MAX_HEADER_BYTES`` the connection gets a 431 and is closed (h11's
``h11_max_incomplete_event_size`` does the same for the h11 parser).

Worker processes import this class by name, so the limit travels in the
environment (set by ``glimpse serve``), not in the class.
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TIMEOUT_ENV = "GLIMPSE_CLIENT_SOCKET_TIMEOUT"
MAX_HEADER_BYTES = 1024 * 1024
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
              b"content-length: 0\r\nconnection: close\r\n\r\n")


def header_timeout() -> float:
    """Seconds a request's headers may take to arrive (0: no limit)."""
    try:
        return max(float(os.environ.get(TIMEOUT_ENV, "900")), 0.0)
    except ValueError:
        return 900.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _headers_timer: asyncio.TimerHandle | None = None
    _in_headers = False
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_headers()  # a connection that never sends a byte

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._disarm()
                if not self.transport.is_closing():
                    self.transport.write(_TOO_LARGE)
                    self.transport.close()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_headers()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._disarm()
        super().on_headers_complete()

    def _start_headers(self) -> None:
        self._in_headers = True
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        timeout = header_timeout()
        if timeout and self._headers_timer is None:
            self._headers_timer = self.loop.call_later(timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _too_slow(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            self.transport.close()
