"""Store throughput: upload and download of one image through the API, per writable
driver, next to the back end's own client and real Glance on the same server, in the
same run.

    .venv/bin/python -m bench.stores [--size-mib 1024] [--rounds 1]
        [--stores file,rbd,s3-rgw,s3-seaweedfs,swift] [--glance] [--out FILE.json]

Starts the real servers with scripts/backends.sh (GLIMPSE_BACKENDS_DIR, default
.tmp/backends; reused when up) and `glimpse serve` with 2 workers, SQLite, trusted
headers and one store of each kind. With --glance, also real Glance 33 under uWSGI
(2 processes) through ../shared/anchors/bench/start_glance.sh (GLANCE_START), its
configuration given the same store sections on the same servers (GLANCE_VENV, default
.tmp/glance-venv, gets boto3, python-swiftclient and the Ceph bindings).

Per driver and round, the three take turns (Glimpse, Glance, raw; the next round
reversed) so load from the machine's neighbours falls on all of them. Printed: MiB/s
of Glimpse and Glance upload / download, the raw rate (rbd: `rbd import` / `rbd
export`; s3: a boto3 multipart put / GET; swift: `swift upload` with 200 MiB
segments / `swift download`; file: a copy with fdatasync / a read of the file) and the
largest worker RSS seen during upload and download (goal: under 200 MiB). Each
download is timed on a plain socket that counts bytes, and its md5 checked in an
untimed second pass.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench import workload
from bench.servers import (
    IDENTITY,
    REPO_ROOT,
    children,
    free_port,
    glance_start_script,
    serve_config,
)

MIB = 1024 * 1024
PIECE = 4 * MIB
KINDS = ("file", "rbd", "s3-rgw", "s3-seaweedfs", "swift")
STORE_NAME = {"file": "local", "rbd": "rbd", "s3-rgw": "rgw", "s3-seaweedfs": "weed",
              "swift": "swift"}
BACKEND = {"rbd": "ceph", "s3-rgw": "s3-rgw", "s3-seaweedfs": "s3-seaweedfs",
           "swift": "swift"}
RSS_GOAL_MIB = 200


def keystone_env() -> dict[str, str]:
    """SWIFT_KEYSTONE_* for scripts/backends/swift.sh from the project's Keystone
    (GLIMPSE_KEYSTONE_DIR/keystone.env, scripts/keystone.sh), empty without one."""
    directory = os.environ.get("GLIMPSE_KEYSTONE_DIR")
    state = Path(directory) / "keystone.env" if directory else None
    if state is None or not state.exists():
        return {}
    values = dict(line.split("=", 1) for line in state.read_text().splitlines() if "=" in line)
    url = values.get("KEYSTONE_URL") or f"http://127.0.0.1:{values['KEYSTONE_PORT']}/v3"
    return {"SWIFT_KEYSTONE_AUTH_URL": url, "SWIFT_KEYSTONE_USER": values["SERVICE_USER"],
            "SWIFT_KEYSTONE_PASSWORD": values["SERVICE_PASSWORD"],
            "SWIFT_KEYSTONE_PROJECT": "service"}


def backends(kind: str) -> dict[str, str]:
    where = os.environ.get("GLIMPSE_BACKENDS_DIR") or str(REPO_ROOT / ".tmp" / "backends")
    extra = keystone_env() if kind == "swift" else {}
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "backends.sh"), "up", where, kind],
                         capture_output=True, text=True, check=True, timeout=900,
                         env={**os.environ, **extra}).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def make_data(path: Path, size: int) -> str:
    digest = hashlib.md5()  # noqa: S324 - a checksum, as Glance's
    with path.open("wb") as f:
        block = os.urandom(PIECE)
        written = 0
        while written < size:
            piece = block[:min(PIECE, size - written)]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def workers_rss(master: int) -> float:
    """The largest RSS (MiB) among the server's worker processes now."""
    most = 0.0
    for pid in children(master):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    most = max(most, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return most


class RssWatch:
    """The largest RSS (MiB) of the server's worker processes while it runs."""

    def __init__(self, master: int):
        self.master, self.peak, self._stop = master, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in children(self.master):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) / 1024)
                except OSError:
                    pass

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()



def store_sections(env: dict[str, str], kinds: list[str], root: Path, tag: str) -> list[str]:
    """glance_store-style sections for ``kinds``, the same option names for Glimpse
    and Glance; ``tag`` keeps their buckets and containers apart."""
    stores = ", ".join(["local:file"] + [f"{STORE_NAME[k]}:{k.split('-')[0]}" for k in kinds
                                         if k != "file"])
    lines = [f"enabled_backends = {stores}",
             "[glance_store]", "default_backend = local",
             "[local]", f"filesystem_store_datadir = {root / 'images'}/"]
    if "rbd" in kinds:
        lines += ["[rbd]", f"rbd_store_pool = {env['CEPH_POOL']}",
                  f"rbd_store_user = {env['CEPH_USER']}",
                  f"rbd_store_ceph_conf = {env['CEPH_CONF']}", "rbd_store_chunk_size = 8",
                  "rados_connect_timeout = 30"]
    for kind, endpoint, access, secret in (
            ("s3-rgw", "S3_RGW_ENDPOINT", "S3_RGW_ACCESS_KEY", "S3_RGW_SECRET_KEY"),
            ("s3-seaweedfs", "S3_SEAWEEDFS_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY")):
        if kind in kinds:
            lines += [f"[{STORE_NAME[kind]}]", f"s3_store_host = {env[endpoint]}",
                      f"s3_store_access_key = {env[access]}",
                      f"s3_store_secret_key = {env[secret]}",
                      f"s3_store_bucket = glimpse-bench-{tag}-{STORE_NAME[kind]}",
                      "s3_store_create_bucket_on_put = true",
                      "s3_store_bucket_url_format = path"]
    if "swift" in kinds:
        # Keystone v3 when the project's Keystone is up (Glance's swift driver needs it:
        # with tempauth it cannot find its endpoint), else tempauth (Glimpse only).
        accounts = root / "glance-swift.conf"
        if env.get("SWIFT_KEYSTONE_ENDPOINT"):
            accounts.write_text(f"[ref1]\nauth_address = {env['SWIFT_KEYSTONE_AUTH_URL']}\n"
                                f"auth_version = 3\nuser = {env['SWIFT_KEYSTONE_USER']}\n"
                                f"key = {env['SWIFT_KEYSTONE_KEY']}\n"
                                "user_domain_id = default\nproject_domain_id = default\n")
            endpoint = [f"swift_store_endpoint = {env['SWIFT_KEYSTONE_ENDPOINT']}"]
        else:
            accounts.write_text(f"[ref1]\nauth_address = {env['SWIFT_AUTH_URL']}\n"
                                f"auth_version = 1\nuser = {env['SWIFT_USER']}\n"
                                f"key = {env['SWIFT_KEY']}\n")
            endpoint = []
        lines += ["[swift]", f"swift_store_config_file = {accounts}",
                  "default_swift_reference = ref1", *endpoint,
                  f"swift_store_container = glimpse-bench-{tag}",
                  "swift_store_create_container_on_put = true"]
    return lines


def start_glimpse(root: Path, env: dict[str, str], kinds: list[str]
                  ) -> tuple[subprocess.Popen, str]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = ["[DEFAULT]", "bind_host = 127.0.0.1", f"bind_port = {port}", "workers = 2",
             f"data_dir = {root}", "auth_strategy = trusted-headers",
             *store_sections(env, kinds, root, "a"),
             "[database]", f"connection = sqlite:///{root / 'glimpse.sqlite'}",
             "[os_glance_staging_store]", f"filesystem_store_datadir = {root / 'staging'}",
             "[os_glance_tasks_store]", f"filesystem_store_datadir = {root / 'tasks'}"]
    return serve_config(root, lines, port)


class Glance:
    """Real Glance under uWSGI: start_glance.sh makes its venv, configuration and
    database; its configuration then gets the store sections and uWSGI is started
    again on it (start_glance.sh writes its template's file store only)."""

    def __init__(self, root: Path, env: dict[str, str], kinds: list[str]):
        script = glance_start_script()
        if script is None:
            raise RuntimeError("no start_glance.sh (set GLANCE_START)")
        self.root = root
        venv = Path(os.environ.get("GLANCE_VENV") or REPO_ROOT / ".tmp" / "glance-venv")
        self.port = free_port()
        run_env = {**os.environ, "GLANCE_VENV": str(venv)}
        out = subprocess.run(["bash", str(script), str(root), str(self.port), "2"],
                             capture_output=True, text=True, env=run_env, timeout=1200)
        if out.returncode != 0:
            raise RuntimeError(f"start_glance.sh failed:\n{out.stderr[-2000:]}")
        self._stop(int(out.stdout.split()[-1]))
        missing = subprocess.run([str(venv / "bin" / "python"), "-c",
                                  "import boto3, swiftclient"], capture_output=True)
        if missing.returncode:
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "boto3",
                            "python-swiftclient"], check=True, capture_output=True)
        if "rbd" in kinds:
            subprocess.run(["bash", str(REPO_ROOT / "scripts" / "ceph-bindings.sh"),
                            str(venv)], check=True, capture_output=True)
        conf = root / "etc" / "glance-api.conf"
        text = conf.read_text()
        sections = store_sections(env, kinds, root, "g")
        text = text.replace("enabled_backends = local:file\n", sections[0] + "\n")
        head, _, rest = text.partition("[glance_store]")
        rest = rest.split("[os_glance_staging_store]", 1)[1]
        conf.write_text(head + "\n".join(sections[1:]) + "\n[os_glance_staging_store]" + rest)
        log = (root / "log" / "uwsgi-bench.stdout").open("wb")
        self.proc = subprocess.Popen([str(venv / "bin" / "uwsgi"), "--ini",
                                      str(root / "etc" / "uwsgi.ini")], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(self.endpoint + "/v2/images?limit=1", headers=IDENTITY, timeout=5)
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Glance did not come up; see {root / 'log'}") from None
                time.sleep(0.5)

    def _stop(self, pid: int) -> None:
        """Stop start_glance.sh's uWSGI (master and workers) and wait for its port."""
        pids = [pid, *children(pid)]
        for sig in (signal.SIGINT, signal.SIGKILL):
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
            except httpx.ConnectError:
                return
            time.sleep(0.2)

    def log_tail(self, lines: int = 12) -> str:
        log = self.root / "log" / "glance-api.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def api_round(endpoint: str, master: int, store: str, data: Path, size: int, md5: str
              ) -> dict[str, float]:
    """Upload to ``store`` and download through the API: MiB/s and peak worker RSS."""
    headers = dict(IDENTITY)
    with httpx.Client(base_url=endpoint, headers=headers, timeout=900) as client:
        r = client.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
        r.raise_for_status()
        image_id = r.json()["id"]

        def body():  # noqa: ANN202
            with data.open("rb") as f:
                while piece := f.read(PIECE):
                    yield piece

        with RssWatch(master) as up_rss:
            start = time.monotonic()
            r = client.put(f"/v2/images/{image_id}/file", content=body(),
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Length": str(size), "X-Image-Meta-Store": store})
            up = time.monotonic() - start
        r.raise_for_status()
        path = f"/v2/images/{image_id}/file"
        # Timed on a plain socket that only counts the bytes: httpx and an md5 in the
        # client top out under 1 GiB/s, below a file-store download over loopback.
        with RssWatch(master) as down_rss:
            start = time.monotonic()
            status, got = workload.raw_download(
                workload.Target(store, endpoint, headers), path)
            down = time.monotonic() - start
        if status != 200 or got != size:
            raise RuntimeError(f"{store}: download answered {status} with {got} bytes")
        digest = hashlib.md5()  # noqa: S324 - untimed: every byte checked
        with client.stream("GET", path) as resp:
            resp.raise_for_status()
            for piece in resp.iter_raw(PIECE):
                digest.update(piece)
        if digest.hexdigest() != md5:
            raise RuntimeError(f"{store}: downloaded data differs")
        # Glance's swift driver deletes through the catalog's object-store endpoint even
        # with swift_store_endpoint set (a 500 without one): noted, the figures stand.
        deleted = client.delete(f"/v2/images/{image_id}").status_code
    figures = {"up": size / MIB / up, "down": size / MIB / down, "rss_up": up_rss.peak,
               "rss_down": down_rss.peak}
    if deleted != 204:
        figures["delete_status"] = float(deleted)
    return figures


def raw_s3(env: dict[str, str], kind: str, data: Path, size: int) -> tuple[float, float]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    prefix = "S3_RGW_" if kind == "s3-rgw" else "S3_"
    endpoint = env["S3_RGW_ENDPOINT" if kind == "s3-rgw" else "S3_SEAWEEDFS_ENDPOINT"]
    client = boto3.client("s3", endpoint_url=endpoint,
                          aws_access_key_id=env[prefix + "ACCESS_KEY"],
                          aws_secret_access_key=env[prefix + "SECRET_KEY"],
                          region_name="us-east-1",
                          config=Config(signature_version="s3v4",
                                        s3={"addressing_style": "path"}))
    bucket, key = f"glimpse-bench-raw-{os.urandom(3).hex()}", "raw"
    client.create_bucket(Bucket=bucket)
    transfer = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=16 * MIB,
                              max_concurrency=10)
    try:
        start = time.monotonic()
        client.upload_file(str(data), bucket, key, Config=transfer)
        up = time.monotonic() - start
        start = time.monotonic()
        with open(os.devnull, "wb") as sink:
            client.download_fileobj(bucket, key, sink, Config=transfer)
        down = time.monotonic() - start
    finally:
        client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)
    return size / MIB / up, size / MIB / down


def raw_swift(env: dict[str, str], data: Path, size: int) -> tuple[float, float]:
    swift = [str(Path(sys.executable).parent / "swift"), "-A", env["SWIFT_AUTH_URL"], "-U",
             env["SWIFT_USER"], "-K", env["SWIFT_KEY"]]
    container, name = f"glimpse-bench-raw-{os.urandom(3).hex()}", "raw"
    start = time.monotonic()
    subprocess.run([*swift, "upload", "--segment-size", str(200 * MIB), "--object-name", name,
                    container, str(data)], check=True, capture_output=True)
    up = time.monotonic() - start
    start = time.monotonic()
    subprocess.run([*swift, "download", container, name, "-o", os.devnull], check=True,
                   capture_output=True)
    down = time.monotonic() - start
    subprocess.run([*swift, "delete", container], check=True, capture_output=True)
    subprocess.run([*swift, "delete", f"{container}_segments"], check=False,
                   capture_output=True)
    return size / MIB / up, size / MIB / down


def raw_rbd(ceph: dict[str, str], data: Path, size: int) -> tuple[float, float]:
    name = f"bench-raw-{os.urandom(4).hex()}"
    base = ["rbd", "-c", ceph["CEPH_CONF"], "--id", ceph["CEPH_USER"]]
    start = time.monotonic()
    subprocess.run([*base, "import", "--no-progress", str(data), f"{ceph['CEPH_POOL']}/{name}"],
                   check=True, capture_output=True)
    up = time.monotonic() - start
    start = time.monotonic()
    with open(os.devnull, "wb") as sink:
        subprocess.run([*base, "export", "--no-progress", f"{ceph['CEPH_POOL']}/{name}", "-"],
                       check=True, stdout=sink, stderr=subprocess.PIPE)
    down = time.monotonic() - start
    subprocess.run([*base, "rm", "--no-progress", f"{ceph['CEPH_POOL']}/{name}"], check=True,
                   capture_output=True)
    return size / MIB / up, size / MIB / down


def raw_file(root: Path, data: Path, size: int) -> tuple[float, float]:
    target = root / "raw-copy"
    start = time.monotonic()
    with data.open("rb") as src, target.open("wb") as dst:
        while piece := src.read(PIECE):
            dst.write(piece)
        dst.flush()
        os.fdatasync(dst.fileno())
    up = time.monotonic() - start
    start = time.monotonic()
    with target.open("rb") as f:
        while f.read(PIECE):
            pass
    down = time.monotonic() - start
    target.unlink()
    return size / MIB / up, size / MIB / down


def raw_round(kind: str, env: dict[str, str], root: Path, data: Path, size: int
              ) -> dict[str, float]:
    if kind == "rbd":
        up, down = raw_rbd(env, data, size)
    elif kind.startswith("s3-"):
        up, down = raw_s3(env, kind, data, size)
    elif kind == "swift":
        up, down = raw_swift(env, data, size)
    else:
        up, down = raw_file(root, data, size)
        # issue 18's reference for a file-store download: the same page-cached file
        # sent over loopback TCP with sendfile, in the same round
        from bench.limits import _loopback_sendfile

        return {"up": up, "down": down, "sendfile": _loopback_sendfile(str(data))}
    return {"up": up, "down": down}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stores", default=",".join(KINDS))
    ap.add_argument("--glance", action="store_true", help="real Glance on the same servers")
    ap.add_argument("--out", help="also write the figures as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    kinds = [k for k in KINDS if k in args.stores.split(",")]
    env: dict[str, str] = {}
    for kind in kinds:
        if kind in BACKEND:
            env.update(backends(BACKEND[kind]))
    size = args.size_mib * MIB
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    errors: dict[str, list[str]] = {}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = [os.getloadavg()[0]]
    (REPO_ROOT / ".tmp").mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        tmp = tempfile.mkdtemp(prefix="bench-stores-", dir=REPO_ROOT / ".tmp")
        if not args.keep:
            stack.callback(shutil.rmtree, tmp, True)
        root = Path(tmp)
        data = root / "image.raw"
        md5 = make_data(data, size)
        proc, endpoint = start_glimpse(root / "glimpse", env, kinds)
        # Every worker answers a request first, so each has built its stores.
        with httpx.Client(base_url=endpoint, headers=IDENTITY, timeout=60) as warm:
            for _ in range(8):
                warm.get("/v2/info/stores")
        idle_rss = workers_rss(proc.pid)
        glance = None
        try:
            glance = Glance(root / "glance", env, kinds) if args.glance else None
            for round_no in range(args.rounds):
                for kind in kinds:
                    runs = ["glimpse", "glance", "raw"] if glance else ["glimpse", "raw"]
                    if round_no % 2:
                        runs.reverse()
                    for who in runs:
                        if who == "glimpse":
                            got = api_round(endpoint, proc.pid, STORE_NAME[kind], data, size,
                                            md5)
                        elif who == "glance":
                            assert glance is not None
                            try:
                                got = api_round(glance.endpoint, glance.proc.pid,
                                                STORE_NAME[kind], data, size, md5)
                            except (httpx.HTTPError, RuntimeError) as exc:
                                errors.setdefault(kind, []).append(
                                    f"glance: {exc}\n{glance.log_tail()}")
                                print(errors[kind][-1], file=sys.stderr)
                                continue
                        else:
                            got = raw_round(kind, env, root, data, size)
                        figures = results.setdefault(kind, {}).setdefault(who, {})
                        for key, value in got.items():
                            figures.setdefault(key, []).append(value)
                    load.append(os.getloadavg()[0])
        finally:
            proc.terminate()
            proc.wait(30)
            if glance:
                glance.stop()
    print(f"store throughput, {args.size_mib} MiB image, median of {args.rounds} round(s), "
          f"MiB/s; load average {min(load):.1f}-{max(load):.1f} (provisional figures)")
    print(f"Glimpse worker RSS before the first transfer ({len(kinds)} store kinds "
          f"configured): {idle_rss:.0f} MiB")
    print(f"{'store':<13} {'upload':>7} {'glance':>7} {'raw':>6} {'%raw':>5}  "
          f"{'download':>8} {'glance':>7} {'raw':>6} {'%raw':>5}  RSS MiB up/down "
          f"(glance)")
    for kind, by in results.items():
        m = {who: {k: statistics.median(v) for k, v in f.items()} for who, f in by.items()}
        a, r, g = m["glimpse"], m["raw"], m.get("glance")

        def gl(key: str, g: dict | None = g) -> str:
            return f"{g[key]:7.0f}" if g else f"{'-':>7}"

        rss = f"{a['rss_up']:.0f}/{a['rss_down']:.0f}"
        if g:
            rss += f" ({g['rss_up']:.0f}/{g['rss_down']:.0f})"
        if max(a["rss_up"], a["rss_down"]) >= RSS_GOAL_MIB:
            rss += f"  over {RSS_GOAL_MIB}"
        print(f"{kind:<13} {a['up']:7.0f} {gl('up')} {r['up']:6.0f} "
              f"{100 * a['up'] / r['up']:5.0f}  {a['down']:8.0f} {gl('down')} "
              f"{r['down']:6.0f} {100 * a['down'] / r['down']:5.0f}  {rss}")
        if "sendfile" in r:
            vs_glance = f", {a['down'] / g['down']:.2f}x Glance's" if g else ""
            print(f"{'':<13} download: {100 * a['down'] / r['sendfile']:.0f}% of loopback "
                  f"sendfile ({r['sendfile']:.0f} MiB/s, same rounds){vs_glance}")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"section": "stores", "started": started, "size_mib": args.size_mib,
             "rounds": args.rounds, "load_average": load, "order": "alternating",
             "rss_goal_mib": RSS_GOAL_MIB, "rss_idle_mib": idle_rss, "results": results,
             "errors": errors}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
