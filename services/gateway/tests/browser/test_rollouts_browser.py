"""The admin page's "Safe rollout" panel in a real browser (fake system): start a canary, see the
live numbers per version (escaped), abort; start a shadow, see the agreement, promote (the model
table follows). No inline script or style: the page's CSP holds (page.errors stays empty)."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from hemovision.training.v1 import training_pb2

from test_browser import TIMEOUT, shot, sign_in


def test_rollout_panel(page, target, artifacts):
    if not target.fake:
        pytest.skip("drives the fake training service's rollout state")  # the real system: tests/e2e
    world = target.world
    email, password = f"rollout-{uuid.uuid4().hex[:8]}@lab.example", "rollout-password-1234"
    world.user("ml_engineer", email=email)
    world.passwords[email] = password
    sign_in(page, target.base_url, email, password)
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{target.base_url}/#/admin")
    panel = page.locator("#rollout")
    expect(panel.get_by_role("heading", name="Safe rollout")).to_be_visible(timeout=TIMEOUT)
    expect(panel).to_contain_text("No rollout yet.", timeout=TIMEOUT)

    page.fill("#rollout-version", "2")
    page.fill("#rollout-pct", "15")
    page.fill("#rollout-reason", '<b id="injected">x</b>')
    page.get_by_role("button", name="Start rollout").click()
    expect(panel).to_contain_text("canary, 15 % of requests", timeout=TIMEOUT)
    expect(panel).to_contain_text('<b id="injected">x</b>')
    expect(page.locator("#injected")).to_have_count(0)
    world.training.rollout_stats.CopyFrom(training_pb2.RolloutStats(
        versions=[training_pb2.RolloutVersionStats(role="baseline", version=1, requests=85, cells=85,
                                                   latency_p50_ms=8.0, latency_p95_ms=12.0),
                  training_pb2.RolloutVersionStats(role="candidate", version=2, requests=15, cells=15,
                                                   latency_p50_ms=9.5, latency_p95_ms=14.0)], available=True))
    expect(page.locator("#rollout-stats")).to_contain_text("9.5 ms", timeout=TIMEOUT)  # polled live
    shot(page, artifacts, "30-rollout-canary")
    page.get_by_role("button", name="Abort").click()
    expect(panel.locator(".badge")).to_have_text("aborted", timeout=TIMEOUT)

    page.select_option("#rollout-mode", "shadow")
    expect(page.locator("#rollout-pct")).to_be_hidden()
    page.fill("#rollout-version", "2")
    world.training.rollout_stats.agree_cells, world.training.rollout_stats.compared_cells = 90, 100
    world.training.rollout_stats.agreement_rate = 0.9
    page.get_by_role("button", name="Start rollout").click()
    expect(page.locator("#rollout-agreement")).to_contain_text("90.0 %", timeout=TIMEOUT)
    shot(page, artifacts, "31-rollout-shadow")
    page.get_by_role("button", name="Promote v2").click()
    expect(panel.locator(".badge")).to_have_text("promoted", timeout=TIMEOUT)
    expect(page.locator("#models tr", has_text="hemovision v2").locator(".badge.ok")).to_have_text(
        "active", timeout=TIMEOUT)
    assert not page.errors, page.errors
