"""schemathesis over the gateway's whole OpenAPI, against the real system, signed in as an
org_admin whose organization holds a prediction and a batch (so list and detail answers carry real
objects): no 5xx but the documented 503, no status code a route does not document, every answer
valid against its own schema (body, content type, headers).

Two runs of one budget (MAX_TIME_S): examples, coverage and fuzzing first, then the stateful phase
on its own share (STATEFUL_TIME_S), so it always gets one, as a second org_admin with the same data
(the rate limit is per user). The stateful phase chains requests along the OpenAPI links the gateway
declares (hemovision_gateway/openapi_links.py: POST /api-keys -> DELETE /api-keys/{id}, POST
/batches -> GET /batches/{id}, a list's first item -> its detail, ...), with valid data and without
schemathesis' own inferred links (STATEFUL_CONFIG), and the test proves it did: scenarios ran and
declared links were followed, counted from the NDJSON events (each stateful case records the link
that produced it and whether its data was applied).

Bounded for CI: a fixed number of examples per operation, a request rate under the gateway's
per-user limit, a time cap. Summaries and NDJSON events land in test-artifacts/schemathesis/.
Excluded, because schemathesis would end this run's own session (it reuses ids from answers: the
session ids of GET /auth/sessions, the user id of GET /me) and every later request would answer
401: logout, sign-out-everywhere, DELETE /auth/sessions/{id}, and an admin's sign-out-everywhere
of a user (the authorization matrix and the accounts tests call them). Not enforced here
(schemathesis' opinions on how strictly input is validated: ST201/ST202, and the `Allow` header of
405s): test_authorization_matrix.py and the hostile-input tests pin the behaviour that matters; run
`st run` with `--checks all` to see them.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from hemovision_testkit.hostile import _cell, encode

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "schemathesis"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
EXCLUDED_PATHS = ("/api/v1/auth/logout", "/api/v1/auth/sign-out-everywhere", "/api/v1/auth/sessions/{session_id}",
                  "/api/v1/admin/users/{user_id}/sign-out-everywhere")
MAX_EXAMPLES = int(os.environ.get("HV_SCHEMATHESIS_EXAMPLES", "8"))
MAX_TIME_S = int(os.environ.get("HV_SCHEMATHESIS_MAX_TIME_S", "210"))  # both runs together
STATEFUL_TIME_S = MAX_TIME_S * 3 // 8  # the stateful run's share (78 s of 210)
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


# The stateful run walks the declared links only, with valid data (so that creating calls succeed and
# their answers feed the next step); invalid input is the other phases' job. schemathesis would also
# infer ~120 links of its own from field names, which thin out the declared ones in a short run.
STATEFUL_CONFIG = """\
[phases.stateful]
inference.algorithms = []
generation.mode = "positive"
"""


def _schemathesis(system, token: str, name: str, phases: str, max_time_s: int,
                  config: str | None = None) -> tuple[list[str], str, Path]:
    """One `st run`: (its failures, its console output (also in <name>.txt), its NDJSON events' path)."""
    events = ARTIFACTS / f"{name}.ndjson"
    cmd = [sys.executable, "-m", "schemathesis.cli"]
    if config is not None:
        (ARTIFACTS / f"{name}.toml").write_text(config)
        cmd += ["--config-file", str(ARTIFACTS / f"{name}.toml")]
    cmd += [
        "run", f"{system.base_url}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", ",".join(CHECKS),
        "--phases", phases,
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(max_time_s),
        "--rate-limit", RATE, "--request-timeout", "30", "--workers", "1",
        "--seed", os.environ.get("HV_SCHEMATHESIS_SEED", "20"), "--no-color", "--warnings", "off",
        "--report", "ndjson", "--report-ndjson-path", str(events),
        "--generation-database", "none",  # no .schemathesis/ example store in the checkout
    ]
    for path in EXCLUDED_PATHS:
        cmd += ["--exclude-path", path]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max_time_s + 60)
    output = run.stdout + run.stderr
    (ARTIFACTS / f"{name}.txt").write_text(output)
    summary = run.stdout[run.stdout.rfind("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    print(f"--- {name}: {phases}\n{summary}")
    failures = []
    if run.returncode != 0:
        failures.append(f"{name}: exit {run.returncode}\n{run.stdout[-12000:]}{run.stderr[-2000:]}")
    elif not ("Tested: " in summary and " generated" in summary):
        failures.append(f"{name}: no summary\n{run.stdout[-3000:]}")
    return failures, run.stdout, events


def stateful_link_steps(events: Path) -> tuple[int, dict[str, int]]:
    """(stateful scenarios, {declared link name: times followed}) from a run's NDJSON events: each
    stateful case records the transition that produced it, whether its data was applied, and whether
    schemathesis inferred the link or the schema declared it."""
    scenarios, followed = 0, {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished or finished.get("phase") != "stateful" or finished.get("is_final"):
            continue
        scenarios += 1
        for node in finished["recorder"].get("cases", {}).values():
            transition = node.get("transition")
            if transition and node.get("is_transition_applied") and not transition.get("is_inferred"):
                followed[transition["id"]] = followed.get(transition["id"], 0) + 1
    return scenarios, followed


@pytest.mark.timeout(MAX_TIME_S + 240)  # the runs, plus starting the stack when this test is the first to need it
def test_openapi_holds_against_the_running_system(system, client):
    token = _org_admin_with_data(client)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.ndjson"):
        stale.unlink()
    failures, _, _ = _schemathesis(system, token, "examples-coverage-fuzzing", "examples,coverage,fuzzing",
                                   MAX_TIME_S - STATEFUL_TIME_S)
    # Its own org_admin: the rate limit is per user and per minute, and the two runs back to back would
    # share a minute (429s, and schemathesis waiting out Retry-After past its time cap).
    found, stdout, events = _schemathesis(system, _org_admin_with_data(client), "stateful", "stateful",
                                          STATEFUL_TIME_S, STATEFUL_CONFIG)
    failures += found
    assert not failures, "\n\n".join(failures)

    # The stateful phase ran and walked the declared links, not just single requests.
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected / (\d+) total", stdout)
    assert links, stdout[-3000:]
    covered, selected, total = map(int, links.groups())
    scenarios, followed = stateful_link_steps(events)
    print(f"stateful: {scenarios} scenarios; links {covered} covered / {selected} selected / {total} total; "
          f"declared links followed: {sum(followed.values())} times, {len(followed)} distinct: {sorted(followed)}")
    assert scenarios > 0 and covered > 0 and selected >= 40, stdout[-3000:]
    assert followed, "the stateful phase never followed a declared OpenAPI link"
