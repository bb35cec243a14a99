"""How much a block of code grows this process: for the drivers' memory tests."""

from __future__ import annotations

import threading
from pathlib import Path


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """The largest RSS of this process while the block runs, sampled every 20 ms."""

    def __enter__(self) -> PeakRss:
        self.peak, self._stop = rss_mib(), threading.Event()
        self.before = self.peak

        def sample() -> None:
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, rss_mib())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return self.peak - self.before
