"""The deployment files validate offline: scripts/validate_deploy.sh exits 0.

The script installs its own tools (pinned) into .venv-deploy/ on first use, renders the
kustomizations and checks the Dockerfile, docker-compose.yml, the TF Serving configs and
the Kubernetes manifests; see docs/deployment.md#validation.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "validate_deploy.sh"


@pytest.mark.timeout(900)
def test_deployment_files_validate() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=880,
        check=False,
    )
    assert result.returncode == 0, f"scripts/validate_deploy.sh failed:\n{result.stdout[-20000:]}"
    assert "0 failed" in result.stdout.splitlines()[-1]
