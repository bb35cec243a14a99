"""Where a node's cache keeps its records: hits and last access of each copy.

The files themselves are the cache's business (glimpse.cache.store); a driver
only remembers, per copy, its size, checksum, hits and times. Three drivers, as
Glance has: ``centralized_db`` (the main database, one row set per node),
``sqlite`` (a file in the cache directory) and ``xattr`` (extended attributes
of the cached files).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError


@dataclass(frozen=True)
class Entry:
    image_id: str
    size: int
    checksum: str | None
    hits: int
    last_accessed: float  # seconds since the epoch
    last_modified: float

    def as_doc(self, number: int) -> dict[str, Any]:
        """One item of GET /v2/cache's cached_images (Glance's fields)."""
        return {"id": number, "image_id": self.image_id, "hits": self.hits,
                "last_accessed": self.last_accessed, "last_modified": self.last_modified,
                "size": self.size, "checksum": self.checksum}


class Records(Protocol):
    def add(self, image_id: str, size: int, checksum: str | None) -> None: ...
    def hit(self, image_id: str) -> None: ...
    def remove(self, image_id: str) -> None: ...
    def entries(self) -> list[Entry]: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------- centralized_db


def _stamp(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class CentralizedDb:
    """Rows of cached_images under this node's cache_nodes row (migration 0007)."""

    def __init__(self, db: Any, node_url: str):
        from glimpse.db.models import CachedImage, CacheNode

        self.db = db
        self.node_url = node_url
        self._node_t = CacheNode.__table__
        self._t = CachedImage.__table__
        self._node_id: int | None = None

    def _node(self) -> int:
        if self._node_id is not None:
            return self._node_id
        t = self._node_t
        for _attempt in range(3):
            with self.db.engine.begin() as conn:
                found = conn.execute(select(t.c.id).where(t.c.url == self.node_url)).scalar()
                if found is not None:
                    self._node_id = int(found)
                    return self._node_id
            try:
                with self.db.engine.begin() as conn:
                    conn.execute(insert(t).values(url=self.node_url))
            except IntegrityError:
                pass  # another worker of this node registered it first
        raise RuntimeError(f"Could not register cache node {self.node_url}")

    def add(self, image_id: str, size: int, checksum: str | None) -> None:
        node, now = self._node(), _now()
        with self.db.engine.begin() as conn:
            conn.execute(delete(self._t).where(self._t.c.node_id == node,
                                               self._t.c.image_id == image_id))
            conn.execute(insert(self._t).values(
                node_id=node, image_id=image_id, size=size, checksum=checksum, hits=0,
                last_accessed=now, last_modified=now))

    def hit(self, image_id: str) -> None:
        t = self._t
        with self.db.engine.begin() as conn:
            conn.execute(update(t).where(t.c.node_id == self._node(), t.c.image_id == image_id)
                         .values(hits=t.c.hits + 1, last_accessed=_now()))

    def remove(self, image_id: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(self._t).where(self._t.c.node_id == self._node(),
                                               self._t.c.image_id == image_id))

    def entries(self) -> list[Entry]:
        t = self._t
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.node_id == self._node())
                                .order_by(t.c.id)).mappings().all()
        return [Entry(r["image_id"], r["size"], r["checksum"], r["hits"],
                      _stamp(r["last_accessed"]), _stamp(r["last_modified"])) for r in rows]

    def nodes_with(self, image_id: str) -> list[str]:
        """The URLs of every node whose cache holds this image."""
        t, n = self._t, self._node_t
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(n.c.url).join(t, t.c.node_id == n.c.id)
                                     .where(t.c.image_id == image_id)
                                     .order_by(n.c.url)).scalars())

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- sqlite


class SqliteFile:
    """A small SQLite file in the cache directory, shared by the node's workers."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS cached_images ("
                         "image_id TEXT PRIMARY KEY, size INTEGER NOT NULL, checksum TEXT, "
                         "hits INTEGER NOT NULL DEFAULT 0, last_accessed REAL NOT NULL, "
                         "last_modified REAL NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def add(self, image_id: str, size: int, checksum: str | None) -> None:
        now = time.time()
        self._conn().execute("INSERT OR REPLACE INTO cached_images VALUES (?, ?, ?, 0, ?, ?)",
                             (image_id, size, checksum, now, now))

    def hit(self, image_id: str) -> None:
        self._conn().execute("UPDATE cached_images SET hits = hits + 1, last_accessed = ? "
                             "WHERE image_id = ?", (time.time(), image_id))

    def remove(self, image_id: str) -> None:
        self._conn().execute("DELETE FROM cached_images WHERE image_id = ?", (image_id,))

    def entries(self) -> list[Entry]:
        rows = self._conn().execute(
            "SELECT image_id, size, checksum, hits, last_accessed, last_modified "
            "FROM cached_images ORDER BY rowid").fetchall()
        return [Entry(*row) for row in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# ---------------------------------------------------------------- xattr

_HITS = "user.glimpse.hits"
_ACCESSED = "user.glimpse.last_accessed"
_CHECKSUM = "user.glimpse.checksum"


class Xattr:
    """Records kept on the cached files themselves (no database at all)."""

    def __init__(self, directory: str):
        self.directory = directory
        probe = os.path.join(directory, ".xattr-probe")
        with open(probe, "wb"):
            pass
        try:
            os.setxattr(probe, _HITS, b"0")
        except OSError as exc:
            raise RuntimeError(f"image_cache_driver = xattr: the filesystem of {directory} "
                               f"does not support user extended attributes ({exc})") from exc
        finally:
            os.unlink(probe)
        self._lock = threading.Lock()

    def _path(self, image_id: str) -> str:
        return os.path.join(self.directory, image_id)

    def add(self, image_id: str, size: int, checksum: str | None) -> None:
        path = self._path(image_id)
        os.setxattr(path, _HITS, b"0")
        os.setxattr(path, _ACCESSED, repr(time.time()).encode())
        os.setxattr(path, _CHECKSUM, (checksum or "").encode())

    def hit(self, image_id: str) -> None:
        path = self._path(image_id)
        with self._lock, contextlib.suppress(OSError):
            hits = int(os.getxattr(path, _HITS) or b"0")
            os.setxattr(path, _HITS, str(hits + 1).encode())
            os.setxattr(path, _ACCESSED, repr(time.time()).encode())

    def remove(self, image_id: str) -> None:
        pass  # the attributes go with the file

    def entries(self) -> list[Entry]:
        found = []
        for name in sorted(os.listdir(self.directory)):
            path = self._path(name)
            try:
                st = os.stat(path)
                if not os.path.isfile(path):
                    continue
                hits = int(os.getxattr(path, _HITS) or b"0")
                accessed = float(os.getxattr(path, _ACCESSED) or st.st_mtime)
                checksum = os.getxattr(path, _CHECKSUM).decode() or None
            except (OSError, ValueError):
                continue  # not a committed copy (or just removed)
            found.append(Entry(name, st.st_size, checksum, hits, accessed, st.st_mtime))
        return found

    def close(self) -> None:
        pass


def build(conf: Any, db: Any, directory: str, node_url: str) -> Records:
    driver = conf.image_cache_driver
    if driver == "sqlite":
        return SqliteFile(os.path.join(directory, conf.image_cache_sqlite_db))
    if driver == "xattr":
        return Xattr(directory)
    return CentralizedDb(db, node_url)
