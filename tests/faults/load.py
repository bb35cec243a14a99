"""Clients that keep a live server busy while a test injects a fault, and record
every answer (status, when, which phase) so the test can judge each phase."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = {"Accept": "application/json"}


@dataclass
class Answer:
    at: float
    op: str
    status: int  # 0: transport error (no HTTP answer)
    detail: str = ""


@dataclass
class Load:
    """``clients`` threads, each owning one image, looping over list / show / PATCH.

    Each PATCH sets two properties to the same counter value in one request, so a
    half-applied change would show as two different values."""

    url: str
    clients: int = 8
    answers: list[Answer] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    #: per image, values PATCHed with a 200 answer, and those answered otherwise
    done: dict[str, list[int]] = field(default_factory=dict)
    unsure: dict[str, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with httpx.Client(base_url=self.url, headers=JSON, timeout=30) as api:
            for i in range(self.clients):
                r = api.post(
                    "/v2/images",
                    json={
                        "name": f"load-{i}",
                        "disk_format": "raw",
                        "container_format": "bare",
                        "x_a": "0",
                        "x_b": "0",
                    },
                )
                assert r.status_code == 201, r.text
                self.images.append(r.json()["id"])
        for image_id in self.images:
            self.done[image_id], self.unsure[image_id] = [], []
            t = threading.Thread(target=self._run, args=(image_id,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
            assert not t.is_alive(), "a load client hung"

    def _record(self, op: str, call: Callable[[], httpx.Response]) -> httpx.Response | None:
        t = time.monotonic()
        try:
            r = call()
        except httpx.HTTPError as exc:
            with self._lock:
                self.answers.append(Answer(t, op, 0, repr(exc)))
            return None
        with self._lock:
            self.answers.append(
                Answer(t, op, r.status_code, r.text[:300] if r.status_code >= 400 else "")
            )
        return r

    def _run(self, image_id: str) -> None:
        patch = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
        n = 0
        with httpx.Client(base_url=self.url, headers=JSON, timeout=30) as api:
            while not self._stop.is_set():
                self._record("list", lambda: api.get("/v2/images?limit=5"))
                self._record("show", lambda: api.get(f"/v2/images/{image_id}"))
                n += 1
                body = [
                    {"op": "replace", "path": "/x_a", "value": str(n)},
                    {"op": "replace", "path": "/x_b", "value": str(n)},
                ]
                r = self._record(
                    "patch",
                    lambda b=body: api.patch(f"/v2/images/{image_id}", json=b, headers=patch),
                )
                (self.done if r is not None and r.status_code == 200 else self.unsure)[
                    image_id
                ].append(n)
                time.sleep(0.01)

    def between(self, start: float, end: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if start <= a.at < end]

    @staticmethod
    def statuses(answers: list[Answer]) -> Counter[int]:
        return Counter(a.status for a in answers)

    def check_no_lost_or_half_updates(self, api: httpx.Client) -> dict[str, Any]:
        """Every image shows the last value answered 200, or a later one whose answer
        was lost (a commit can succeed just before its connection is cut), and both
        properties of one PATCH agree."""
        lost = half = 0
        for image_id in self.images:
            img = api.get(f"/v2/images/{image_id}").json()
            a, b = int(img["x_a"]), int(img["x_b"])
            if a != b:
                half += 1
            last_ok = max(self.done[image_id], default=0)
            later_unsure = {v for v in self.unsure[image_id] if v > last_ok}
            if a != last_ok and a not in later_unsure:
                lost += 1
        return {"lost": lost, "half": half, "patched": sum(len(v) for v in self.done.values())}
