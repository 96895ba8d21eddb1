"""Safe rollouts through REST and the CLI (issue 18 item 4), against the fake training service:
start (canary / shadow, bad bodies 422, a second one 409), current with live statistics, promote,
abort, roles, and the `hemovision rollout` commands."""

from __future__ import annotations

import asyncio

from hemovision.training.v1 import training_pb2

from gateway_fakes import auth
from hemovision_gateway.cli import main as cli_main
from test_ui_and_cli import live_gateway  # noqa: F401 - the fixture


async def test_rollout_rest_lifecycle(client, world):
    _, eng = world.user("ml_engineer")
    _, lab = world.user("lab_user")
    r = await client.get("/api/v1/rollouts/current", headers=auth(eng))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    for body in ({"version": 2, "mode": "canary"}, {"version": 2, "mode": "shadow", "canary_percent": 5},
                 {"version": 2, "mode": "canary", "canary_percent": 51}, {"version": 2, "mode": "blue"}):
        assert (await client.post("/api/v1/rollouts", headers=auth(eng), json=body)).status_code == 422, body
    assert (await client.post("/api/v1/rollouts", headers=auth(lab),
                              json={"version": 2, "mode": "shadow"})).status_code == 403
    r = await client.post("/api/v1/rollouts", headers=auth(eng),
                          json={"version": 2, "mode": "canary", "canary_percent": 10, "reason": "try"})
    assert r.status_code == 201, r.text
    started = r.json()
    assert (started["status"], started["mode"], started["canary_percent"], started["candidate_version"],
            started["baseline_version"]) == ("running", "canary", 10, 2, 1)
    again = await client.post("/api/v1/rollouts", headers=auth(eng), json={"version": 2, "mode": "shadow"})
    assert again.status_code == 409
    world.training.rollout_stats.CopyFrom(training_pb2.RolloutStats(
        versions=[training_pb2.RolloutVersionStats(role="baseline", version=1, requests=90, cells=90,
                                                   latency_p50_ms=8.25, latency_p95_ms=14.5),
                  training_pb2.RolloutVersionStats(role="candidate", version=2, requests=10, cells=10,
                                                   latency_p50_ms=9.5, latency_p95_ms=16.0)],
        available=True))
    current = (await client.get("/api/v1/rollouts/current", headers=auth(lab))).json()  # any signed-in user
    assert current["id"] == started["id"] and current["stats"]["agreement_rate"] is None
    base, cand = current["stats"]["versions"]
    assert (base["role"], base["requests"], base["latency_p50_ms"]) == ("baseline", 90, 8.25)
    assert (cand["role"], cand["requests"], cand["latency_p95_ms"]) == ("candidate", 10, 16.0)
    assert (await client.post("/api/v1/rollouts/current/abort", headers=auth(lab))).status_code == 403
    ended = await client.post("/api/v1/rollouts/current/abort", headers=auth(eng), json={"reason": "slow"})
    assert ended.status_code == 200 and ended.json()["status"] == "aborted" and ended.json()["end_reason"] == "slow"
    assert (await client.post("/api/v1/rollouts/current/promote", headers=auth(eng))).status_code == 409
    r = await client.post("/api/v1/rollouts", headers=auth(eng), json={"version": 2, "mode": "shadow"})
    assert r.json()["mode"] == "shadow" and r.json()["canary_percent"] is None
    promoted = await client.post("/api/v1/rollouts/current/promote", headers=auth(eng))
    assert promoted.json()["status"] == "promoted"
    models = (await client.get("/api/v1/models", headers=auth(eng))).json()["items"]
    assert next(m for m in models if m["version"] == 2)["status"] == "active"


async def test_cli_rollout(live_gateway, world, monkeypatch, capsys):  # noqa: F811
    _, token = world.user("ml_engineer")
    monkeypatch.setenv("HV_TOKEN", token)
    url = ["--url", live_gateway]
    assert await asyncio.to_thread(cli_main, [*url, "rollout", "start", "2", "--shadow"]) == 0
    assert "v2 (shadow) beside v1 - running" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, [*url, "rollout", "start", "2", "--canary", "10"]) == 2
    assert "409" in capsys.readouterr().err
    world.training.rollout_stats.CopyFrom(training_pb2.RolloutStats(
        versions=[training_pb2.RolloutVersionStats(role="baseline", version=1, requests=40, cells=40,
                                                   latency_p50_ms=8.0, latency_p95_ms=12.0),
                  training_pb2.RolloutVersionStats(role="candidate", version=2, requests=38, cells=38,
                                                   latency_p50_ms=9.0, latency_p95_ms=13.0)],
        agree_cells=36, compared_cells=38, agreement_rate=36 / 38, shadow_dropped=2, available=True))
    assert await asyncio.to_thread(cli_main, [*url, "rollout", "status"]) == 0
    out = capsys.readouterr().out
    assert "agreement 94.7 % of 38 cells" in out and "candidate  v2" in out and "9.0 ms" in out
    assert await asyncio.to_thread(cli_main, [*url, "rollout", "abort", "--reason", "enough"]) == 0
    assert "aborted" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, [*url, "rollout", "start", "2", "--canary", "10"]) == 0
    assert "(canary 10 %)" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, [*url, "rollout", "promote"]) == 0
    assert "promoted" in capsys.readouterr().out
    _, lab = world.user("lab_user")
    monkeypatch.setenv("HV_TOKEN", lab)
    assert await asyncio.to_thread(cli_main, [*url, "rollout", "abort"]) == 2
    assert "403 permission_denied" in capsys.readouterr().err
