"""Fault-injection fixtures: a TCP proxy in front of a server the test does not own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.faults.proxy import TcpProxy


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    made: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()
