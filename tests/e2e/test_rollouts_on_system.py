"""Safe rollouts end to end through REST on the system as `make up` runs it (issue 18 item 4): a
platform_admin starts a canary of the other published version, uploads are answered by both with
the share roughly kept and live numbers per version appear; abort; a shadow answers only from the
active version and records agreement (both versions are the shipped model: 100 %); promote makes
the candidate active through the gate; no upload fails along the way."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "rollout-e2e-password-1234"


def _platform_admin(system, client) -> dict:
    email = f"rollout-root-{uuid.uuid4().hex[:6]}@example.org"
    created = subprocess.run(
        [sys.executable, "-m", "hemovision_auth", "create-admin", "--email", email, "--password-stdin"],
        input=PASSWORD, text=True, capture_output=True, cwd=ROOT, timeout=120,
        env={**os.environ, "HV_DATABASE_URL": system.database_url, "HV_ENV": "development"})
    assert created.returncode == 0, created.stderr
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _lab(client) -> dict:
    email = f"rollout-lab-{uuid.uuid4().hex[:8]}@example.org"
    r = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD,
                                                    "organization": f"Rollout {uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _upload(client: httpx.Client, headers: dict, png: bytes) -> int:
    r = client.post("/api/v1/predictions", headers=headers, files={"file": ("cell.png", png, "image/png")})
    assert r.status_code == 201, r.text  # no upload ever fails during a rollout
    return r.json()["model"]["version"]


def _until(fn, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.5)


def test_canary_shadow_promote(system, client, test_images):
    admin, lab = _platform_admin(system, client), _lab(client)
    png = test_images[0][1].read_bytes()
    models = client.get("/api/v1/models", headers=admin).json()["items"]
    active = next(m["version"] for m in models if m["status"] == "active")
    candidate = next(m["version"] for m in models if m["status"] != "active" and not m["organization_id"])

    r = client.post("/api/v1/rollouts", headers=admin,
                    json={"version": candidate, "mode": "canary", "canary_percent": 50, "reason": "e2e"})
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/rollouts", headers=admin,
                       json={"version": candidate, "mode": "shadow"}).status_code == 409
    # The candidate is pre-loaded, then answers about half of the platform-routed uploads.
    assert _until(lambda: _upload(client, lab, png) == candidate), "the canary never answered"
    versions = [_upload(client, lab, png) for _ in range(60)]
    share = versions.count(candidate) / len(versions)
    print(f"canary 50 %: {share:.2f} of {len(versions)} uploads")
    assert set(versions) <= {active, candidate} and 0.25 <= share <= 0.75
    current = _until(lambda: (lambda c: c if sum(v["requests"] for v in c["stats"]["versions"]) >= 60 else None)(
        client.get("/api/v1/rollouts/current", headers=lab).json()), timeout=20)
    assert current and current["status"] == "running"
    by_role = {v["role"]: v for v in current["stats"]["versions"]}
    assert by_role["candidate"]["requests"] > 0 and by_role["baseline"]["requests"] > 0
    assert by_role["candidate"]["latency_p50_ms"] > 0 and by_role["baseline"]["latency_p95_ms"] > 0
    print("canary stats:", current["stats"])
    assert client.post("/api/v1/rollouts/current/abort", headers=admin,
                       json={"reason": "e2e"}).json()["status"] == "aborted"
    assert _until(lambda: all(_upload(client, lab, png) == active for _ in range(10)), timeout=30)

    # Shadow: every answer from the active version, agreement recorded (same weights: 100 %).
    shadow = client.post("/api/v1/rollouts", headers=admin, json={"version": candidate, "mode": "shadow"}).json()
    assert shadow["mode"] == "shadow"
    versions = [_upload(client, lab, png) for _ in range(40)]
    assert set(versions) == {active}
    current = _until(lambda: (lambda c: c if c["stats"]["compared_cells"] >= 10 else None)(
        client.get("/api/v1/rollouts/current", headers=admin).json()), timeout=60)
    assert current, "no shadow run was recorded"
    print("shadow stats:", current["stats"])
    assert current["stats"]["agreement_rate"] == 1.0 and current["stats"]["shadow_failed"] == 0

    # Promote: through the gate (same metrics: passes), the candidate becomes active.
    promoted = client.post("/api/v1/rollouts/current/promote", headers=admin, json={"reason": "e2e"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["status"] == "promoted"
    models = client.get("/api/v1/models", headers=admin).json()["items"]
    assert next(m for m in models if m["version"] == candidate)["status"] == "active"
    assert _until(lambda: _upload(client, lab, png) == candidate, timeout=60)
    # Back where the system started (other test files share it when run together).
    client.post(f"/api/v1/models/{active}/activate", headers=admin, json={"reason": "e2e rollback"})
