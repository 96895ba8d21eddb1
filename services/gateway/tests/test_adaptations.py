""""Adapt to our lab" over REST (fake training service): the contract (202, lower-case statuses),
progress and the before/after figures, the gate's reasons, cancel, the organization's serving
version and its rollback, and the refusals as clear 4xx (409 with the service's message, 404
for another organization's id, 403 for a lab user). The CLI's `hemovision adapt` is tested in
test_ui_and_cli.py."""

from __future__ import annotations

import pytest

from gateway_fakes import World, auth

STATUSES = {"queued", "running", "succeeded", "rejected", "failed", "cancelled"}


def org_admin(world: World, reviewed: int = 24) -> tuple[str, str]:
    u, token = world.user("org_admin")
    world.add_reviewed(u.organization_id, reviewed)
    return u.organization_id, token


async def run_to_end(client, token: str, adaptation_id: str) -> list[dict]:
    seen = []
    for _ in range(20):
        r = await client.get(f"/api/v1/adaptations/{adaptation_id}", headers=auth(token))
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if seen[-1]["finished"]:
            return seen
    raise AssertionError(f"never finished: {seen[-1]}")


async def test_start_follow_succeed_and_roll_back(client, world):
    org, token = org_admin(world)
    before = (await client.get("/api/v1/organization/model", headers=auth(token))).json()
    assert before == {"organization_id": org, "model_name": "hemovision", "version": 1, "adapted": False,
                      "source": "platform", "platform_version": 1, "stale": False}

    r = await client.post("/api/v1/adaptations", json={}, headers=auth(token))
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["status"] == "queued" and not started["finished"] and started["id"]
    assert started["cells"] == 24 and started["holdout_cells"] >= 10 and started["base_version"] == 1
    assert started["previous_version"] is None and started["holdout_accuracy_before"] is None

    seen = await run_to_end(client, token, started["id"])
    assert {s["status"] for s in seen} <= STATUSES
    running = [s for s in seen if s["status"] == "running"]
    assert [s["epoch"] for s in running] == [1, 2, 3] and running[-1]["progress"] == 1.0
    done = seen[-1]
    assert done["status"] == "succeeded" and done["model_version"] and done["gate_reasons"] == []
    assert (done["holdout_accuracy_before"], done["holdout_accuracy_after"]) == (0.55, 0.85)
    assert (done["pbc_val_accuracy_before"], done["pbc_val_accuracy_after"]) == (0.988, 0.984)

    served = (await client.get("/api/v1/organization/model", headers=auth(token))).json()
    assert served["version"] == done["model_version"] and served["adapted"] and served["source"] == "adapted"
    listed = (await client.get("/api/v1/adaptations", headers=auth(token))).json()["items"]
    assert [a["id"] for a in listed] == [started["id"]]

    r = await client.post("/api/v1/organization/model/rollback", json={}, headers=auth(token))
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["source"] == "platform"
    r = await client.post("/api/v1/organization/model/rollback", headers=auth(token))
    assert r.status_code == 409 and _without_trace_id(r.json()["error"]) == {
        "code": "failed_precondition", "message": "your organization has no adapted version to roll back"}


async def test_rejected_shows_the_gate_reasons_and_figures(client, world):
    world.adapt_outcome = "rejected"
    _, token = org_admin(world)
    started = (await client.post("/api/v1/adaptations", headers=auth(token))).json()
    done = (await run_to_end(client, token, started["id"]))[-1]
    assert done["status"] == "rejected" and len(done["gate_reasons"]) == 2
    assert done["holdout_accuracy_after"] == done["holdout_accuracy_before"] == 0.55
    assert (await client.get("/api/v1/organization/model", headers=auth(token))).json()["adapted"] is False


async def test_failed_carries_the_error(client, world):
    world.adapt_outcome = "failed"
    _, token = org_admin(world)
    started = (await client.post("/api/v1/adaptations", json={"model_name": "hemovision"}, headers=auth(token))).json()
    done = (await run_to_end(client, token, started["id"]))[-1]
    assert done["status"] == "failed" and done["error"] and done["holdout_accuracy_after"] is None


async def test_cancel_while_running_then_409_once_finished(client, world):
    _, token = org_admin(world)
    started = (await client.post("/api/v1/adaptations", headers=auth(token))).json()
    r = await client.post(f"/api/v1/adaptations/{started['id']}/cancel", headers=auth(token))
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished"]
    r = await client.post(f"/api/v1/adaptations/{started['id']}/cancel", headers=auth(token))
    assert r.status_code == 409 and r.json()["error"]["message"] == "the adaptation has already finished"


async def test_too_few_reviewed_cells_is_409_with_the_count(client, world):
    _, token = org_admin(world, reviewed=7)
    r = await client.post("/api/v1/adaptations", json={}, headers=auth(token))
    assert r.status_code == 409
    assert _without_trace_id(r.json()["error"]) == {"code": "failed_precondition",
                                 "message": "your organization has 7 reviewed cells; adapting needs at least 20"}


async def test_a_second_run_while_one_is_open_is_409(client, world):
    _, token = org_admin(world)
    assert (await client.post("/api/v1/adaptations", headers=auth(token))).status_code == 202
    r = await client.post("/api/v1/adaptations", headers=auth(token))
    assert r.status_code == 409 and "already running" in r.json()["error"]["message"]


async def test_another_organizations_adaptation_is_404(client, world):
    _, token = org_admin(world)
    started = (await client.post("/api/v1/adaptations", headers=auth(token))).json()
    _, other = org_admin(world)
    for method, path in [("GET", f"/api/v1/adaptations/{started['id']}"),
                         ("POST", f"/api/v1/adaptations/{started['id']}/cancel")]:
        r = await client.request(method, path, headers=auth(other))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path, r.text)
    assert (await client.get("/api/v1/adaptations", headers=auth(other))).json() == {"items": []}
    r = await client.get("/api/v1/adaptations/does-not-exist", headers=auth(token))
    assert r.status_code == 404


@pytest.mark.parametrize("method,path", [("POST", "/api/v1/adaptations"),
                                         ("POST", "/api/v1/adaptations/some-id/cancel"),
                                         ("POST", "/api/v1/organization/model/rollback")])
async def test_lab_users_may_not_start_cancel_or_roll_back(client, world, method, path):
    u, token = world.user("lab_user")
    world.add_reviewed(u.organization_id, 30)
    r = await client.request(method, path, headers=auth(token))
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", r.text
    assert not world.adaptations


async def test_lab_users_see_their_serving_version_and_progress(client, world):
    org, admin = org_admin(world)
    started = (await client.post("/api/v1/adaptations", headers=auth(admin))).json()
    lab, token = world.user("lab_user", org=org)
    assert (await client.get(f"/api/v1/adaptations/{started['id']}", headers=auth(token))).status_code == 200
    assert (await client.get("/api/v1/organization/model", headers=auth(token))).json()["organization_id"] == org


async def test_a_stale_adapted_version_says_so(client, world):
    org, token = org_admin(world)
    started = (await client.post("/api/v1/adaptations", headers=auth(token))).json()
    await run_to_end(client, token, started["id"])
    world.stale_orgs.add(org)
    served = (await client.get("/api/v1/organization/model", headers=auth(token))).json()
    assert served["adapted"] and served["stale"]


async def test_permission_denied_from_the_service_is_403(client, world, monkeypatch):
    """A refusal by the service itself (here: a service stricter than the gateway's early role
    check; both normally take hemovision_contracts.ADAPTATION_ROLES) is a 403 with its message, not a 500."""
    import adaptation_fakes

    monkeypatch.setattr(adaptation_fakes, "ADAPT_ROLES", ("platform_admin",))
    _, token = org_admin(world)
    r = await client.post("/api/v1/adaptations", headers=auth(token))
    assert r.status_code == 403 and _without_trace_id(r.json()["error"]) == {
        "code": "permission_denied", "message": "adaptation needs org_admin, ml_engineer or platform_admin"}


async def test_openapi_has_typed_adaptation_models(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ["/api/v1/adaptations", "/api/v1/adaptations/{adaptation_id}",
                 "/api/v1/adaptations/{adaptation_id}/cancel", "/api/v1/organization/model",
                 "/api/v1/organization/model/rollback"]:
        assert path in paths, path
    start = paths["/api/v1/adaptations"]["post"]["responses"]
    assert start["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/Adaptation")
    assert "409" in start and "403" in start
    status = spec["components"]["schemas"]["Adaptation"]["properties"]["status"]
    assert set(status["enum"]) == STATUSES
    assert "OrganizationModel" in spec["components"]["schemas"]


def _without_trace_id(error: dict) -> dict:
    """The error body less its trace_id (present whenever tracing is configured in this process)."""
    return {k: v for k, v in error.items() if k != "trace_id"}

