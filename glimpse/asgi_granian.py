"""ASGI entry point of Granian's workers (``glimpse serve --http-server granian``):
the application of glimpse.asgi, with the grace period of glimpse.api.granian_worker,
in a worker that dies with its parent."""

from __future__ import annotations

from glimpse.api import granian_worker

granian_worker.install()
granian_worker.die_with_parent()

from glimpse.asgi import app  # noqa: E402 - after the signal wrapper, by design

__all__ = ["app"]
