"""A Ceph cluster of the test's own (mon + one OSD, no RGW) whose daemons the test may
stop with SIGSTOP: the shared cluster in GLIMPSE_BACKENDS_DIR serves the other tests
and workers and must never be paused.

Started through the project's own ``scripts/backends.sh up DIR ceph`` into
.tmp/faults-ceph/<xdist worker> (fresh free ports, a fresh cluster each run: about 15 s),
stopped by its recorded PIDs with ``scripts/backends.sh down DIR`` at the end of the
session.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.stores.backends import ROOT, BackendMissing, _ceph_bindings

SCRIPT = ROOT / "scripts" / "backends.sh"


class PrivateCeph:
    def __init__(self, root: Path):
        self.root = root
        self.started_in = 0.0
        self.env: dict[str, str] = {}
        self._admin: Any = None
        self.paused: set[str] = set()

    def up(self) -> None:
        self.rados, self.rbd = _ceph_bindings()
        # A fresh cluster each session: what an earlier (failed) run left is stopped
        # by its recorded PIDs and removed.
        self.down()
        shutil.rmtree(self.root, ignore_errors=True)
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(SCRIPT), "up", str(self.root), "ceph"],
                              capture_output=True, text=True, timeout=600, check=False)
        self.started_in = time.monotonic() - t0
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise BackendMissing(f"the private Ceph cluster in {self.root} did not come up "
                                 f"(scripts/backends.sh exit {proc.returncode}):\n{tail}")
        self.env = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)

    def down(self) -> None:
        for daemon in list(self.paused):
            self.resume(daemon)  # a stopped process would not see the SIGTERM
        if self._admin is not None:
            self._admin.shutdown()
            self._admin = None
        subprocess.run(["bash", str(SCRIPT), "down", str(self.root)], capture_output=True,
                       timeout=120, check=False)
        if not list((self.root / "ceph" / "run").glob("*.pid")):
            # Everything stopped: the data goes too (with PID files left, the next
            # session's down() stops those daemons first).
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ the daemons

    def pid(self, daemon: str) -> int:
        """The PID ceph recorded for ``daemon`` (``osd.0``, ``mon.a``)."""
        return int((self.root / "ceph" / "run" / f"{daemon}.pid").read_text())

    def pause(self, daemon: str = "osd.0") -> None:
        os.kill(self.pid(daemon), signal.SIGSTOP)
        self.paused.add(daemon)

    def resume(self, daemon: str = "osd.0") -> None:
        os.kill(self.pid(daemon), signal.SIGCONT)
        self.paused.discard(daemon)

    # ------------------------------------------------------------ what the pool holds

    @property
    def pool(self) -> str:
        return self.env["CEPH_POOL"]

    def admin(self) -> Any:
        if self._admin is None:
            admin = self.rados.Rados(conffile=self.env["CEPH_CONF"],
                                     rados_id=self.env["CEPH_ADMIN_USER"])
            admin.conf_set("rados_osd_op_timeout", "10")
            admin.conf_set("rados_mon_op_timeout", "10")
            admin.connect(timeout=30)
            self._admin = admin
        return self._admin

    def images(self) -> list[str]:
        """Every RBD image in the pool, listed with Ceph's own client as client.admin."""
        with self.admin().open_ioctx(self.pool) as ioctx:
            return sorted(self.rbd.RBD().list(ioctx))

    def section(self, name: str, **extra: object) -> str:
        """A glance-api.conf section for an rbd store on this cluster (user glance)."""
        options = {"rbd_store_pool": self.pool, "rbd_store_user": self.env["CEPH_USER"],
                   "rbd_store_ceph_conf": self.env["CEPH_CONF"], **extra}
        return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
