"""Counting database round trips on the wire, and statements through SQLAlchemy.

``WireCounter`` is a TCP relay on 127.0.0.1 in front of a real PostgreSQL or
MariaDB server. It counts one round trip each time the client speaks after
the server did (or first): a query, a driver's implicit BEGIN, a COMMIT, a
ping, a pool's reset ROLLBACK each cost one, however many packets they take,
and a pipelined batch costs one. What the drivers do behind SQLAlchemy's back
is counted too, because nothing else is looked at but the bytes.
"""

from __future__ import annotations

import selectors
import socket
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, event


class WireCounter:
    def __init__(self, upstream_host: str, upstream_port: int):
        if not upstream_host.startswith("127.") and upstream_host not in ("localhost", "::1"):
            raise ValueError("the relay only forwards to a loopback database")
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._turns = 0
        self._stop = False
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        # socket -> (peer socket, is_client_side, per-connection state)
        self._thread = threading.Thread(target=self._run, daemon=True, name="wire-counter")
        self._thread.start()

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._turns

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(0.2):
                if key.data is None:
                    self._accept()
                else:
                    self._relay(key.fileobj, key.data)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(self._upstream)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state = {"last": "server"}  # the server greets first on MariaDB; harmless on PG
        self._sel.register(client, selectors.EVENT_READ, (server, "client", state))
        self._sel.register(server, selectors.EVENT_READ, (client, "server", state))

    def _relay(self, sock: socket.socket, data: tuple) -> None:
        peer, side, state = data
        try:
            chunk = sock.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            for s in (sock, peer):
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
            return
        if side == "client" and state["last"] == "server":
            with self._lock:
                self._turns += 1
        state["last"] = side
        peer.sendall(chunk)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()
        self._sel.close()


@dataclass
class StatementLog:
    """Statements SQLAlchemy sends, with transaction boundaries, for messages and
    for SQLite (which has no wire)."""

    entries: list[str] = field(default_factory=list)

    def attach(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _stmt(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
            self.entries.append(" ".join(statement.split())[:120])

        for name in ("begin", "commit", "rollback"):
            event.listen(engine, name, self._marker(name.upper()))

    def _marker(self, label: str):  # noqa: ANN202
        def _record(conn) -> None:  # noqa: ANN001
            self.entries.append(label)
        return _record

    def clear(self) -> None:
        self.entries.clear()

    @property
    def statements(self) -> int:
        return sum(1 for e in self.entries if e not in ("BEGIN", "COMMIT", "ROLLBACK"))


def server_backends() -> list[str]:
    """The server databases this run tests (GLIMPSE_TEST_DBS), for tests that
    need a lock cycle, a socket or a wire: SQLite has none of them."""
    from tests.conftest import BACKENDS

    return [b for b in BACKENDS if b != "sqlite"]
