"""The rbd store's Ceph cluster stopped mid-upload and mid-download, for real: the OSD
of a cluster of the test's own (tests/faults/ceph.py) is frozen with SIGSTOP while a
streamed transfer of tens of MiB goes through a live ``glimpse serve``, and thawed
with SIGCONT. Ceph clients talk to the monitor and to every OSD directly, so the
TCP proxy of test_store_outage.py cannot cut them; and the shared cluster serves the
other tests, so it is never paused.

A frozen OSD accepts connections and answers nothing: librados would wait for it
without limit. ``rados_op_timeout`` (3 s here) bounds every request, so:

- Upload frozen half-way: 503 naming the timeout within two timeouts, the image
  queued again; a second upload with the monitor frozen too: 503 as well. Once the
  OSD is thawed the orphan sweep removes the partial RBD image (nothing is left in
  the pool) and a new upload succeeds without any restart.
- Download frozen half-way, one location: the 200 cannot turn into an error any
  more, so the connection is aborted before Content-Length bytes (every byte the
  client got is right); a download started while frozen answers 503 with a clear
  message; thawed, the same download returns the right bytes.
- Download with a second location on a file store: frozen half-way, the stream is
  resumed from the file store at the byte reached (the client sees a stall, not an
  error); started while frozen, it is served from the file store.

No request ever answers 500. The figures printed are the ones docs/reliability.md
quotes.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import start_server
from tests.faults.ceph import PrivateCeph
from tests.faults.load import JSON

MIB = 1024 * 1024
DATA = os.urandom(32 * MIB)
RAW = {**JSON, "Content-Type": "application/octet-stream"}
OP_TIMEOUT = 3
# An upload stuck in the store answers within this: a write times out, then closing
# the RBD image waits out one more (the removal is left to the sweep).
UPLOAD_BOUND = 2 * OP_TIMEOUT + 5


def _wait(check, timeout: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _create(api: httpx.Client, name: str) -> str:
    r = api.post(
        "/v2/images", json={"name": name, "disk_format": "raw", "container_format": "bare"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


class _Body:
    """A streamed request body that freezes the OSD once ``pause_at`` bytes are sent."""

    def __init__(self, ceph: PrivateCeph, data: bytes, pause_at: int):
        self.ceph, self.data, self.pause_at = ceph, data, pause_at
        self.sent = 0
        self.paused_at: float | None = None
        self.sent_at_pause = 0

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), MIB):
            if self.sent >= self.pause_at and self.paused_at is None:
                self.ceph.pause("osd.0")
                self.paused_at = time.monotonic()
                self.sent_at_pause = self.sent
            piece = self.data[start:start + MIB]
            self.sent += len(piece)
            yield piece


@pytest.fixture
def server(private_ceph: PrivateCeph, tmp_path, db_url):  # noqa: ANN001, ANN201
    assert private_ceph.images() == [], "the private pool is not empty"
    config = (
        "lease_period = 2\nlease_sweep_interval = 0.3\norphan_sweep_interval = 1\n"
        "enabled_backends = ceph:rbd,local:file\nshow_multiple_locations = true\n"
        "[glance_store]\ndefault_backend = ceph\n"
        + private_ceph.section(
            "ceph", rbd_store_chunk_size=4, rados_op_timeout=OP_TIMEOUT,
            rados_connect_timeout=10,
        )
        + f"[local]\nfilesystem_store_datadir = {tmp_path / 'local'}\n"
    )
    live = start_server(tmp_path, db_url, config_text=config)
    yield live
    live.stop()
    for daemon in list(private_ceph.paused):
        private_ceph.resume(daemon)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_osd_stopped_mid_upload_and_mid_download(private_ceph, server):  # noqa: ANN001
    """One test for all three parts: they share the one private cluster of the worker
    (tests spread over two xdist workers would start two)."""
    api = httpx.Client(base_url=server.url, headers=JSON, timeout=60)
    image_id = _upload_frozen(private_ceph, server, api)
    _download_frozen(private_ceph, api, image_id)
    _download_fails_over(private_ceph, server, api)
    log = server.log.read_text()
    assert "Unhandled error" not in log
    statuses = set(re.findall(r"status: (\d+)", log))
    assert statuses <= {"200", "201", "202", "204", "503"}, statuses
    assert "Traceback" not in log


def _upload_frozen(ceph: PrivateCeph, server, api: httpx.Client) -> str:  # noqa: ANN001
    image_id = _create(api, "rbd-outage")
    body = _Body(ceph, DATA, pause_at=10 * MIB)
    try:
        r = api.put(f"/v2/images/{image_id}/file", content=body, headers=RAW, timeout=120)
    except httpx.HTTPError as exc:
        pytest.fail(f"the upload got no answer ({exc!r}) after {body.sent} bytes")
    assert body.paused_at is not None, "the OSD was never frozen"
    answered_in = time.monotonic() - body.paused_at
    assert r.status_code == 503, r.text
    message = r.json()["message"]
    assert message.startswith(
        f"Error storing image data: Store 'ceph': Ceph cluster did not answer within "
        f"{OP_TIMEOUT}s"
    ), message
    assert answered_in < UPLOAD_BOUND, f"503 only after {answered_in:.1f}s"
    img = api.get(f"/v2/images/{image_id}").json()
    assert img["status"] == "queued" and img["size"] is None, img
    # A second upload with the monitor frozen as well (the whole cluster away): 503
    # too, image still queued.
    ceph.pause("mon.a")
    t0 = time.monotonic()
    r = api.put(f"/v2/images/{image_id}/file", content=DATA[:MIB], headers=RAW)
    second_in = time.monotonic() - t0
    assert r.status_code == 503, r.text
    assert f"Ceph cluster did not answer within {OP_TIMEOUT}s" in r.json()["message"], r.text
    assert second_in < UPLOAD_BOUND
    assert api.get(f"/v2/images/{image_id}").json()["status"] == "queued"
    ceph.resume("mon.a")
    ceph.resume("osd.0")
    thawed = time.monotonic()
    # The partial RBD image is removed by the orphan sweep once the OSD answers.
    removed = f"Removed orphaned data rbd://{ceph.env['CEPH_FSID']}/images/glimpse-partial."
    _wait(lambda: f"{removed}{image_id}." in server.log.read_text(), 30,
          "the sweep to remove the partial RBD image")
    swept_in = time.monotonic() - thawed
    aborted = re.search(rf"Upload to image {image_id} aborted after (\d+) bytes: "
                        rf"StoreUnavailable", server.log.read_text())
    assert aborted, "the server did not log the aborted upload"
    read_by_server = int(aborted.group(1))
    assert ceph.images() == []
    # The service works again by itself: the same upload, right away.
    t0 = time.monotonic()
    r = api.put(f"/v2/images/{image_id}/file", content=DATA, headers=RAW)
    assert r.status_code == 204, r.text
    retry_in = time.monotonic() - t0
    img = api.get(f"/v2/images/{image_id}").json()
    assert img["status"] == "active" and img["checksum"] == hashlib.md5(DATA).hexdigest()
    assert ceph.images() == [image_id]
    print(
        f"\nrbd upload: OSD frozen once the client had sent {body.sent_at_pause // MIB} MiB"
        f" of {len(DATA) // MIB} (the server had read {read_by_server / MIB:.1f} MiB);"
        f" 503 {answered_in:.1f}s later; second upload (monitor frozen too) 503 in"
        f" {second_in:.1f}s;"
        f" partial image swept {swept_in:.1f}s after SIGCONT;"
        f" retried upload 204 in {retry_in:.1f}s"
    )
    return image_id


def _download_frozen(ceph: PrivateCeph, api: httpx.Client, image_id: str) -> None:
    """The image is active with DATA, in the rbd store only: freeze the OSD half-way
    through its download."""
    got = bytearray()
    paused_at, got_at_pause = 0.0, 0
    with pytest.raises(httpx.HTTPError) as aborted:  # noqa: PT012 - the read is the point
        with api.stream("GET", f"/v2/images/{image_id}/file") as r:
            assert r.status_code == 200
            assert int(r.headers["content-length"]) == len(DATA)
            for piece in r.iter_bytes():
                got += piece
                if len(got) >= 2 * MIB and not ceph.paused:
                    ceph.pause("osd.0")
                    paused_at, got_at_pause = time.monotonic(), len(got)
    cut_in = time.monotonic() - paused_at
    assert paused_at, "the OSD was never frozen"
    assert len(got) < len(DATA), "the download finished although the OSD was frozen"
    assert got == DATA[: len(got)], "the client got wrong bytes"
    assert cut_in < 2 * OP_TIMEOUT + 5, f"the stream was cut only after {cut_in:.1f}s"
    t0 = time.monotonic()
    r = api.get(f"/v2/images/{image_id}/file")
    refused_in = time.monotonic() - t0
    assert r.status_code == 503, r.text
    message = r.json()["message"]
    assert message.startswith(
        f"Could not read image data: Store 'ceph': Ceph cluster did not answer within "
        f"{OP_TIMEOUT}s"
    ), message
    assert api.get(f"/v2/images/{image_id}").json()["status"] == "active"
    ceph.resume("osd.0")
    t0 = time.monotonic()
    r = api.get(f"/v2/images/{image_id}/file")
    assert r.status_code == 200 and r.content == DATA
    print(
        f"\nrbd download: OSD frozen after {got_at_pause / MIB:.1f} MiB received; connection"
        f" aborted {cut_in:.1f}s later after {len(got) / MIB:.1f} of {len(DATA) // MIB} MiB"
        f" ({type(aborted.value).__name__}, every byte right); new download 503 in"
        f" {refused_in:.1f}s; after SIGCONT 200 in {time.monotonic() - t0:.1f}s"
    )


def _download_fails_over(ceph: PrivateCeph, server, api: httpx.Client) -> None:  # noqa: ANN001
    """An image in the rbd store and copied to the file store: with the OSD frozen the
    download goes on from (or starts at) the file store's copy."""
    image_id = _create(api, "rbd-and-file")
    r = api.put(f"/v2/images/{image_id}/file", content=DATA, headers=RAW)
    assert r.status_code == 204, r.text
    r = api.post(
        f"/v2/images/{image_id}/import",
        json={"method": {"name": "copy-image"}, "stores": ["local"]},
    )
    assert r.status_code == 202, r.text
    _wait(
        lambda: api.get(f"/v2/images/{image_id}").json()["stores"] == "ceph,local",
        60,
        "the copy to the file store",
    )
    got = bytearray()
    paused_at, got_at_pause = 0.0, 0
    with api.stream("GET", f"/v2/images/{image_id}/file") as r:
        assert r.status_code == 200
        for piece in r.iter_bytes():
            got += piece
            if len(got) >= 2 * MIB and not paused_at:
                ceph.pause("osd.0")
                paused_at, got_at_pause = time.monotonic(), len(got)
    resumed_in = time.monotonic() - paused_at
    assert paused_at, "the OSD was never frozen"
    assert got == DATA, "the download resumed from the file store gave other bytes"
    t0 = time.monotonic()
    r = api.get(f"/v2/images/{image_id}/file")
    served_in = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.content == DATA
    ceph.resume("osd.0")
    log = server.log.read_text()
    resumed = re.search(rf"Image {image_id}: location rbd://\S+ failed after (\d+) bytes "
                        rf"\(Store 'ceph': Ceph cluster did not answer within {OP_TIMEOUT}s "
                        rf"\(RBD read\)\); resuming from the next location", log)
    assert resumed, "the server did not resume the stream from the file store"
    assert f"Image {image_id}: location rbd://" in log and "trying the next location" in log
    print(
        f"\nrbd + file: OSD frozen after {got_at_pause / MIB:.1f} MiB received; the whole"
        f" {len(DATA) // MIB} MiB arrived {resumed_in:.1f}s later (resumed from the file"
        f" store at byte {resumed.group(1)}); a download started while frozen 200 from"
        f" the file store in {served_in:.1f}s"
    )
