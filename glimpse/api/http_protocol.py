"""uvicorn's HTTP/1.1 protocol, with a limit on how long a request's headers may take.

uvicorn times out idle keep-alive connections, but not a connection whose
request headers never end (or that never sends a byte): each such client would
hold a socket and its buffers for ever. Glance's server applies
``client_socket_timeout`` to every read of the connection; here it bounds the
headers, and glimpse.api.http bounds each wait for the body.

Worker processes import this class by name, so the limit travels in the
environment (set by ``glimpse serve``), not in the class.
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TIMEOUT_ENV = "GLIMPSE_CLIENT_SOCKET_TIMEOUT"


def header_timeout() -> float:
    """Seconds a request's headers may take to arrive (0: no limit)."""
    try:
        return max(float(os.environ.get(TIMEOUT_ENV, "900")), 0.0)
    except ValueError:
        return 900.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

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
