"""Unpack Glance's metadefs catalogue (etc/metadefs/*.json) for the round-trip test.

The definition files ship as data files inside the glance wheel. The wheel is
downloaded with pip (no install, no dependencies) and only the JSON files are
kept, in DEST (default .tmp/glance-metadefs). Nothing is done when DEST already
holds them.

    python scripts/fetch_glance_metadefs.py [DEST]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

GLANCE = "glance==33.0.0"  # the release the benchmarks and docs compare with
ROOT = Path(__file__).resolve().parents[1]
MARKER = "compute-cpu-pinning.json"  # one file every recent catalogue has


def unpack(wheel: Path, dest: Path) -> int:
    count = 0
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            parts = name.split("/")
            if (len(parts) >= 2 and parts[-2] == "metadefs" and name.endswith(".json")
                    and "/etc/glance/metadefs/" in f"/{name}"):
                (dest / parts[-1]).write_bytes(zf.read(name))
                count += 1
    return count


def main(argv: list[str]) -> int:
    dest = Path(argv[0]) if argv else ROOT / ".tmp" / "glance-metadefs"
    if (dest / MARKER).exists():
        print(f"{dest}: already there")
        return 0
    with tempfile.TemporaryDirectory(prefix="glance-wheel-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--disable-pip-version-check", "--only-binary", ":all:", "-d", tmp,
                        GLANCE], check=True, timeout=300)
        wheels = list(Path(tmp).glob("glance-*.whl"))
        if not wheels:
            print(f"no glance wheel was downloaded into {tmp}", file=sys.stderr)
            return 1
        staging = dest.with_name(dest.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        count = unpack(wheels[0], staging)
        if count == 0 or not (staging / MARKER).exists():
            print(f"{wheels[0].name} holds no metadefs catalogue", file=sys.stderr)
            return 1
        shutil.rmtree(dest, ignore_errors=True)
        staging.replace(dest)
    print(f"{dest}: {count} definition files from {GLANCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
