"""What signature verification costs an upload: the same 1 GiB uploaded unsigned and
signed (RSA-PSS, SHA-256, certificate in the real Barbican), in pairs, in one run.

    python -m bench.signatures [--size-mib 1024] [--pairs 2] [--out FILE.json]

Needs the Keystone and Barbican the signature tests use (GLIMPSE_KEYSTONE_DIR and
GLIMPSE_BARBICAN_DIR, as started by scripts/keystone.sh and scripts/barbican.sh).
One ``glimpse serve`` (1 worker, SQLite, file store) takes every upload; the two
kinds alternate (unsigned first in odd pairs, signed first in even ones) so a noisy
neighbour slows both alike. Each upload is checked: the image is active with the
data's md5, and a signed one's signature properties are those sent. Goal: the
signed uploads' throughput within 10% of the unsigned ones' (median of the pairs).
A 10-byte image uploaded signed and unsigned in each pair separates the fixed cost
(the key manager's round trips, once per upload) from the data path's.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

BLOCK = 16 * 1024 * 1024
GOAL = 0.10


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_data(path: Path, size: int) -> tuple[str, bytes]:
    """A file of ``size`` bytes (a random block repeated, each copy altered); its md5
    and SHA-256 digest."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    block = bytearray(os.urandom(BLOCK))
    with path.open("wb") as f:
        done = 0
        while done < size:
            block[:8] = done.to_bytes(8, "big")
            piece = bytes(block[: min(BLOCK, size - done)])
            f.write(piece)
            md5.update(piece)
            sha.update(piece)
            done += len(piece)
    return md5.hexdigest(), sha.digest()


def upload(client: httpx.Client, headers: dict[str, str], path: Path, size: int,
           props: dict[str, str]) -> tuple[float, str]:
    r = client.post("/v2/images", headers=headers, json={
        "name": "bench-signature", "disk_format": "raw", "container_format": "bare", **props})
    r.raise_for_status()
    image_id = r.json()["id"]

    def body():
        with path.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                yield chunk

    t0 = time.perf_counter()
    r = client.put(f"/v2/images/{image_id}/file", content=body(), headers={
        **headers, "Content-Type": "application/octet-stream", "Content-Length": str(size)})
    took = time.perf_counter() - t0
    if r.status_code != 204:
        raise RuntimeError(f"upload answered {r.status_code}: {r.text[:300]}")
    return took, image_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--out", help="write the JSON result here too")
    args = ap.parse_args(argv)

    from tests.conftest import start_server
    from tests.rbac.conftest import (
        KeystoneAdmin,
        issue_token,
        keystone_site,
        password_auth,
    )
    from tests.signatures.conftest import barbican_url, certificate_pem

    site = keystone_site()
    barbican = barbican_url(os.environ["GLIMPSE_KEYSTONE_DIR"])
    size = args.size_mib * 1024 * 1024
    admin = KeystoneAdmin(site)
    run = "glimpse-bench-sig-" + os.urandom(4).hex()
    project = admin.create_project(run)
    password = os.urandom(8).hex()
    user = admin.create_user(run, password)
    with tempfile.TemporaryDirectory(prefix="bench-sig-") as tmp:
        work = Path(tmp)
        try:
            admin.grant(project, user, admin.role_ids()["member"])
            token, _ = issue_token(site, password_auth(user, password, project))
            key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
            now = datetime.datetime.now(datetime.UTC)
            pem = certificate_pem(key, now - datetime.timedelta(days=1),
                                  now + datetime.timedelta(days=1))
            r = httpx.post(f"{barbican}/v1/secrets", headers={"X-Auth-Token": token}, json={
                "name": run, "secret_type": "certificate",
                "payload": base64.b64encode(pem).decode(),
                "payload_content_type": "application/octet-stream",
                "payload_content_encoding": "base64"}, timeout=120)
            r.raise_for_status()
            cert_uuid = r.json()["secret_ref"].rsplit("/", 1)[1]

            _say(f"writing {args.size_mib} MiB of test data")
            data = work / "disk.raw"
            md5, digest = make_data(data, size)
            signature = key.sign(digest, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                     salt_length=padding.PSS.MAX_LENGTH),
                                 utils.Prehashed(hashes.SHA256()))
            props = {"img_signature": base64.b64encode(signature).decode(),
                     "img_signature_hash_method": "SHA-256",
                     "img_signature_key_type": "RSA-PSS",
                     "img_signature_certificate_uuid": cert_uuid}
            conf = "\n".join(["[key_manager]", "backend = barbican", "[barbican]",
                              f"auth_endpoint = {site.url}", f"barbican_endpoint = {barbican}"])
            server = start_server(work, None, config_text=conf)
            headers = {"X-Identity-Status": "Confirmed", "X-Project-Id": project,
                       "X-User-Id": user, "X-Roles": "member,reader", "X-Auth-Token": token}
            times: dict[str, list[float]] = {"unsigned": [], "signed": []}
            tiny_times: dict[str, list[float]] = {"unsigned": [], "signed": []}
            tiny = work / "tiny.raw"
            tiny.write_bytes(b"tiny image")
            tiny_digest = hashlib.sha256(b"tiny image").digest()
            tiny_props = {**props, "img_signature": base64.b64encode(key.sign(
                tiny_digest, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                         salt_length=padding.PSS.MAX_LENGTH),
                utils.Prehashed(hashes.SHA256()))).decode()}
            try:
                with httpx.Client(base_url=server.url, timeout=600) as client:
                    for n in range(1, args.pairs + 1):
                        # The fixed cost of a signed upload (the key manager's round
                        # trips, once per upload): a 10-byte image signed and not.
                        for kind in ("unsigned", "signed"):
                            took, image_id = upload(client, headers, tiny, 10,
                                                    tiny_props if kind == "signed" else {})
                            client.delete(f"/v2/images/{image_id}", headers=headers)
                            tiny_times[kind].append(took)
                        order = ["unsigned", "signed"] if n % 2 else ["signed", "unsigned"]
                        for kind in order:
                            took, image_id = upload(client, headers, data, size,
                                                    props if kind == "signed" else {})
                            img = client.get(f"/v2/images/{image_id}", headers=headers).json()
                            assert img["status"] == "active" and img["checksum"] == md5, img
                            if kind == "signed":
                                assert img["img_signature"] == props["img_signature"]
                            client.delete(f"/v2/images/{image_id}", headers=headers)
                            times[kind].append(took)
                            _say(f"[pair {n}] {kind:<8} {size / took / 2**20:8.1f} MiB/s "
                                 f"({took:.2f} s)")
            finally:
                server.stop()
        finally:
            admin.delete(f"/users/{user}")
            admin.delete(f"/projects/{project}")
            admin.close()

    mib_s = {k: size / statistics.median(v) / 2**20 for k, v in times.items()}
    cost = 1 - mib_s["signed"] / mib_s["unsigned"]
    fixed = statistics.median(tiny_times["signed"]) - statistics.median(tiny_times["unsigned"])
    # Throughput of the data path alone: the signed time less the key manager's part.
    data_mib_s = size / max(statistics.median(times["signed"]) - fixed, 1e-9) / 2**20
    data_cost = 1 - data_mib_s / mib_s["unsigned"]
    result: dict[str, Any] = {
        "size_bytes": size, "pairs": args.pairs, "seconds": times,
        "tiny_upload_seconds": tiny_times, "key_manager_seconds": fixed,
        "median_mib_s": mib_s, "verification_cost": cost,
        "signed_data_path_mib_s": data_mib_s, "data_path_cost": data_cost,
        "goal": GOAL, "goal_met": cost < GOAL, "verified": True,
        "note": "measured on a shared, loaded machine; only the ratio of this run means "
                "anything",
    }
    _say(f"median: unsigned {mib_s['unsigned']:.1f} MiB/s, signed {mib_s['signed']:.1f} "
         f"MiB/s: verification costs {cost:.1%} (goal < {GOAL:.0%}: "
         f"{'met' if cost < GOAL else 'NOT met'}); of that, the key manager's round "
         f"trips {fixed:.2f} s per upload, the data path {data_cost:.1%}")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
