"""Start and stop the servers under test: Glimpse (``glimpse serve``) and real
OpenStack Glance (through the reference harness's start_glance.sh).

Both are set up alike: loopback only, 2 worker processes, SQLite (or, with
--db, a fresh database each on the same PostgreSQL or MariaDB server) and a
file store under the work directory, identity taken from trusted headers so
no Keystone is needed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLANCE_START = REPO_ROOT.parent / "shared" / "anchors" / "bench" / "start_glance.sh"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN_URL = os.environ.get("BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
SERVER_DBS = ("postgresql", "mariadb")

# The project and user the workload acts as, on every server (a project
# member, as a regular cloud user would be).
IDENTITY = {
    "X-Identity-Status": "Confirmed",
    "X-Project-Id": "0b5e6f3a2c1d4e7f8a9b0c1d2e3f4a5b",
    "X-User-Id": "1c6f7a4b3d2e4f8a9b0c1d2e3f4a5b6c",
    "X-Roles": "member,reader",
}
BENCH_PROJECT = IDENTITY["X-Project-Id"]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class GlanceUnavailable(Exception):
    """Real Glance cannot be started here (no start script): skip it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    """Direct children of ``pid``: from /proc/PID/task/*/children where the
    kernel has it, else by scanning every process's parent id."""
    found: set[int] = set()
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            found.update(int(c) for c in (task / "children").read_text().split())
        return sorted(found)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == pid:
            found.add(int(entry.name))
    return sorted(found)


def _ppid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited already; only its parent has not reaped it yet.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def wait_up(url: str, proc: subprocess.Popen | None = None, log: Path | None = None,
            timeout: float = START_TIMEOUT) -> None:
    """Until ``url`` answers 200 (or the process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s:\n{_tail(log)}")


def serve_config(root: Path, lines: list[str], port: int, http_server: str | None = None,
                 ) -> tuple[subprocess.Popen, str]:
    """Write ``lines`` as root/glance-api.conf, migrate its database and start
    ``glimpse serve`` on it (log in root/server.log; ``--http-server`` when given);
    the process and its URL."""
    conf = root / "glance-api.conf"
    conf.write_text("\n".join(lines) + "\n")
    glimpse = str(Path(sys.executable).parent / "glimpse")
    subprocess.run([glimpse, "db", "sync", "--config-file", str(conf)], check=True,
                   capture_output=True, timeout=120)
    log = (root / "server.log").open("wb")
    cmd = [glimpse, "serve", "--config-file", str(conf)]
    if http_server:
        cmd += ["--http-server", http_server]
    proc = subprocess.Popen(cmd, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)
    endpoint = f"http://127.0.0.1:{port}"
    wait_up(endpoint + "/versions", proc, root / "server.log")
    return proc, endpoint


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- servers


class Server:
    """A running server under test. As a context manager it stops on exit."""

    def __init__(self, name: str, endpoint: str, info: dict):
        self.name = name
        self.endpoint = endpoint
        self.headers = dict(IDENTITY)
        self.info = info

    def pids(self) -> list[int]:
        """PIDs of the worker processes that serve HTTP (for RSS sampling)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GlimpseServer(Server):
    def __init__(self, endpoint: str, info: dict, proc: subprocess.Popen, workers: int,
                 db_url: str, drop_db: str | None, db: str = "sqlite"):
        super().__init__("glimpse", endpoint, info)
        self.proc = proc
        self.workers = workers
        self.db_url = db_url
        self._drop_db = drop_db
        self._db = db

    def pids(self) -> list[int]:
        if self.proc.poll() is not None:
            return []
        if self.workers == 1:  # uvicorn serves in the master process itself
            return [self.proc.pid]
        # uvicorn spawns its workers with multiprocessing; leave out the
        # multiprocessing resource tracker, which serves nothing.
        return [p for p in children(self.proc.pid)
                if "resource_tracker" not in cmdline(p)]

    def stop(self) -> None:
        try:
            self._stop_processes()
        finally:
            if self._drop_db:
                drop_database(self._drop_db, self._db)
                self._drop_db = None

    def _stop_processes(self) -> None:
        if self.proc.poll() is not None:
            return
        workers = self.pids()
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        # Workers that outlived their master would keep the port and the database.
        if not _wait_gone(workers, 5):
            for pid in workers:
                _kill_quietly(pid, signal.SIGKILL)


class GlanceServer(Server):
    def __init__(self, endpoint: str, info: dict, master: int,
                 drop_db: tuple[str, str] | None = None):
        super().__init__("glance", endpoint, info)
        self.master = master
        self._drop_db = drop_db  # (name, kind) of the database made for it

    def pids(self) -> list[int]:
        # uWSGI runs with master = true: its children are the worker processes.
        return children(self.master) if alive(self.master) else []

    def stop(self) -> None:
        try:
            self._stop_processes()
        finally:
            if self._drop_db:
                drop_database(*self._drop_db)
                self._drop_db = None

    def _stop_processes(self) -> None:
        if not alive(self.master):
            return
        workers = self.pids()
        _kill_quietly(self.master, signal.SIGTERM)  # graceful with die-on-term
        if not _wait_gone([self.master, *workers], STOP_TIMEOUT):
            for pid in (self.master, *workers):
                _kill_quietly(pid, signal.SIGKILL)
            _wait_gone([self.master, *workers], 5)


# ---------------------------------------------------------------- Glimpse


def _glimpse_command() -> list[str]:
    script = Path(sys.executable).parent / "glimpse"
    return [str(script)] if script.exists() else [sys.executable, "-m", "glimpse.cli"]


def _admin(statement: str, kind: str = "postgresql") -> None:
    """Run one statement on the PostgreSQL or MariaDB server outside a transaction."""
    from sqlalchemy import create_engine, text

    admin = PG_ADMIN_URL if kind == "postgresql" else MYSQL_ADMIN_URL
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def create_database(kind: str = "postgresql", prefix: str = "bench_") -> tuple[str, str]:
    """A fresh database on the PostgreSQL or MariaDB server: (name, SQLAlchemy URL)."""
    from sqlalchemy.engine import make_url

    name = prefix + uuid.uuid4().hex[:12]
    if kind == "postgresql":
        _admin(f'CREATE DATABASE "{name}"')
        url = make_url(PG_ADMIN_URL).set(database=name)
    else:
        _admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4", kind)
        url = make_url(MYSQL_ADMIN_URL).set(database=name, query={"charset": "utf8mb4"})
    return name, url.render_as_string(hide_password=False)


def drop_database(name: str, kind: str = "postgresql") -> None:
    if kind == "postgresql":
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        _admin(f"DROP DATABASE IF EXISTS `{name}`", kind)


def oslo_db_url(url: str) -> str:
    """The same database as Glance's oslo.db names it (psycopg2 for PostgreSQL)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def glimpse_config(root: Path, port: int, workers: int, db_url: str) -> str:
    """glance-api.conf-style configuration: every path under ``root``."""
    return "\n".join([
        "[DEFAULT]",
        "bind_host = 127.0.0.1",
        f"bind_port = {port}",
        f"workers = {workers}",
        f"data_dir = {root}",
        "auth_strategy = trusted-headers",
        f"node_staging_uri = file://{root / 'staging'}",
        "",
        "[database]",
        f"connection = {db_url}",
        "",
        "[glance_store]",
        f"filesystem_store_datadir = {root / 'images'}",
        "",
        "[task]",
        f"work_dir = {root / 'tasks'}",
        "",
    ])


def start_glimpse(workdir: str, db: str = "sqlite", workers: int = 2,
                  port: int = 0, keep_db: bool = False,
                  extra_config: str = "", http_server: str | None = None) -> GlimpseServer:
    """Configure, migrate and start ``glimpse serve``; wait until it answers.
    A PostgreSQL or MariaDB database is dropped at stop unless ``keep_db``;
    ``extra_config`` is appended to the generated configuration file;
    ``http_server`` ("uvicorn", "granian") is passed as ``--http-server``."""
    if db not in ("sqlite", *SERVER_DBS):
        raise ValueError(f"unknown database kind {db!r}")
    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    pg_name = None
    if db in SERVER_DBS:
        pg_name, db_url = create_database(db)
    else:
        db_url = f"sqlite:///{root / 'glimpse.sqlite'}"
    try:
        conf = root / "glance-api.conf"
        conf.write_text(glimpse_config(root, port, workers, db_url) + extra_config)
        log = root / "server.log"
        cmd = _glimpse_command()
        sync = subprocess.run([*cmd, "db", "sync", "--config-file", str(conf)],
                              capture_output=True, text=True, timeout=120)
        if sync.returncode != 0:
            raise RuntimeError(f"glimpse db sync failed:\n{sync.stdout}{sync.stderr}")
        with log.open("wb") as out:
            serve = [*cmd, "serve", "--config-file", str(conf)]
            if http_server:
                serve += ["--http-server", http_server]
            proc = subprocess.Popen(serve,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=root)
        endpoint = f"http://127.0.0.1:{port}"
        info = {"kind": "glimpse", "endpoint": endpoint, "workers": workers, "db": db,
                "http_server": http_server or "default",
                "config": str(conf), "log": str(log), "data_dir": str(root),
                "images_dir": str(root / "images"),
                "db_url": db_url if db == "sqlite" else f"{db} database {pg_name}"}
        server = GlimpseServer(endpoint, info, proc, workers, db_url,
                               None if keep_db else pg_name, db)
    except BaseException:
        if pg_name:
            drop_database(pg_name, db)
        raise
    try:
        wait_up(endpoint + "/versions", proc, log)
        _wait_workers(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_workers(server: GlimpseServer, timeout: float = 10.0) -> None:
    """/versions may answer before every worker is up; RSS wants them all."""
    deadline = time.monotonic() + timeout
    while len(server.pids()) < server.workers and time.monotonic() < deadline:
        time.sleep(0.1)


# ---------------------------------------------------------------- Glance


def glance_start_script() -> Path | None:
    candidate = Path(os.environ.get("GLANCE_START") or DEFAULT_GLANCE_START)
    return candidate if candidate.is_file() else None


def start_glance(workdir: str, port: int = 0, workers: int = 2,
                 venv: str | None = None, db: str = "sqlite") -> GlanceServer:
    """Real Glance under uWSGI via start_glance.sh (which creates its venv
    when GLANCE_VENV does not point at one: that takes a while). With ``db``
    PostgreSQL or MariaDB, Glance gets a fresh database of its own on the same
    server as Glimpse's (GLANCE_DB_URL), dropped at stop."""
    script = glance_start_script()
    if script is None:
        where = os.environ.get("GLANCE_START") or DEFAULT_GLANCE_START
        raise GlanceUnavailable(f"no start_glance.sh at {where} (set GLANCE_START)")
    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = dict(os.environ)
    if venv:
        env["GLANCE_VENV"] = venv
    made = None
    if db in SERVER_DBS:
        name, url = create_database(db, prefix="bench_glance_")
        made = (name, db)
        env["GLANCE_DB_URL"] = oslo_db_url(url)
    try:
        log = root / "start_glance.log"
        with log.open("wb") as err:
            done = subprocess.run(["bash", str(script), str(root), str(port), str(workers)],
                                  stdout=subprocess.PIPE, stderr=err, env=env, timeout=900)
        lines = done.stdout.decode().split()
        if done.returncode != 0 or not lines or not lines[-1].isdigit():
            raise RuntimeError(f"start_glance.sh failed ({done.returncode}):\n{_tail(log)}")
    except BaseException:
        if made:
            drop_database(*made)
        raise
    master = int(lines[-1])
    endpoint = f"http://127.0.0.1:{port}"
    info = {"kind": "glance", "endpoint": endpoint, "workers": workers, "db": db,
            "workdir": str(root), "venv": env.get("GLANCE_VENV", str(root / "venv")),
            "log": str(root / "log"), "version": _glance_version(env, root)}
    server = GlanceServer(endpoint, info, master, made)
    try:
        _wait_glance_workers(server, workers)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_glance_workers(server: GlanceServer, workers: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(server.pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.1)


def _glance_version(env: dict[str, str], root: Path) -> str | None:
    python = Path(env.get("GLANCE_VENV") or root / "venv") / "bin" / "python"
    try:
        out = subprocess.run(
            [str(python), "-c",
             "import importlib.metadata as m; print(m.version('glance'))"],
            capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
