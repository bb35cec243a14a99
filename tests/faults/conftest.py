"""Fault-injection fixtures: a TCP proxy in front of a server the test does not own, and
a Ceph cluster of the test's own whose daemons it may stop."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.faults.ceph import PrivateCeph
from tests.faults.proxy import TcpProxy
from tests.stores.backends import ROOT, BackendMissing, unavailable, worker_id


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


@pytest.fixture(scope="session")
def private_ceph() -> Iterator[PrivateCeph]:
    """A Ceph cluster of this worker's own, for tests that SIGSTOP its daemons (see
    tests/faults/ceph.py); started on first use, stopped at the end of the session."""
    # Under the repository's .tmp like the shared back ends, not in pytest's basetemp:
    # other pytest runs on the machine prune old basetemps, and the PID files must
    # outlive the session for the daemons to be stopped by PID.
    ceph = PrivateCeph(ROOT / ".tmp" / "faults-ceph" / worker_id())
    try:
        try:
            ceph.up()
        except BackendMissing as exc:
            unavailable(str(exc))
        print(f"\nprivate Ceph cluster up in {ceph.started_in:.1f}s ({ceph.root})")
        yield ceph
    finally:
        ceph.down()
