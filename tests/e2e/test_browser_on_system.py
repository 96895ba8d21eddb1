"""The Playwright browser suite (services/gateway/tests/browser) against the real system:
sign up, verify the e-mail through real SMTP, upload one image and a ZIP, watch the batch,
open a result, toggle the heatmap, filter the history, download a PDF, an admin activates
a model version (a real hot swap). Screenshots land in test-artifacts/browser-system/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_browser_suite_on_the_real_system(system, platform_admin):
    email, password = platform_admin()
    env = {
        **os.environ,
        "HV_E2E_BASE_URL": system.base_url,
        "HV_E2E_ADMIN_EMAIL": email,
        "HV_E2E_ADMIN_PASSWORD": password,
        "HV_E2E_SMTP_PORT": str(system.smtp_port),
        "HV_E2E_ARTIFACTS": str(ROOT / "test-artifacts" / "browser-system"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "services/gateway/tests/browser"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.splitlines()[-1]
