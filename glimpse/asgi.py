"""ASGI entry point for multi-worker serving (uvicorn --workers, gunicorn -k uvicorn).

Configuration comes from GLIMPSE_CONFIG_FILES (os.pathsep-separated) and
GLIMPSE_DATA_DIR, which `glimpse serve` sets for its workers.
"""

from __future__ import annotations

import ast
import os

from glimpse import logs
from glimpse.api.app import create_app, freeze_startup_objects
from glimpse.config import load_config


def _from_env():  # noqa: ANN202
    files = [p for p in os.environ.get("GLIMPSE_CONFIG_FILES", "").split(os.pathsep) if p]
    overrides = ast.literal_eval(os.environ.get("GLIMPSE_OVERRIDES", "{}"))
    conf = load_config(files, overrides)
    logs.setup(conf)  # a worker process: the same handlers and format as the parent
    app = create_app(conf)
    freeze_startup_objects()
    return app


app = _from_env()
