"""The no_op plugin: passes the import through unchanged (useful to test a pipeline)."""

from __future__ import annotations

from glimpse.imports.plugins.base import ImportData, Plugin


class NoOp(Plugin):
    name = "no_op"

    def run(self, data: ImportData) -> ImportData:
        return data
