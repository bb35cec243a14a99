"""Does Glimpse stay as fast with many images? (Glimpse only.)

Creating 100,000 images through the API would take far too long, so they are
written straight into Glimpse's database with SQLAlchemy Core bulk inserts on
the tables of glimpse.db.models, as the API would have left them after an
upload: status active, size and checksums set, a file-store location, 4
custom properties and 2 tags each, owners spread over a few projects with a
mix of visibilities (and memberships for shared images), created_at spread
over two years. Then, over HTTP against the running server, the p50 of a list
page (limit 100: the first page and pages at random markers) and of a GET is
measured at each size; the goal is that the largest size stays within 2x of
the smallest.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from bench.workload import LeanClient
from glimpse.db.engine import make_engine
from glimpse.db.models import Image, ImageLocation, ImageMember, ImageProperty, ImageTag

LEVELS = (2_000, 100_000)
QUICK_LEVELS = (2_000, 20_000)
BATCH = 5_000
SPREAD = timedelta(days=730)
DISTROS = ("ubuntu", "debian", "centos", "fedora", "cirros", "rocky")
OTHER_PROJECTS = ("5f1e0c2b7a9d4e3f8b6a1c0d9e8f7a6b", "6a2f1d3c8b0e4f5a9c7b2d1e0f9a8b7c",
                  "7b3a2e4d9c1f4a6b0d8c3e2f1a0b9c8d")


class Seeder:
    """Tops the database up to a number of live images, remembering which of
    the seeded images the benchmark project can list."""

    def __init__(self, db_url: str, images_dir: str, project: str, seed: int = 100):
        self.engine: Engine = make_engine(db_url)
        # SQLite: take the write lock at BEGIN, as Glimpse's own writers do.
        self.writer = (self.engine.execution_options(sqlite_write=True)
                       if db_url.startswith("sqlite") else self.engine)
        self.is_postgresql = db_url.startswith("postgresql")
        self.is_mariadb = db_url.startswith("mysql")
        self.images_dir = images_dir.rstrip("/")
        self.project = project
        self.owners = (project, *OTHER_PROJECTS)
        self.rng = random.Random(seed)
        self.now = datetime.now(UTC).replace(tzinfo=None)
        self.seeded = 0
        self.listable: list[str] = []
        self._listable_created: list[tuple[datetime, str]] = []

    def live_images(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Image)
                               .where(Image.deleted.is_(False))) or 0

    def top_up(self, level: int) -> float:
        """Seconds spent bringing the live image count up to ``level``."""
        t0 = time.perf_counter()
        missing = level - self.live_images()
        while missing > 0:
            count = min(BATCH, missing)
            self._insert_batch(count)
            missing -= count
        if self.is_postgresql:
            # After a bulk load autovacuum would soon analyze these tables;
            # do it now so the plans are those of a settled database.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("ANALYZE images, image_properties, image_tags, "
                               "image_locations, image_members"))
        elif self.is_mariadb:
            with self.engine.connect() as c:
                c.execute(text("ANALYZE TABLE images, image_properties, image_tags, "
                               "image_locations, image_members")).all()
        return time.perf_counter() - t0

    def _insert_batch(self, count: int) -> None:
        images, props, tags, locations, members = [], [], [], [], []
        for _ in range(count):
            i = self.seeded
            self.seeded += 1
            row, listable = self._image(i)
            images.append(row)
            image_id = row["id"]
            props += [{"image_id": image_id, "name": k, "value": v}
                      for k, v in self._properties(i).items()]
            tags += [{"image_id": image_id, "value": t} for t in ("scale", f"scale-{i % 50}")]
            locations.append({
                "image_id": image_id, "value": f"file://{self.images_dir}/{image_id}",
                "meta_data": json.dumps({"store": "file"}), "status": "active",
                "created_at": row["updated_at"], "updated_at": row["updated_at"]})
            if row["visibility"] == "shared" and row["owner"] != self.project:
                # Half accepted (listed for us), half pending (not listed).
                members.append({
                    "image_id": image_id, "member": self.project,
                    "status": "accepted" if i % 2 == 0 else "pending", "can_share": False,
                    "created_at": row["updated_at"], "updated_at": row["updated_at"]})
            if listable:
                self.listable.append(image_id)
                self._listable_created.append((row["created_at"], image_id))
        with self.writer.begin() as conn:
            for table, rows in ((Image, images), (ImageProperty, props), (ImageTag, tags),
                                (ImageLocation, locations), (ImageMember, members)):
                if rows:
                    conn.execute(insert(table.__table__), rows)

    def _image(self, i: int) -> tuple[dict[str, Any], bool]:
        rng = self.rng
        owner = self.owners[i % len(self.owners)]
        # 5 % public, 5 % community, 10 % shared, the rest private.
        visibility = {0: "public", 1: "community", 2: "shared", 3: "shared"}.get(
            i % 20, "private")
        created = self.now - SPREAD * rng.random()
        updated = min(self.now, created + timedelta(days=30) * rng.random())
        size = rng.randrange(12 * 1024**2, 20 * 1024**3)
        row = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "name": f"scale-{i:06d}", "disk_format": "qcow2" if i % 3 else "raw",
            "container_format": "bare", "size": size, "virtual_size": None,
            "status": "active", "visibility": visibility,
            "checksum": f"{rng.getrandbits(128):032x}", "os_hash_algo": "sha512",
            "os_hash_value": f"{rng.getrandbits(512):0128x}",
            "min_disk": 0, "min_ram": 0, "owner": owner, "protected": False,
            "os_hidden": False, "created_at": created, "updated_at": updated,
            "deleted_at": None, "deleted": False,
        }
        listable = (owner == self.project or visibility == "public"
                    or (visibility == "shared" and i % 2 == 0))
        return row, listable

    def markers(self) -> list[str]:
        """Listable images with at least 100 older listable ones: a page after
        any of them is a full page."""
        newest_first = sorted(self._listable_created, reverse=True)
        return [image_id for _, image_id in newest_first[:-100]] or self.listable

    @staticmethod
    def _properties(i: int) -> dict[str, str]:
        return {"os_distro": DISTROS[i % len(DISTROS)], "os_version": str(10 + i % 15),
                "hw_disk_bus": "virtio" if i % 4 else "scsi",
                "architecture": "x86_64" if i % 5 else "aarch64"}

    def dispose(self) -> None:
        self.engine.dispose()


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _timed(client: LeanClient, url: str, params: dict[str, Any] | None = None
           ) -> tuple[float, Any]:
    t0 = time.perf_counter()
    resp = client.get(url, params=params)
    return time.perf_counter() - t0, resp


def measure_level(client: LeanClient, listable: list[str], markers: list[str], reps: int,
                  rng: random.Random) -> dict[str, Any]:
    """List page and GET timings at the current database size."""
    for _ in range(3):  # warm caches and connections, as a long-running server has them
        client.get("/v2/images", params={"limit": 100})
        client.get(f"/v2/images/{rng.choice(listable)}")
    first, marker, gets, problems = [], [], [], []
    expect_full = len(listable) >= 200
    for _ in range(reps):
        seconds, resp = _timed(client, "/v2/images", {"limit": 100})
        first.append(seconds)
        if resp.status_code != 200 or (expect_full and len(resp.json()["images"]) != 100):
            problems.append(f"first page: {resp.status_code}")
        # A random position in the list, as a client paging through it would reach.
        mark = rng.choice(markers)
        seconds, resp = _timed(client, "/v2/images", {"limit": 100, "marker": mark})
        marker.append(seconds)
        if resp.status_code != 200 or (expect_full and len(resp.json()["images"]) != 100):
            problems.append(f"marker page: {resp.status_code}")
        image_id = rng.choice(listable)
        seconds, resp = _timed(client, f"/v2/images/{image_id}")
        gets.append(seconds)
        if resp.status_code != 200 or resp.json().get("id") != image_id:
            problems.append(f"GET: {resp.status_code}")
    return {
        "list_p50_ms": _p(first + marker, 0.5), "list_first_p50_ms": _p(first, 0.5),
        "list_marker_p50_ms": _p(marker, 0.5), "list_p95_ms": _p(first + marker, 0.95),
        "get_p50_ms": _p(gets, 0.5), "get_p95_ms": _p(gets, 0.95),
        "requests": 3 * reps, "verified": not problems, "problems": problems[:5],
    }


def run(endpoint: str, headers: dict[str, str], db_url: str, images_dir: str, project: str,
        levels: tuple[int, ...] = LEVELS, reps: int = 50) -> dict[str, Any]:
    """Seed up to each level in turn and measure there; ratios compare the
    largest level with the smallest."""
    seeder = Seeder(db_url, images_dir, project)
    rng = random.Random(7)
    out: dict[str, Any] = {"levels": list(levels), "reps": reps,
                           "db": ("postgresql" if seeder.is_postgresql else
                                  "mariadb" if seeder.is_mariadb else "sqlite"),
                           "analyzed": seeder.is_postgresql or seeder.is_mariadb}
    try:
        with LeanClient(endpoint, headers, timeout=60) as client:
            for level in levels:
                seed_seconds = seeder.top_up(level)
                figures = measure_level(client, seeder.listable, seeder.markers(), reps, rng)
                figures.update(seed_seconds=round(seed_seconds, 2),
                               live_images=seeder.live_images(),
                               listable_seeded=len(seeder.listable))
                out[f"at_{level}"] = figures
    finally:
        seeder.dispose()
    low, high = out[f"at_{levels[0]}"], out[f"at_{levels[-1]}"]
    for key, figure in (("list_ratio", "list_p50_ms"), ("get_ratio", "get_p50_ms")):
        out[key] = (round(high[figure] / low[figure], 2)
                    if high.get(figure) and low.get(figure) else None)
    out["verified"] = all(out[f"at_{lv}"]["verified"] for lv in levels)
    return out
