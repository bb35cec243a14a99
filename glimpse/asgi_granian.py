"""ASGI entry point of Granian's workers (``glimpse serve --http-server granian``):
the application of glimpse.asgi, with the grace period of glimpse.api.granian_worker."""

from __future__ import annotations

from glimpse.api import granian_worker

granian_worker.install()

from glimpse.asgi import app  # noqa: E402 - after the signal wrapper, by design

__all__ = ["app"]
