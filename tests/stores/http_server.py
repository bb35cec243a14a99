"""A small real HTTP server on 127.0.0.1 for the http store's tests: objects kept in
memory, single-range GET (206), HEAD, redirects, and paths that ignore Range.

    /o/<name>          the object, Range honoured
    /norange/<name>    the object, Range ignored (answers 200 with the whole body)
    /redirect/<n>?to=U  redirects (302) to U after n further hops through itself
    /status/<code>     answers with that status
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit


class RangeServer:
    _shared: RangeServer | None = None

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()

    @classmethod
    def shared(cls) -> RangeServer:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def put(self, name: str, data: bytes) -> str:
        self.objects[name] = data
        return f"{self.url}/o/{quote(name, safe='')}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(owner: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            parts = urlsplit(self.path)
            owner.requests.append((self.command, parts.path, self.headers.get("Range")))
            kind, _, rest = parts.path.lstrip("/").partition("/")
            if kind == "redirect":
                hops = int(rest or 0)
                target = parse_qs(parts.query)["to"][0]
                location = (f"/redirect/{hops - 1}?to={quote(target, safe='')}" if hops > 0
                            else target)
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if kind == "status":
                self.send_response(int(rest))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = owner.objects.get(rest)
            if kind not in ("o", "norange") or data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, start, end = 200, 0, len(data)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if kind == "o" and match:
                start = int(match.group(1))
                end = min(len(data), int(match.group(2)) + 1 if match.group(2) else len(data))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.send_header("Content-Length", str(end - start))
            self.end_headers()
            if body:
                self.wfile.write(data[start:end])

    return Handler
