"""Rolling upgrades: the previous release's code keeps serving from a database that the
new release has migrated (expand first, contract later; docs/operations.md).

For every migration revision N after the first, the code as it was just before N was
added (``git archive`` of the commit before the one that added N's script: the
release whose head was N-1) runs in a subprocess against a database upgraded to N by
today's code, and drives the API: create, upload, show, list, PATCH, tags, members,
delete, tasks and metadefs. Then today's code reads what that old node wrote. A
migration that drops or renames what the old code uses, or adds a NOT NULL column
without a default, fails here. New revisions are picked up from the migration
scripts and the git history, with nothing to change in this file.

Needs the repository's git history (a shallow clone fails loudly, as every missing
prerequisite does in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from alembic import command
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.db import engine as db_engine
from glimpse.services import runtime as runtime_mod
from tests.conftest import BACKENDS, as_project, make_conf

REPO = Path(__file__).resolve().parents[2]
VERSIONS = REPO / "glimpse" / "db" / "migrations" / "versions"
OWNER = as_project("rolling-owner")
# SQLite, PostgreSQL and MariaDB ("mysql"; GLIMPSE_TEST_DBS may leave one out). The
# oldest old code (before 0002) predates the MariaDB fixes of 8e987bb and still
# serves there: what it does in OLD_NODE needs none of them.
ROLLING_BACKENDS = [b for b in BACKENDS if b in ("sqlite", "postgresql", "mysql")]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _revision_steps() -> list[tuple[str, str, str]]:
    """(revision, script file, the commit before the one that added it), oldest first;
    revisions not yet committed (work in progress) are left to the next commit."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db_engine.alembic_config("sqlite://"))
    steps = []
    for rev in reversed(list(script.walk_revisions())):
        if rev.down_revision is None:
            continue
        path = Path(rev.path).resolve().relative_to(REPO)
        added = _git("log", "--diff-filter=A", "--format=%H", "--", str(path)).splitlines()
        if added:
            steps.append((rev.revision, path.name, added[-1] + "^"))
    return steps


def _history_present() -> bool:
    try:
        return _git("rev-parse", "--is-shallow-repository") == "false"
    except (OSError, subprocess.CalledProcessError):
        return False


assert _history_present(), "tests/db/test_rolling_upgrade.py needs a full git clone"
STEPS = _revision_steps()

OLD_NODE = textwrap.dedent("""
    import json, sys
    old_root, url, data_dir = sys.argv[1:4]
    import glimpse
    assert glimpse.__file__.startswith(old_root), glimpse.__file__
    from starlette.testclient import TestClient
    from glimpse.api.app import create_app
    from glimpse.config import load_config
    from glimpse.services import runtime as runtime_mod

    conf = load_config([], {"data_dir": data_dir, "database.connection": url})
    rt = runtime_mod.build(conf)  # no migration: the schema is newer than this code
    c = TestClient(create_app(conf, rt), headers={"Accept": "application/json"})
    H = {"X-Identity-Status": "Confirmed", "X-Project-Id": "rolling-owner",
         "X-User-Id": "u-owner", "X-Roles": "member,reader"}
    ADMIN = {**H, "X-Roles": "admin,member,reader"}
    V21 = "application/openstack-images-v2.1-json-patch"
    seen = {}

    def ok(r, *codes):
        assert r.status_code in codes, (r.request.method, r.request.url, r.status_code, r.text)
        return r

    image = ok(c.post("/v2/images", headers=H, json={
        "name": "written-by-old", "disk_format": "raw", "container_format": "bare",
        "tags": ["old"], "old_key": "v"}), 201).json()
    iid = image["id"]
    ok(c.put(f"/v2/images/{iid}/file", content=b"o" * 4096,
             headers={**H, "Content-Type": "application/octet-stream"}), 204)
    shown = ok(c.get(f"/v2/images/{iid}", headers=H), 200).json()
    assert shown["status"] == "active" and shown["size"] == 4096, shown
    listed = ok(c.get("/v2/images?limit=10&sort_key=name&sort_dir=asc", headers=H), 200)
    assert iid in [i["id"] for i in listed.json()["images"]]
    ok(c.get("/v2/images?tag=old&name=written-by-old", headers=H), 200)
    ok(c.patch(f"/v2/images/{iid}", headers={**H, "Content-Type": V21},
               json=[{"op": "add", "path": "/patched", "value": "yes"}]), 200)
    ok(c.put(f"/v2/images/{iid}/tags/extra", headers=H), 204)
    ok(c.post(f"/v2/images/{iid}/members", headers=H, json={"member": "other-project"}), 200)
    ok(c.get(f"/v2/images/{iid}/members", headers=H), 200)
    assert ok(c.get(f"/v2/images/{iid}/file", headers=H), 200).content == b"o" * 4096
    gone = ok(c.post("/v2/images", headers=H, json={"name": "deleted-by-old"}), 201).json()
    ok(c.delete(f"/v2/images/{gone['id']}", headers=H), 204)
    for path in ("/v2/tasks", "/v2/metadefs/namespaces", "/v2/metadefs/resource_types"):
        r = c.get(path, headers=ADMIN)
        if r.status_code != 404:  # the old code may not have had that API yet
            ok(r, 200)
            seen[path] = True
    if "/v2/metadefs/namespaces" in seen:
        ok(c.post("/v2/metadefs/namespaces", headers=ADMIN,
                  json={"namespace": "OLD::Ns", "visibility": "public"}), 201)
    print(json.dumps({"image": iid, "seen": sorted(seen)}))
""")


def _old_tree(tmp_path: Path, commit: str) -> Path:
    root = tmp_path / "old"
    root.mkdir()
    archive = tmp_path / "old.tar"
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit, "glimpse"],
            check=True,
            stdout=out,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.mark.parametrize("fresh_db_url", ROLLING_BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("revision", "script", "old_commit"), STEPS, ids=[step[1].removesuffix(".py") for step in STEPS]
)
def test_previous_code_serves_from_the_new_schema(
    fresh_db_url, tmp_path, revision, script, old_commit
):
    db = db_engine.from_conf(make_conf(tmp_path, fresh_db_url))
    try:
        command.upgrade(db_engine.alembic_config(fresh_db_url), revision)
        assert db_engine.stamped_revisions(db) == {revision}
    finally:
        db.dispose()
    old = _old_tree(tmp_path, old_commit)
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(old)}
    proc = subprocess.run(
        [sys.executable, "-c", OLD_NODE, str(old), fresh_db_url, str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"the code before {script} failed against its schema:\n{proc.stderr[-4000:]}"
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if revision == STEPS[-1][0]:
        # Today's code (at head) reads what the old node wrote.
        conf = make_conf(tmp_path, fresh_db_url)
        rt = runtime_mod.build(conf, migrate=True)
        try:
            client = TestClient(create_app(conf, rt), headers={"Accept": "application/json"})
            shown = client.get(f"/v2/images/{result['image']}", headers=OWNER)
            assert shown.status_code == 200, shown.text
            image = shown.json()
            assert image["status"] == "active" and image["patched"] == "yes"
            assert sorted(image["tags"]) == ["extra", "old"]
            data = client.get(f"/v2/images/{result['image']}/file", headers=OWNER)
            assert data.content == b"o" * 4096
        finally:
            rt.close()


def test_every_revision_after_the_first_is_covered():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db_engine.alembic_config("sqlite://"))
    committed = {
        p.name
        for p in VERSIONS.glob("*.py")
        if _git("log", "--format=%H", "-1", "--", str(p.relative_to(REPO)))
    }
    revisions = [
        r
        for r in script.walk_revisions()
        if r.down_revision is not None and Path(r.path).name in committed
    ]
    assert {step[0] for step in STEPS} == {r.revision for r in revisions}
    assert len(STEPS) >= 5


def test_a_node_of_the_previous_release_starts_on_a_newer_schema(tmp_path, caplog):
    """What today's code does when the next release has migrated the database first: it
    serves without migrating (no "Can't locate revision"), and `db check` says so."""
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    db = db_engine.from_conf(make_conf(tmp_path, url))
    try:
        db_engine.upgrade(db)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
        with caplog.at_level("WARNING", logger="glimpse.db.engine"):
            assert db_engine.upgrade_if_needed(db) is False
        assert "newer than this release" in caplog.text
        assert db_engine.stamped_revisions(db) == {"9999_future"}
    finally:
        db.dispose()
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text(f"[database]\nconnection = {url}\n")
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "glimpse.cli",
            "db",
            "check",
            "--config-file",
            str(conf_file),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 4, check.stdout + check.stderr
    assert "newer than this release" in check.stdout
    conf = make_conf(tmp_path, url)
    rt = runtime_mod.build(conf, migrate=True)  # as `glimpse serve` starts
    try:
        client = TestClient(create_app(conf, rt), headers={"Accept": "application/json"})
        assert client.post("/v2/images", json={"name": "n"}, headers=OWNER).status_code == 201
    finally:
        rt.close()
