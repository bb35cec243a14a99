"""A receiver of fluentd's Forward protocol (v1) on 127.0.0.1, for the tests.

Debian 12 has no fluentd package (and the tests install nothing from outside the
registries), so the tests own a receiver that speaks the protocol fluentd's
in_forward input speaks: a TCP stream of MessagePack arrays in any of its four
modes — Message ``[tag, time, record, option?]``, Forward ``[tag, [[time,
record], ...], option?]``, PackedForward ``[tag, bin, option?]`` and
CompressedPackedForward (the same, gzip'd, ``option.compressed == "gzip"``) —
with the time an integer or an EventTime (MessagePack ext type 0: seconds and
nanoseconds, big-endian), and the ``{"ack": chunk}`` answer when the client asks
for one. Whatever it cannot decode fails the test (``errors``).
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack


@dataclass(frozen=True)
class Event:
    tag: str
    time: float
    record: dict[str, Any]
    event_time: bool  # sent as an EventTime (nanoseconds), not a whole second


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        seconds, nanoseconds = struct.unpack(">II", data)
        return _EventTime(seconds + nanoseconds / 1e9)
    return msgpack.ExtType(code, data)


class _EventTime(float):
    pass


class ForwardReceiver:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.events: list[Event] = []
        self.errors: list[str] = []
        self.connections = 0
        self._changed = threading.Condition()
        self._closing = False
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self._closing = True
        self._sock.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> ForwardReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 20) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.errors:
                    raise AssertionError(f"undecodable Forward traffic: {self.errors}")
                found = next((e for e in self.events if predicate(e)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such event in {timeout} s; got "
                                         f"{[e.record for e in self.events][-10:]}")
                self._changed.wait(left)

    # -- the server side

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, ext_hook=_ext_hook, strict_map_key=False)
        conn.settimeout(0.5)
        with conn:
            while not self._closing:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                unpacker.feed(data)
                for message in unpacker:
                    try:
                        self._message(conn, message)
                    except Exception as exc:  # noqa: BLE001 - reported to the test
                        with self._changed:
                            self.errors.append(f"{exc!r} in {message!r:.200}")
                            self._changed.notify_all()

    def _message(self, conn: socket.socket, message: Any) -> None:
        if not isinstance(message, list) or len(message) not in (2, 3, 4):
            raise ValueError("not a Forward protocol array")
        tag, second = message[0], message[1]
        if not isinstance(tag, str):
            raise ValueError("the tag is not a string")
        if isinstance(second, int | float):  # Message mode
            entries = [(second, message[2])]
            option = message[3] if len(message) == 4 else None
        elif isinstance(second, list):  # Forward mode
            entries = [(t, r) for t, r in second]
            option = message[2] if len(message) == 3 else None
        elif isinstance(second, bytes):  # (Compressed)PackedForward mode
            option = message[2] if len(message) == 3 else None
            blob = second
            if isinstance(option, dict) and option.get("compressed") == "gzip":
                blob = gzip.decompress(blob)
            inner = msgpack.Unpacker(raw=False, ext_hook=_ext_hook, strict_map_key=False)
            inner.feed(blob)
            entries = [(t, r) for t, r in inner]
        else:
            raise ValueError(f"unknown Forward mode (second element {type(second)})")
        events = []
        for t, record in entries:
            if not isinstance(record, dict):
                raise ValueError(f"a record is not a map: {record!r:.100}")
            events.append(Event(tag, float(t), record, isinstance(t, _EventTime)))
        with self._changed:
            self.events.extend(events)
            self._changed.notify_all()
        if isinstance(option, dict) and option.get("chunk"):
            conn.sendall(msgpack.packb({"ack": option["chunk"]}))
