"""docs/configuration.md lists every option Glimpse reads, and is up to date."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

from oslo_config import cfg

import glimpse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_config_doc  # noqa: E402


def _defined_opts() -> dict[int, str]:
    """Every cfg.Opt held in a module-level list or attribute anywhere in glimpse."""
    found: dict[int, str] = {}
    for info in pkgutil.walk_packages(glimpse.__path__, "glimpse."):
        if info.name in ("glimpse.asgi",):  # builds an app on import
            continue
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                if isinstance(item, cfg.Opt):
                    found[id(item)] = f"{info.name}.{attr}: {item.name}"
    return found


def test_every_option_defined_in_the_code_is_documented() -> None:
    documented = {id(opt) for _, opts in gen_config_doc._groups() for opt in opts}
    missing = [where for key, where in _defined_opts().items() if key not in documented]
    assert not missing, ("options missing from docs/configuration.md (add their module to "
                         f"EXTRA_SOURCES in scripts/gen_config_doc.py): {missing}")


def test_the_sections_the_issue_names_are_there() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for section in ("import_filtering_opts", "image_import_opts", "image_conversion",
                    "inject_metadata_properties", "metadef_limits", "healthcheck", "cors",
                    "oslo_middleware"):
        assert f"### [{section}]" in text


def test_configuration_md_is_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_doc.py"),
                           "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
