"""What an import plugin receives and returns, and the class every plugin extends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from oslo_config import cfg


@dataclass
class ImportData:
    """The staged data of one import and the image attributes plugins may change.

    ``path`` is a local file (the staging copy). A plugin that rewrites the data
    writes a new file, removes the old one and returns the new path.
    """

    path: str
    disk_format: str | None
    container_format: str | None
    properties: dict[str, str]
    roles: tuple[str, ...]
    image_id: str


class Plugin:
    """One step of the import pipeline (seed 000 §6.6).

    Subclasses set ``name`` (the name used in ``image_import_plugins``), may
    register their options in ``register_opts`` and implement ``run``, which
    returns the (possibly new) ImportData for the next plugin. Failures are
    raised as glimpse.errors exceptions with a message for the task.
    """

    name: ClassVar[str] = ""

    def __init__(self, conf: cfg.ConfigOpts):
        self.register_opts(conf)
        self.conf = conf

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        """Register the plugin's options; the base class has none."""

    @classmethod
    def list_opts(cls) -> list[tuple[str, list[cfg.Opt]]]:
        return []

    def run(self, data: ImportData) -> ImportData:
        raise NotImplementedError
