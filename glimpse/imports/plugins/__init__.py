"""The import plugin pipeline (seed 000 §6.6).

``[image_import_opts] image_import_plugins`` lists plugins by Glance's names;
they run one after the other in that order, each seeing the previous one's
output. The options usually live in glance-image-import.conf beside the main
config file, which ``glimpse.config.load_config`` reads into the same
namespace.
"""

from __future__ import annotations

from collections.abc import Sequence

from oslo_config import cfg, types

from glimpse.config import list_opt
from glimpse.imports.plugins.base import ImportData, Plugin
from glimpse.imports.plugins.image_conversion import ImageConversion
from glimpse.imports.plugins.image_decompression import ImageDecompression
from glimpse.imports.plugins.inject_image_metadata import InjectImageMetadata
from glimpse.imports.plugins.no_op import NoOp

GROUP = "image_import_opts"

PLUGINS: dict[str, type[Plugin]] = {
    cls.name: cls for cls in (ImageConversion, ImageDecompression, InjectImageMetadata, NoOp)
}

image_import_opts: list[cfg.Opt] = [
    # Glance's files quote and bracket the names: ['image_conversion', 'no_op'].
    list_opt("image_import_plugins", types.String(quotes=True), [],
             "Plugins run, in this order, on the data of every image import: "
             "image_conversion, image_decompression, inject_image_metadata, no_op."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the pipeline's options and those of every plugin."""
    conf.register_opts(image_import_opts, group=GROUP)
    for plugin in PLUGINS.values():
        plugin.register_opts(conf)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """The options of glance-image-import.conf, for oslo-config-generator."""
    found: list[tuple[str, list[cfg.Opt]]] = [(GROUP, list(image_import_opts))]
    for plugin in PLUGINS.values():
        found.extend(plugin.list_opts())
    return found


class Pipeline:
    def __init__(self, plugins: Sequence[Plugin]):
        self.plugins = tuple(plugins)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(plugin.name for plugin in self.plugins)

    def run(self, data: ImportData) -> ImportData:
        for plugin in self.plugins:
            data = plugin.run(data)
        return data


def build_pipeline(conf: cfg.ConfigOpts) -> Pipeline:
    """Instantiate the configured plugins; ValueError for a name no plugin has."""
    register_opts(conf)
    names = [name.strip() for name in conf[GROUP].image_import_plugins if name.strip()]
    unknown = [name for name in names if name not in PLUGINS]
    if unknown:
        raise ValueError(f"[{GROUP}] image_import_plugins names unknown plugin(s) "
                         f"{', '.join(unknown)}; known plugins: {', '.join(sorted(PLUGINS))}")
    return Pipeline([PLUGINS[name](conf) for name in names])


__all__ = ["ImportData", "Pipeline", "Plugin", "PLUGINS", "build_pipeline", "register_opts"]
