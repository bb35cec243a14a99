"""Client-side workload against any OpenStack Images API v2 endpoint.

Transfers and the safety threads use httpx sync clients (one per thread); the
timed small requests of the metadata, patch and import sections use LeanClient,
a keep-alive stdlib-socket client whose overhead is well below the server time
it measures; the concurrency section drives `wrk`.  Each section returns a
flat dict of figures and deletes the images it created, one at a time,
whatever happened.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

MIB = 1 << 20
PIECE = MIB  # upload body piece and download chunk size
JSON_PATCH = "application/openstack-images-v2.1-json-patch"
SAFETY_MIB = 8
SECTIONS = ("upload", "download", "import", "metadata", "patch", "concurrency", "safety")


@dataclass
class Target:
    name: str
    endpoint: str
    headers: dict[str, str]
    pids: Callable[[], list[int]] | None = None  # server worker PIDs for RSS


@dataclass
class Sizes:
    upload_mib: int = 1024
    import_mib: int = 256
    creates: int = 2000
    gets: int = 500
    filter_reps: int = 50
    patches: int = 300
    conc_clients: int = 32
    conc_seconds: float = 10
    uploaders: int = 8
    patchers: int = 32
    safety_seconds: float = 10

    @classmethod
    def quick(cls) -> Sizes:
        return cls(upload_mib=64, import_mib=32, creates=200, gets=100, filter_reps=10,
                   patches=50, conc_clients=32, conc_seconds=3, uploaders=8, patchers=32,
                   safety_seconds=3)


class BenchError(Exception):
    """A request answered something the workload cannot go on with."""


# ------------------------------------------------------------------- lean client


class LeanHeaders(dict[str, str]):
    """Response headers keyed by lower-case name; lookups ignore case."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class LeanResponse:
    """The few parts of an httpx.Response the timed sections read."""

    __slots__ = ("method", "path", "status_code", "headers", "content")

    def __init__(self, method: str, path: str, status_code: int, headers: LeanHeaders,
                 content: bytes) -> None:
        self.method = method
        self.path = path
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class LeanClient:
    """Keep-alive HTTP/1.1 client on a plain socket for small timed JSON requests.

    httpx spends about 1-1.5 ms of Python per request on this machine, more than
    a fast server needs to answer a GET, so timing with it mostly measures the
    client.  This one writes the request in one send and parses the answer with
    a buffered reader; it keeps the connection while the server does and opens a
    new one (inside the timed request, as any client must) after
    `Connection: close`, as Glance under uWSGI answers every time.
    """

    def __init__(self, endpoint: str, headers: dict[str, str], timeout: float = 600.0) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"LeanClient speaks plain http only, not {endpoint!r}")
        self._addr = (parts.hostname, parts.port or 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        fixed = {"Host": parts.netloc, "Accept": "*/*", "User-Agent": "glimpse-bench",
                 **headers}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._sock: socket.socket | None = None
        self._reader: Any = None

    # -- connection

    def _connect(self) -> None:
        sock = socket.create_connection(self._addr, timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._reader = sock, sock.makefile("rb")

    def close(self) -> None:
        if self._sock is not None:
            self._reader.close()
            self._sock.close()
            self._sock = self._reader = None

    def _stale(self) -> bool:
        """True if the idle connection was closed by the server (readable = EOF or junk)."""
        assert self._sock is not None
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def __enter__(self) -> LeanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                content: bytes | str | None = None, headers: dict[str, str] | None = None
                ) -> LeanResponse:
        target = self._prefix + path
        if params:
            target += ("&" if "?" in target else "?") + urllib.parse.urlencode(params)
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed}"
        if headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        body = content.encode() if isinstance(content, str) else (content or b"")
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        message = (head + "\r\n").encode("latin-1") + body
        if self._sock is not None and self._stale():
            self.close()
        reused = self._sock is not None
        try:
            return self._exchange(method, path, message)
        except (ConnectionError, _NoAnswer):
            self.close()
            if not reused:
                raise
        # The server dropped a kept-alive connection before answering: the
        # request was not handled, so send it once more on a fresh connection.
        try:
            return self._exchange(method, path, message)
        except _NoAnswer as exc:
            self.close()
            raise ConnectionError(f"{method} {path}: no answer from server") from exc

    def _exchange(self, method: str, path: str, message: bytes) -> LeanResponse:
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        self._sock.sendall(message)
        reader = self._reader
        status_line = reader.readline(65537)
        if not status_line:
            raise _NoAnswer
        version, status = status_line.split(None, 2)[:2]
        headers = LeanHeaders()
        while (line := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        code = int(status)
        content, eof = self._body(reader, method, code, headers)
        conn = headers.get("connection", "").lower()
        if eof or "close" in conn or (version == b"HTTP/1.0" and "keep-alive" not in conn):
            self.close()
        return LeanResponse(method, path, code, headers, content)

    @staticmethod
    def _body(reader: Any, method: str, code: int, headers: LeanHeaders) -> tuple[bytes, bool]:
        """Read the body; also say whether it ran to EOF (connection unusable)."""
        if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
            return b"", False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            pieces = []
            while size := int(reader.readline(65537).split(b";")[0], 16):
                pieces.append(reader.read(size))
                reader.readline(65537)  # CRLF after the chunk
            while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(pieces), False
        length = headers.get("content-length")
        if length is None:
            return reader.read(), True
        content = reader.read(int(length))
        if len(content) != int(length):
            raise ConnectionError(f"body cut short: {len(content)} of {length} bytes")
        return content, False

    def get(self, path: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> LeanResponse:
        return self.request("GET", path, params=params, headers=headers)

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None
             ) -> LeanResponse:
        return self.request("POST", path, content=_dumps(json),
                            headers={"Content-Type": "application/json", **(headers or {})})

    def patch(self, path: str, content: bytes | str | None = None,
              headers: dict[str, str] | None = None) -> LeanResponse:
        return self.request("PATCH", path, content=content, headers=headers)

    def delete(self, path: str, headers: dict[str, str] | None = None) -> LeanResponse:
        return self.request("DELETE", path, headers=headers)


class _NoAnswer(Exception):
    """The connection ended before a status line arrived."""


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


Client = httpx.Client | LeanClient
Response = httpx.Response | LeanResponse


# --------------------------------------------------------------------------- data


@dataclass
class DataFile:
    path: str
    size: int
    md5: str
    sha512: str

    @property
    def mib(self) -> float:
        return self.size / MIB

    def read_range(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def warm(self) -> None:
        """Read the file once so the timed transfer comes from the page cache."""
        with open(self.path, "rb", buffering=0) as f:
            buf = bytearray(8 * MIB)
            while f.readinto(buf):
                pass


def _generate(path: str, seed: int, mib: int) -> dict[str, Any]:
    rng = random.Random(seed)
    md5, sha512 = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        for _ in range(mib):
            piece = rng.randbytes(MIB)
            md5.update(piece)
            sha512.update(piece)
            f.write(piece)
    os.replace(tmp, path)
    return {"seed": seed, "size": mib * MIB, "md5": md5.hexdigest(),
            "sha512": sha512.hexdigest()}


def data_file(dirpath: str, mib: int) -> DataFile:
    """Seeded incompressible bytes, generated once and cached with their hashes."""
    os.makedirs(dirpath, exist_ok=True)
    path = os.path.join(dirpath, f"bench-data-{mib}MiB.bin")
    meta_path = path + ".json"
    seed = 0x61A5E + mib
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta["seed"] == seed and meta["size"] == os.path.getsize(path) == mib * MIB:
            return DataFile(path, meta["size"], meta["md5"], meta["sha512"])
    except (OSError, ValueError, KeyError):
        pass  # missing or stale cache: regenerate below
    meta = _generate(path, seed, mib)
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f)
    os.replace(meta_path + ".tmp", meta_path)
    return DataFile(path, meta["size"], meta["md5"], meta["sha512"])


# ---------------------------------------------------------------------- helpers


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _expect(resp: Response, *ok: int) -> Response:
    if resp.status_code not in ok:
        if isinstance(resp, httpx.Response):
            what = f"{resp.request.method} {resp.request.url.path}"
        else:
            what = f"{resp.method} {resp.path}"
        raise BenchError(f"{what} -> {resp.status_code}: {resp.text[:300]}")
    return resp


def _file_pieces(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while piece := f.read(PIECE):
            yield piece


class Session:
    """Per-section state: client factory and the images to delete afterwards."""

    def __init__(self, target: Target, data_dir: str) -> None:
        self.target = target
        self.data_dir = data_dir
        self.run = uuid.uuid4().hex[:8]
        self._created: list[str] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        # Glance under uWSGI answers Connection: close; httpx then simply
        # opens a fresh connection for the next request.
        return httpx.Client(base_url=self.target.endpoint, headers=self.target.headers,
                            timeout=httpx.Timeout(600.0, connect=10.0), trust_env=False)

    def lean(self) -> Client:
        """The client for timed small requests (httpx for https, which LeanClient lacks)."""
        if urllib.parse.urlsplit(self.target.endpoint).scheme != "http":
            return self.client()
        return LeanClient(self.target.endpoint, self.target.headers)

    def create(self, client: Client, body: dict[str, Any]) -> dict[str, Any]:
        body = {"disk_format": "raw", "container_format": "bare", **body}
        image = _expect(client.post("/v2/images", json=body), 201).json()
        self.remember(image["id"])
        return image

    def remember(self, image_id: str) -> None:
        with self._lock:
            self._created.append(image_id)

    def cleanup(self) -> int:
        """Delete every created image one after another; return how many failed."""
        failed = 0
        with self.client() as client:
            for image_id in self._created:
                for _ in range(3):
                    try:
                        status = client.delete(f"/v2/images/{image_id}").status_code
                    except httpx.HTTPError:
                        status = 0
                    if status in (204, 404):
                        break
                    time.sleep(0.2)  # e.g. a locked SQLite database: give it a moment
                else:
                    failed += 1
        self._created.clear()
        return failed


def put_file(client: httpx.Client, url: str, data: DataFile) -> tuple[int, float]:
    """Stream the file as the request body with Content-Length; return status, seconds."""
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(data.size)}
    start = time.perf_counter()
    resp = client.put(url, content=_file_pieces(data.path), headers=headers)
    return resp.status_code, time.perf_counter() - start


def image_matches(image: dict[str, Any], data: DataFile) -> bool:
    return (image.get("status") == "active" and image.get("size") == data.size
            and image.get("checksum") == data.md5 and image.get("os_hash_algo") == "sha512"
            and image.get("os_hash_value") == data.sha512)


def upload_image(sess: Session, client: httpx.Client, data: DataFile, name: str
                 ) -> tuple[str, float]:
    image = sess.create(client, {"name": name})
    status, seconds = put_file(client, f"/v2/images/{image['id']}/file", data)
    if status != 204:
        raise BenchError(f"upload answered {status}")
    return image["id"], seconds


def get_image(client: Client, image_id: str) -> dict[str, Any]:
    return _expect(client.get(f"/v2/images/{image_id}"), 200).json()


# ------------------------------------------------------------------------ memory


def _vmrss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler:
    """Samples VmRSS of the server workers every 50 ms while a transfer runs."""

    def __init__(self, pids: Callable[[], list[int]] | None) -> None:
        self._pids = pids() if pids else []
        self._before: dict[int, float] = {}
        self._peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> dict[int, float]:
        found = {pid: _vmrss_mib(pid) for pid in self._pids}
        return {pid: rss for pid, rss in found.items() if rss is not None}

    def _loop(self) -> None:
        while True:
            for pid, rss in self._sample().items():
                self._peak[pid] = max(rss, self._peak.get(pid, 0.0))
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> RssSampler:
        self._before = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, float | None]:
        if not self._peak:
            return {"rss_peak_mib": None, "rss_growth_mib": None}
        growth = max(peak - self._before.get(pid, peak) for pid, peak in self._peak.items())
        return {"rss_peak_mib": round(max(self._peak.values()), 1),
                "rss_growth_mib": round(max(growth, 0.0), 1)}


# ---------------------------------------------------------------------- sections


def section_upload(sess: Session, sizes: Sizes) -> dict[str, Any]:
    data = data_file(sess.data_dir, sizes.upload_mib)
    data.warm()
    with sess.client() as client:
        image = sess.create(client, {"name": f"bench-upload-{sess.run}"})
        with RssSampler(sess.target.pids) as rss:
            status, seconds = put_file(client, f"/v2/images/{image['id']}/file", data)
        if status != 204:
            raise BenchError(f"upload answered {status}")
        verified = image_matches(get_image(client, image["id"]), data)
    return {"mib_s": round(data.mib / seconds, 1), "seconds": round(seconds, 3),
            "verified": verified, **rss.figures()}


def _download(client: httpx.Client, path: str, sink: Callable[[bytes], object]
              ) -> tuple[httpx.Response, int]:
    got = 0
    with client.stream("GET", path) as resp:
        if resp.status_code != 200:
            resp.read()  # so that the error message can quote the body
        _expect(resp, 200)
        for chunk in resp.iter_raw():  # no re-chunking: that only adds copies
            sink(chunk)
            got += len(chunk)
    return resp, got


def _read_head(reader: Any) -> tuple[int, dict[str, str]]:
    status = int(reader.readline(65537).split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _read_body(reader: Any, length: int | None) -> int:
    """Read length bytes (or up to EOF) into a reused buffer and drop them."""
    view = memoryview(bytearray(PIECE))
    got = 0
    while length is None or got < length:
        want = PIECE if length is None else min(PIECE, length - got)
        n = reader.readinto(view[:want])
        if not n:
            break
        got += n
    return got


def _read_chunked(reader: Any) -> int:
    got = 0
    while size := int(reader.readline(65537).split(b";")[0], 16):
        if _read_body(reader, size) != size:
            break
        got += size
        reader.readline(65537)  # CRLF after the chunk
    return got


def raw_download(target: Target, path: str) -> tuple[int, int]:
    """GET path into a sink on a plain socket; return (status, body bytes).

    httpx tops out near 1 GiB/s on this machine (h11 copies every 64 KiB read
    several times), below what the servers can send over loopback.  Reading the
    body with readinto() into one reused buffer keeps the client out of the way.
    """
    url = httpx.URL(target.endpoint)
    if url.scheme != "http":
        with Session(target, "").client() as client:
            resp, got = _download(client, path, lambda chunk: None)
            return resp.status_code, got
    lines = [f"GET {url.path.rstrip('/')}{path} HTTP/1.1", f"Host: {url.netloc.decode()}",
             "Accept: */*", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in target.headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((url.host, url.port or 80), timeout=600) as sock:
        sock.sendall(request)
        # A buffer of PIECE lets readinto() of a whole piece go straight to recv_into.
        with sock.makefile("rb", buffering=PIECE) as reader:
            status, headers = _read_head(reader)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return status, _read_chunked(reader)
            length = headers.get("content-length")
            return status, _read_body(reader, int(length) if length else None)


def raw_upload(endpoint: str, path: str, headers: dict[str, str], source: Any,
               size: int) -> tuple[int, bytes]:
    """PUT ``size`` bytes of the file ``source`` to path on a plain socket with
    sendfile(); return (status, body). An httpx client feeding the body from Python
    costs most of a core at these rates, which on a two-core machine comes out of the
    server's share; the kernel copying from the page cache costs next to nothing."""
    url = httpx.URL(endpoint)
    if url.scheme != "http":
        raise BenchError("raw_upload speaks plain http only")
    lines = [f"PUT {url.path.rstrip('/')}{path} HTTP/1.1", f"Host: {url.netloc.decode()}",
             "Content-Type: application/octet-stream", f"Content-Length: {size}",
             "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()
              if name.lower() not in ("content-type", "content-length", "connection")]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((url.host, url.port or 80), timeout=600) as sock, \
            open(source, "rb") as body:
        sock.sendall(request)
        sent = sock.sendfile(body, 0, size)
        if sent != size:
            raise BenchError(f"sent {sent} of {size} bytes")
        with sock.makefile("rb") as reader:
            status, answer = _read_head(reader)
            length = answer.get("content-length")
            text = reader.read(int(length)) if length else b""
    return status, text


def section_download(sess: Session, sizes: Sizes) -> dict[str, Any]:
    data = data_file(sess.data_dir, sizes.upload_mib)
    data.warm()
    with sess.client() as client:
        image_id, _ = upload_image(sess, client, data, f"bench-download-{sess.run}")
        with RssSampler(sess.target.pids) as rss:
            start = time.perf_counter()
            status, got = raw_download(sess.target, f"/v2/images/{image_id}/file")
            seconds = time.perf_counter() - start
        if status != 200:
            raise BenchError(f"download answered {status}")
        md5, sha512 = hashlib.md5(usedforsecurity=False), hashlib.sha512()

        def both(chunk: bytes) -> None:
            md5.update(chunk)
            sha512.update(chunk)

        resp, got2 = _download(client, f"/v2/images/{image_id}/file", both)
        header_md5 = resp.headers.get("Content-MD5")
        verified = (got == got2 == data.size and md5.hexdigest() == data.md5
                    and sha512.hexdigest() == data.sha512
                    and header_md5 in (None, data.md5))
        ranged = client.get(f"/v2/images/{image_id}/file", headers={"Range": "bytes=100-199"})
        verified = verified and ranged.status_code == 206 and (
            ranged.content == data.read_range(100, 100))
    return {"mib_s": round(got / MIB / seconds, 1), "seconds": round(seconds, 3),
            "verified": verified, **rss.figures()}


def _wait_active(client: Client, image_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        image = get_image(client, image_id)
        if image["status"] == "active":
            return image
        if image["status"] in ("killed", "deleted") or image.get("os_glance_failed_import"):
            raise BenchError(f"import failed: status {image['status']}, "
                             f"failed stores {image.get('os_glance_failed_import')!r}")
        if time.monotonic() > deadline:
            raise BenchError(f"import not active after {timeout:.0f} s: {image['status']}")
        time.sleep(0.05)


def section_import(sess: Session, sizes: Sizes) -> dict[str, Any]:
    data = data_file(sess.data_dir, sizes.import_mib)
    data.warm()
    with sess.client() as client:
        start = time.perf_counter()
        image = sess.create(client, {"name": f"bench-import-{sess.run}"})
        status, stage_seconds = put_file(client, f"/v2/images/{image['id']}/stage", data)
        if status != 204:
            raise BenchError(f"stage answered {status}")
    with sess.lean() as lean:
        import_start = time.perf_counter()
        body = {"method": {"name": "glance-direct"}}
        _expect(lean.post(f"/v2/images/{image['id']}/import", json=body), 202)
        final = _wait_active(lean, image["id"], timeout=max(120.0, data.mib))
        end = time.perf_counter()
        # The image we polled is the state when it turned active; re-read for the hashes,
        # which some servers fill in the same transaction and some just after.
        verified = image_matches(final, data) or image_matches(get_image(lean, image["id"]),
                                                                data)
    return {"seconds": round(end - start, 3), "stage_mib_s": round(data.mib / stage_seconds, 1),
            "import_seconds": round(end - import_start, 3), "verified": verified}


# ---- metadata

GROUPS = 25  # the tag and property shared by every 25th image


def _meta_body(run: str, i: int) -> dict[str, Any]:
    return {"name": f"bench-{run}-{i:05d}",
            "tags": [f"bench-{run}", f"{run}-t{i % GROUPS}"],
            "bench_run": run, "bench_grp": f"{run}-g{i % GROUPS}",
            "bench_idx": str(i), "bench_note": "glimpse benchmark image"}


def _timed_get(client: Client, url: str, params: dict[str, Any] | None = None
               ) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    resp = client.get(url, params=params)
    seconds = time.perf_counter() - start
    return _expect(resp, 200).json(), seconds


def _page_all(client: Client) -> tuple[set[str], list[float]]:
    seen: set[str] = set()
    times: list[float] = []
    url: str | None = "/v2/images?limit=100"
    while url:
        body, seconds = _timed_get(client, url)
        times.append(seconds)
        seen.update(image["id"] for image in body["images"])
        url = body.get("next")
        if len(times) > 100_000:
            raise BenchError("paging does not end")
    return seen, times


def _ordered(values: list[str], descending: bool) -> bool:
    pairs = zip(values, values[1:], strict=False)
    return all((a >= b) if descending else (a <= b) for a, b in pairs)


def _filter_checks(run: str, ids: list[str]) -> dict[str, Callable[[random.Random], tuple[
        dict[str, Any], Callable[[list[dict[str, Any]]], bool]]]]:
    """Each entry makes (query params, result check) for one random repetition."""
    prefix = f"bench-{run}-"

    def group(i: int) -> set[str]:
        return {ids[j] for j in range(i, len(ids), GROUPS)}

    def by_name(rng: random.Random) -> tuple[dict[str, Any], Any]:
        i = rng.randrange(len(ids))
        return ({"name": f"{prefix}{i:05d}"},
                lambda imgs: [img["id"] for img in imgs] == [ids[i]])

    def by_tag(rng: random.Random) -> tuple[dict[str, Any], Any]:
        i = rng.randrange(min(GROUPS, len(ids)))
        return ({"tag": f"{run}-t{i}", "limit": 100},
                lambda imgs: {img["id"] for img in imgs} == group(i))

    def by_prop(rng: random.Random) -> tuple[dict[str, Any], Any]:
        i = rng.randrange(min(GROUPS, len(ids)))
        return ({"bench_grp": f"{run}-g{i}", "limit": 100},
                lambda imgs: {img["id"] for img in imgs} == group(i))

    def mine(imgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [img for img in imgs if (img.get("name") or "").startswith(prefix)]

    def sort_created(rng: random.Random) -> tuple[dict[str, Any], Any]:
        return ({"sort_key": "created_at", "sort_dir": "asc", "limit": 100},
                lambda imgs: len(imgs) >= min(100, len(ids)) and _ordered(
                    [img["created_at"] for img in imgs], descending=False))

    def sort_name(rng: random.Random) -> tuple[dict[str, Any], Any]:
        # Names outside this run may be null; order is checked on ours only.
        return ({"sort_key": "name", "sort_dir": "desc", "limit": 100},
                lambda imgs: len(imgs) >= min(100, len(ids)) and _ordered(
                    [img["name"] for img in mine(imgs)], descending=True))

    return {"filter_name": by_name, "filter_tag": by_tag, "filter_property": by_prop,
            "sort_created": sort_created, "sort_name": sort_name}


def section_metadata(sess: Session, sizes: Sizes) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, Any] = {}
    ok = True
    with sess.lean() as client:
        ids: list[str] = []
        create_times: list[float] = []
        start = time.perf_counter()
        for i in range(sizes.creates):
            t0 = time.perf_counter()
            ids.append(sess.create(client, _meta_body(sess.run, i))["id"])
            create_times.append(time.perf_counter() - t0)
        out["creates_per_s"] = round(sizes.creates / (time.perf_counter() - start), 1)
        out["create_p50_ms"] = ms(pct(create_times, 50))

        seen, page_times = _page_all(client)
        ok = ok and seen.issuperset(ids)
        out.update(list_p50_ms=ms(pct(page_times, 50)), list_p95_ms=ms(pct(page_times, 95)),
                   list_pages=len(page_times))

        get_times = []
        for _ in range(sizes.gets):
            i = rng.randrange(len(ids))
            image, seconds = _timed_get(client, f"/v2/images/{ids[i]}")
            get_times.append(seconds)
            ok = ok and image["id"] == ids[i] and image.get("bench_idx") == str(i)
        out.update(get_p50_ms=ms(pct(get_times, 50)), get_p95_ms=ms(pct(get_times, 95)))

        for key, make in _filter_checks(sess.run, ids).items():
            times = []
            for _ in range(sizes.filter_reps):
                params, check = make(rng)
                body, seconds = _timed_get(client, "/v2/images", params)
                times.append(seconds)
                ok = ok and check(body["images"])
            out[f"{key}_p50_ms"] = ms(pct(times, 50))
    out["verified"] = ok
    return out


# ---- patch


def _patch(client: Client, image_id: str, ops: list[dict[str, Any]]) -> Response:
    return client.patch(f"/v2/images/{image_id}", content=json.dumps(ops),
                        headers={"Content-Type": JSON_PATCH})


def section_patch(sess: Session, sizes: Sizes) -> dict[str, Any]:
    times: list[float] = []
    ok = True
    with sess.lean() as client:
        image = sess.create(client, {"name": f"bench-patch-{sess.run}", "bench_p": "0",
                                     "tags": ["bench"]})
        for i in range(sizes.patches):
            # Glance rejects the append pointer '/tags/-', so the tag list is replaced.
            tags = ["bench", f"p{i}"]
            ops = [{"op": "replace", "path": "/bench_p", "value": str(i)},
                   {"op": "add", "path": f"/bench_add_{i % 8}", "value": f"a{i}"},
                   {"op": "replace", "path": "/tags", "value": tags}]
            start = time.perf_counter()
            resp = _patch(client, image["id"], ops)
            times.append(time.perf_counter() - start)
            body = _expect(resp, 200).json()
            ok = ok and (body.get("bench_p") == str(i) and body.get(f"bench_add_{i % 8}")
                         == f"a{i}" and sorted(body.get("tags", [])) == sorted(tags))
    return {"p50_ms": ms(pct(times, 50)), "p95_ms": ms(pct(times, 95)),
            "verified": ok and bool(times)}


# ---- concurrency

_WRK_LUA = """
local ids = {%(ids)s}
local n = 0
function setup(thread)
  thread:set("tid", n)
  n = n + 1
end
function init(args)
  math.randomseed(4242 + tid)
end
%(headers)s
function request()
  return wrk.format("GET", "%(prefix)s/v2/images/" .. ids[math.random(#ids)])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-RESULT %%d %%d %%d %%d %%d %%d %%d %%.1f %%.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""


def _lua_str(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _wrk_script(target: Target, ids: list[str]) -> str:
    headers = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}"
                        for k, v in target.headers.items())
    prefix = httpx.URL(target.endpoint).path.rstrip("/")
    return _WRK_LUA % {"ids": ", ".join(_lua_str(i) for i in ids), "headers": headers,
                       "prefix": prefix}


def _parse_wrk(stdout: str) -> dict[str, Any]:
    match = re.search(r"^BENCH-RESULT ([\d. ]+)$", stdout, re.MULTILINE)
    if not match:
        raise BenchError(f"no result in wrk output: {stdout[-500:]!r}")
    fields = match.group(1).split()
    requests, duration_us, connect, read, write, timeout, status = map(int, fields[:7])
    p50_us, p99_us = map(float, fields[7:])
    seconds = duration_us / 1e6
    errors = connect + read + write + timeout
    # wrk counts every answer, 404s and 500s included: only 2xx answers count as
    # served; transport errors and non-2xx are shown beside them.
    ok = max(requests - status, 0)
    return {"req_s": round(ok / seconds, 1) if seconds > 0 else None,
            "all_answers_req_s": round(requests / seconds, 1) if seconds > 0 else None,
            "requests": requests, "ok": ok,
            "p50_ms": round(p50_us / 1000, 3), "p99_ms": round(p99_us / 1000, 3),
            "errors": errors, "errors_by_kind": {"connect": connect, "read": read,
                                                 "write": write, "timeout": timeout},
            "non2xx": status,
            "verified": requests > 0 and ok > 0 and errors == 0 and status == 0}


def section_concurrency(sess: Session, sizes: Sizes) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if not wrk:
        return {"error": "wrk not installed"}
    with sess.client() as client:
        ids = [sess.create(client, _meta_body(sess.run, i))["id"] for i in range(50)]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-wrk-") as script:
        script.write(_wrk_script(sess.target, ids))
        script.flush()
        duration = max(1, round(sizes.conc_seconds))
        threads = min(2, sizes.conc_clients)  # wrk wants at least one connection per thread
        cmd = [wrk, f"-t{threads}", f"-c{sizes.conc_clients}", f"-d{duration}s", "--latency",
               "--timeout", "10s", "-s", script.name, sess.target.endpoint.rstrip("/")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise BenchError(f"wrk exited {proc.returncode}: {proc.stderr[-500:]}")
    out = _parse_wrk(proc.stdout)
    # What wrk fetched must still be there, whole: each image once more, checked.
    with sess.client() as client:
        intact = all(get_image(client, i).get("bench_idx") == str(n)
                     for n, i in enumerate(ids))
    out["verified"] = out["verified"] and intact
    return out


# ---- safety


@dataclass
class _Tally:
    upload: Counter[str] = field(default_factory=Counter)
    patch: Counter[str] = field(default_factory=Counter)
    uploaded: list[str] = field(default_factory=list)  # image ids whose PUT answered 204
    patched: dict[str, str] = field(default_factory=dict)  # property -> value, PATCH 200
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Start:
    """Releases every writer thread at once, once all have their client (making
    40 httpx clients takes seconds on a busy machine), and only then starts the
    clock, so the threads really write for the whole duration together."""

    def __init__(self, threads: int, seconds: float) -> None:
        self.deadline = 0.0
        self._seconds = seconds
        self._barrier = threading.Barrier(threads, action=self._go)

    def _go(self) -> None:
        self.deadline = time.monotonic() + self._seconds

    def wait(self) -> float:
        self._barrier.wait(timeout=120)
        return self.deadline


def _uploader(sess: Session, data: DataFile, start: _Start, tally: _Tally) -> None:
    body = {"name": f"bench-safety-{sess.run}", "disk_format": "raw",
            "container_format": "bare"}
    with sess.client() as client:
        deadline = start.wait()
        while time.monotonic() < deadline:
            image_id = None
            try:
                resp = client.post("/v2/images", json=body)
                status = resp.status_code
                if status == 201:
                    image_id = resp.json()["id"]
                    sess.remember(image_id)
                    status, _ = put_file(client, f"/v2/images/{image_id}/file", data)
                key = str(status)
            except Exception as exc:  # noqa: BLE001 - reset, refused, timeout: an error
                key, status = type(exc).__name__, 0
            with tally.lock:
                tally.upload[key] += 1
                if status == 204 and image_id:
                    tally.uploaded.append(image_id)


def _patcher(sess: Session, image_id: str, thread: int, start: _Start,
             tally: _Tally) -> None:
    n = 0
    with sess.client() as client:
        deadline = start.wait()
        while time.monotonic() < deadline:
            prop, value = f"prop_{thread}_{n}", f"v{thread}-{n}"
            n += 1
            try:
                status = _patch(client, image_id,
                                [{"op": "add", "path": f"/{prop}", "value": value}]).status_code
                key = str(status)
            except Exception as exc:  # noqa: BLE001 - reset, refused, timeout: an error
                key, status = type(exc).__name__, 0
            with tally.lock:
                tally.patch[key] += 1
                if status == 200:
                    tally.patched[prop] = value


def count_5xx(counter: Counter[str]) -> int:
    return sum(n for key, n in counter.items() if key.isdigit() and key.startswith("5"))


def count_transport(counter: Counter[str]) -> int:
    """Requests that got no HTTP answer at all (keys are exception names)."""
    return sum(n for key, n in counter.items() if not key.isdigit())


def safety_figures(tally: _Tally, lost: int | None, intact: bool | None) -> dict[str, Any]:
    """The safety section's figures. ``lost`` is None when no PATCH answered 200 and
    ``intact`` None when no upload answered 204: nothing was there to check, so
    the section is not verified."""
    figures: dict[str, Any] = {}
    for kind, plural, counter in (("upload", "uploads", tally.upload),
                                  ("patch", "patches", tally.patch)):
        figures.update({plural: sum(counter.values()),
                        f"{kind}_errors_5xx": count_5xx(counter),
                        f"{kind}_errors_transport": count_transport(counter)})
    figures["errors_5xx"] = figures["upload_errors_5xx"] + figures["patch_errors_5xx"]
    figures["errors_transport"] = (figures["upload_errors_transport"]
                                   + figures["patch_errors_transport"])
    figures.update(lost_updates=lost, uploads_intact=intact,
                   verified=lost == 0 and intact is True,
                   statuses={"upload": dict(tally.upload), "patch": dict(tally.patch)})
    return figures


def section_safety(sess: Session, sizes: Sizes) -> dict[str, Any]:
    data = data_file(sess.data_dir, SAFETY_MIB)
    data.warm()
    with sess.client() as client:
        shared = sess.create(client, {"name": f"bench-shared-{sess.run}"})
    tally = _Tally()
    start = _Start(sizes.uploaders + sizes.patchers, sizes.safety_seconds)
    threads = [threading.Thread(target=_uploader, args=(sess, data, start, tally))
               for _ in range(sizes.uploaders)]
    threads += [threading.Thread(target=_patcher, args=(sess, shared["id"], t, start, tally))
                for t in range(sizes.patchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with sess.client() as client:
        final = get_image(client, shared["id"])
        lost = (sum(1 for prop, value in tally.patched.items() if final.get(prop) != value)
                if tally.patched else None)
        intact = (all(image_matches(get_image(client, i), data) for i in tally.uploaded)
                  if tally.uploaded else None)
    return safety_figures(tally, lost, intact)


# ------------------------------------------------------------------------- entry

_SECTION_FUNCS: dict[str, Callable[[Session, Sizes], dict[str, Any]]] = {
    "upload": section_upload, "download": section_download, "import": section_import,
    "metadata": section_metadata, "patch": section_patch,
    "concurrency": section_concurrency, "safety": section_safety,
}


def run_section(section: str, target: Target, sizes: Sizes, data_dir: str) -> dict:
    """Run one section against target; figures, or {"error": ...} on failure."""
    func = _SECTION_FUNCS.get(section)
    if func is None:
        return {"error": f"unknown section {section!r}"}
    sess = Session(target, data_dir)
    try:
        result = func(sess, sizes)
    except Exception as exc:  # one broken section must not stop the others
        result = {"error": f"{type(exc).__name__}: {exc}"}
    failed = sess.cleanup()
    if failed:
        result["cleanup_failed"] = failed
    return result
