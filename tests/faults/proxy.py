"""A TCP proxy the test controls, put between Glimpse and a server it depends on
(PostgreSQL, an object store) to cut the link for real, mid-load.

``cut()`` resets every connection in flight (SO_LINGER 0, so both sides see a
reset, as when a server or a switch dies) and refuses new ones while down (the
listener accepts and resets at once, which a client sees as a dead server, not
as a slow one). ``restore()`` lets connections through again. Loopback only.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LINGER_RESET = struct.pack("ii", 1, 0)


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        # Wakes the pipe thread blocked in recv() on it: close() alone would not
        # (the blocked call holds the file open, so nothing reaches the peer).
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        assert target_host in ("127.0.0.1", "localhost", "::1"), "loopback only"
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[socket.socket] = set()
        self._half: set[socket.socket] = set()  # sockets whose one direction ended
        self._up = True
        self._closed = False
        self.accepted = 0  # connections passed through
        self.refused = 0  # connections reset while down
        self.cuts = 0  # connections reset by cut()
        self.bytes_up = 0  # client -> server, for "wait until the upload is flowing"
        #: cut() as soon as this many bytes went client -> server (mid-write, exactly)
        self.cut_at_bytes_up: int | None = None
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._up

    def cut(self) -> None:
        with self._lock:
            self._up = False
            doomed = list(self._pairs)
            self._pairs.clear()
            self.cuts += len(doomed)
        for sock in doomed:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    @contextmanager
    def outage(self) -> Iterator[None]:
        self.cut()
        try:
            yield
        finally:
            self.restore()

    def close(self) -> None:
        self._closed = True
        self.cut()
        try:
            self._listener.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if not self._up:
                    _reset(client)
                    _reset(server)
                    continue
                self._pairs.update((client, server))
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(256 * 1024)
                if not data:
                    break
                dst.sendall(data)
                if upstream:
                    self.bytes_up += len(data)
                    if self.cut_at_bytes_up is not None and self.bytes_up >= self.cut_at_bytes_up:
                        self.cut_at_bytes_up = None
                        self.cut()
                        return
            dst.shutdown(socket.SHUT_WR)  # pass the end of this direction on
        except OSError:
            # A reset on one side: reset the other too (unless cut() already did).
            with self._lock:
                live = src in self._pairs
                self._pairs.discard(src)
                self._pairs.discard(dst)
            if live:
                _reset(src)
                _reset(dst)
            return
        with self._lock:
            # The second direction to finish closes both sockets.
            if src not in self._half and dst not in self._half:
                self._half.add(dst)
                return
            self._half.discard(src)
            self._half.discard(dst)
            self._pairs.discard(src)
            self._pairs.discard(dst)
        src.close()
        dst.close()
