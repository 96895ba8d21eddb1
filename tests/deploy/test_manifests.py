"""The deployment files validate offline: scripts/validate_deploy.sh exits 0.

The script installs its own tools (pinned) into .venv-deploy/ on first use, renders the
kustomizations and checks the Dockerfile, docker-compose.yml, the TF Serving configs and
the Kubernetes manifests; see docs/deployment.md#validation. The Dockerfile check is also fed
broken copies of the Dockerfile (one image per service: no TensorFlow in the light images,
non-root, health-checked, no compilers), and must reject each.
"""

from __future__ import annotations

import subprocess
import sys
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


# --------------------------------------------------------------------------- the images' checks
# deploy/checks/dockerfile_checks.py must catch what would break "one image per service":
# a light image installing another service (and with it TensorFlow), root, no health check,
# compilers at run time. Each case edits a copy of the real Dockerfile.
CHECKS = ROOT / "deploy" / "checks" / "deploy_checks.py"


def _check_dockerfile(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "Dockerfile").write_text(text)
    (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    return subprocess.run(
        [sys.executable, str(CHECKS), "dockerfile", str(tmp_path / "Dockerfile")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )


def test_dockerfile_check_passes_the_real_dockerfile(tmp_path: Path) -> None:
    result = _check_dockerfile(tmp_path, (ROOT / "Dockerfile").read_text())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        # the gateway's venv also syncing inference (whose lock pulls TensorFlow in)
        ("--no-editable --package hemovision-gateway", "--no-editable --package hemovision-gateway "
         "--package hemovision-inference", "gateway: uv sync must install exactly"),
        ("uv sync --frozen --no-dev --no-editable --package hemovision-auth",
         "uv sync --frozen --no-dev --no-editable --all-packages --package hemovision-auth",
         "auth: installs every workspace member"),
        ("USER ${UID}:${GID}", "USER root", "must run as a non-root USER"),
        ('CMD ["hv-grpc-health", "127.0.0.1:50054"', 'CMD ["hv-grpc-health", "127.0.0.1:50055"',
         "history: HEALTHCHECK must run"),
        ("install -y --no-install-recommends libstdc++6 libgomp1",
         "install -y --no-install-recommends libstdc++6 libgomp1 g++", "installs g++"),
    ],
)
def test_dockerfile_check_catches(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert old in text
    result = _check_dockerfile(tmp_path, text.replace(old, new, 1))
    assert result.returncode == 1 and complaint in result.stdout, result.stdout + result.stderr


def test_light_images_lock_no_tensorflow() -> None:
    """The offline check behind "no TensorFlow in gateway/auth/history/reports/preprocess": the
    uv.lock closure of each image's packages (and a sanity check that it does find TF where it is)."""
    code = (
        "import sys; sys.path.insert(0, 'deploy/checks'); import expected as e\n"
        "for t, pkgs in e.IMAGES.items():\n"
        "    tf = any(p.startswith('tensorflow') for p in e.locked_closure(pkgs))\n"
        "    print(t, tf)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    has_tf = dict(line.split() for line in out.splitlines())
    assert {t for t, v in has_tf.items() if v == "True"} == {"inference", "training", "migrate"}, out
