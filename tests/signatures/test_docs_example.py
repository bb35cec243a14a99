"""docs/signatures.md's end-to-end example, run as written: openssl makes the key and
certificate, ``openstack secret store`` puts the certificate into the real Barbican,
``openstack image create`` uploads to a live Glimpse that validates the user's
Keystone token and verifies the signature; the tampered copy is refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import start_server
from tests.rbac.conftest import glimpse_config
from tests.signatures.conftest import KeyManagerSite, signature_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "signatures.md"


def example_script() -> str:
    text = DOC.read_text()
    block = re.search(r"<!-- BEGIN SIGNATURE EXAMPLE -->\n```bash\n(.*?)```\n"
                      r"<!-- END SIGNATURE EXAMPLE -->", text, re.S)
    assert block, "docs/signatures.md lost its example block"
    return block.group(1)


def test_docs_example_runs(tmp_path: Path, key_manager: KeyManagerSite):
    openstack = shutil.which("openstack", path=str(Path(sys.executable).parent))
    assert openstack, "the openstack client comes with the test extras"
    conf = glimpse_config(key_manager.keystone) + "\n" + signature_config(key_manager)
    server = start_server(tmp_path, None, config_text=conf)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update({
            "PATH": f"{Path(openstack).parent}:{env.get('PATH', '')}",
            "OS_AUTH_URL": key_manager.keystone.url, "OS_AUTH_TYPE": "password",
            "OS_USER_ID": key_manager.user_id, "OS_PASSWORD": key_manager.password,
            "OS_PROJECT_ID": key_manager.project_id, "OS_IDENTITY_API_VERSION": "3",
            "OS_INTERFACE": "public",
            # The shared test Keystone's catalog names some other image service: this
            # run's Glimpse is given directly (a real cloud's catalog lists it).
            "OS_IMAGE_ENDPOINT_OVERRIDE": server.url,
            "PYTHONWARNINGS": "ignore",
        })
        done = subprocess.run(["bash", "-c", example_script()], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        out = done.stdout.split()
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert out == ["active", "400:", "Client", "Error"], done.stdout
    finally:
        server.stop()
