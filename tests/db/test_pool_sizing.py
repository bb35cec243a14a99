"""Requests queue on the event loop, not on the connection pool.

With ``[database] max_pool_size`` = N a worker runs at most N database calls
at once: more concurrent requests wait their turn without holding a thread,
no thread waits for a pooled connection, and the pool never opens overflow
connections for requests.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event

from glimpse.api.app import create_app
from glimpse.services import runtime as runtime_mod
from tests.conftest import as_project, make_conf
from tests.db.wire import server_backends

OWNER = as_project("pool-project")


class InUse:
    """Connections checked out of an engine's pool: now and at most."""

    def __init__(self, *engines) -> None:  # noqa: ANN002
        self.now = self.most = self.opened = 0
        self._lock = threading.Lock()
        for engine in engines:
            event.listen(engine, "checkout", self._out)
            event.listen(engine, "checkin", self._in)
            event.listen(engine, "connect", self._opened)

    def _out(self, *_a) -> None:  # noqa: ANN002
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def _in(self, *_a) -> None:  # noqa: ANN002
        with self._lock:
            self.now -= 1

    def _opened(self, *_a) -> None:  # noqa: ANN002
        with self._lock:
            self.opened += 1


@pytest.mark.parametrize("db_url", server_backends(), indirect=True)
def test_concurrent_requests_never_outnumber_the_pool(tmp_path: Path, db_url: str) -> None:
    conf = make_conf(tmp_path, db_url, **{"database.max_pool_size": 2})
    rt = runtime_mod.build(conf, migrate=True)
    app = create_app(conf, rt)

    async def scenario() -> tuple[list[int], InUse]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://glimpse") as c:
            r = await c.post("/v2/images", json={"name": "pooled"}, headers=OWNER)
            assert r.status_code == 201, r.text
            image_id = r.json()["id"]
            use = InUse(rt.db.read_engine, rt.db.engine)
            requests = [c.get(f"/v2/images/{image_id}", headers=OWNER) for _ in range(12)]
            requests += [c.get("/v2/images", headers=OWNER) for _ in range(12)]
            requests += [c.put(f"/v2/images/{image_id}/tags/t{n}", headers=OWNER)
                         for n in range(8)]
            answers = await asyncio.gather(*requests)
            return [a.status_code for a in answers], use

    try:
        codes, use = asyncio.run(scenario())
    finally:
        rt.close()
    assert set(codes) <= {200, 204}, codes
    assert 1 <= use.most <= 2, f"{use.most} connections in use at once with max_pool_size=2"
    # The pool kept its connections: no overflow connection opened and closed
    # per request (at most one new connection per pool).
    assert use.opened <= 4, use.opened
