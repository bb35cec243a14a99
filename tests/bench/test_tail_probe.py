"""bench.tail_probe's helpers: which worker holds a connection, and its percentiles."""

from __future__ import annotations

import os
import socket

from bench.tail_probe import _owners, _pct


def test_owners_maps_each_client_port_to_the_accepting_process() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as one, \
                socket.create_connection(("127.0.0.1", port)) as two:
            clients = {one.getsockname()[1], two.getsockname()[1]}
            accepted = [server.accept()[0], server.accept()[0]]
            try:
                owners = _owners(port)
            finally:
                for conn in accepted:
                    conn.close()
    assert owners == dict.fromkeys(clients, os.getpid())


def test_percentiles_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert _pct(values, 0.5) == 51.0
    assert _pct(values, 0.99) == 100.0
    assert _pct(values, 1.0) == 100.0
