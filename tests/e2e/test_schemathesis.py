"""schemathesis over the gateway's whole OpenAPI, against the real system, signed in as an
org_admin whose organization holds a prediction and a batch (so list and detail answers carry real
objects): no 5xx but the documented 503, no status code a route does not document, every answer
valid against its own schema (body, content type, headers).

Bounded for CI: a fixed number of examples per operation, a request rate under the gateway's
per-user limit, a time cap. The run's summary and NDJSON events land in test-artifacts/schemathesis/.
Excluded: logout and sign-out-everywhere (they would end this run's own session; the authorization
matrix calls them). Not enforced here (schemathesis' opinions on how strictly input is validated:
ST201/ST202, and the `Allow` header of 405s): test_authorization_matrix.py and the hostile-input
tests pin the behaviour that matters; run `st run` with `--checks all` to see them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

from hemovision_testkit.hostile import _cell, encode

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "schemathesis"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
EXCLUDED_PATHS = ("/api/v1/auth/logout", "/api/v1/auth/sign-out-everywhere")
MAX_EXAMPLES = int(os.environ.get("HV_SCHEMATHESIS_EXAMPLES", "8"))
MAX_TIME_S = int(os.environ.get("HV_SCHEMATHESIS_MAX_TIME_S", "240"))
RATE = "480/m"  # under HV_GATEWAY_RATE_LIMIT_REQUESTS (600 per user per minute): real answers, not 429s


def _org_admin_with_data(client) -> str:
    email, password = f"st-{uuid.uuid4().hex[:8]}@example.org", "correct horse battery staple"
    assert client.post("/api/v1/auth/register", json={"email": email, "password": password,
                                                      "organization": f"Schemathesis {uuid.uuid4().hex[:6]}"}
                       ).status_code == 201
    token = client.post("/api/v1/auth/login", json={"email": email, "password": password}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    png = encode(_cell(64, 64, 5), "PNG")
    assert client.post("/api/v1/predictions", headers=headers,
                       files={"file": ("cell.png", png, "image/png")}).status_code == 201
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cell.png", png)
        zf.writestr("notes.txt", b"not an image")  # a failed item too
    assert client.post("/api/v1/batches", headers=headers,
                       files={"files": ("cells.zip", buf.getvalue(), "application/zip")}).status_code == 202
    return token


def test_openapi_holds_against_the_running_system(system, client):
    token = _org_admin_with_data(client)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{system.base_url}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_TIME_S),
        "--rate-limit", RATE, "--request-timeout", "30", "--workers", "1",
        "--seed", os.environ.get("HV_SCHEMATHESIS_SEED", "20"), "--no-color", "--warnings", "off",
        "--report", "ndjson", "--report-dir", str(ARTIFACTS),
        "--generation-database", "none",  # no .schemathesis/ example store in the checkout
    ]
    for path in EXCLUDED_PATHS:
        cmd += ["--exclude-path", path]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=MAX_TIME_S + 240)
    (ARTIFACTS / "summary.txt").write_text(run.stdout + run.stderr)
    summary = run.stdout[run.stdout.rfind("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    assert "Tested: " in summary and " generated" in summary
