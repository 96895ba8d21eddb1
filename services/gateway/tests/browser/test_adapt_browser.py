"""The "Adapt to our lab" panel in a real browser: it shows the serving version, Start posts,
progress is followed live, the before/after figures and the gate's reasons show (escaped),
cancel and rollback work, and a stale adapted version offers re-adapting.

On the fake system the whole panel is driven; against a running system (HV_E2E_BASE_URL) a
fresh organization has no reviewed cells, so Start must show the service's refusal."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import expect

from hemovision.training.v1 import training_pb2

from test_browser import TIMEOUT, shot, sign_in


def _org_admin(target) -> tuple[str, str, str | None]:
    email, password = f"adapt-{uuid.uuid4().hex[:8]}@lab.example", "adapt-password-1234"
    if target.fake:
        user, _ = target.world.user("org_admin", email=email)
        target.world.passwords[email] = password
        return email, password, user.organization_id
    with httpx.Client(base_url=target.base_url, timeout=30) as c:
        r = c.post("/api/v1/auth/register", json={"email": email, "password": password,
                                                   "organization": f"E2E Adapt {uuid.uuid4().hex[:6]}"})
        assert r.status_code == 201, r.text
    return email, password, None


def test_adapt_to_our_lab_panel(page, target, artifacts):
    email, password, org = _org_admin(target)
    sign_in(page, target.base_url, email, password)
    page.goto(f"{target.base_url}/#/admin")
    panel = page.locator("#adapt")
    expect(panel.get_by_role("heading", name="Adapt to our lab")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#adapt-version")).to_contain_text(re.compile(r"v\d+"), timeout=TIMEOUT)
    expect(page.get_by_role("button", name="Roll back to the previous version")).to_be_hidden()

    if not target.fake:
        page.get_by_role("button", name="Start adaptation").click()
        expect(panel.get_by_role("alert")).to_contain_text("reviewed cells", timeout=TIMEOUT)
        shot(page, artifacts, "22-adapt-refused")
        assert not page.errors, page.errors
        return

    world = target.world
    expect(panel).to_contain_text("platform model")
    # too few reviewed cells: the service's message, and nothing was started
    page.get_by_role("button", name="Start adaptation").click()
    expect(panel.get_by_role("alert")).to_contain_text("has 0 reviewed cells; adapting needs at least 20")
    world.add_reviewed(org, 24)

    # start -> live progress -> succeeded with the figures; the organization is now on its version
    page.get_by_role("button", name="Start adaptation").click()
    expect(page.locator("#adapt-progress")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_role("button", name="Start adaptation")).to_be_disabled()
    expect(page.locator("#adapt-phase")).to_contain_text(re.compile(r"epoch \d of 3"), timeout=TIMEOUT)
    shot(page, artifacts, "22-adapt-running")
    expect(page.locator("#adapt-status")).to_have_text("succeeded", timeout=TIMEOUT)
    mine = [a for a in world.adaptations.values() if a.organization_id == org]
    assert len(mine) == 1 and mine[0].cells == 24
    figures = page.locator("#adapt-figures")
    expect(figures).to_contain_text("55.0 %")
    expect(figures).to_contain_text("85.0 %")
    expect(figures).to_contain_text("+30.0 points")
    expect(figures).to_contain_text("98.8 %")
    expect(page.locator("#adapt-version")).to_contain_text(f"v{mine[0].model_version}", timeout=TIMEOUT)
    expect(panel).to_contain_text("adapted to your lab")
    expect(page.get_by_role("button", name="Start adaptation")).to_be_enabled()
    shot(page, artifacts, "23-adapt-succeeded")

    # the platform moved on: the adapted version is stale, still served, re-adapting offered
    world.stale_orgs.add(org)
    page.reload()
    expect(panel.locator(".badge.review")).to_have_text("stale", timeout=TIMEOUT)
    expect(panel).to_contain_text("re-adapt")

    # a refused version: the gate's reasons, escaped
    world.adapt_outcome = "rejected"
    page.get_by_role("button", name="Start adaptation").click()
    expect(page.locator("#adapt-status")).to_have_text("rejected", timeout=TIMEOUT)
    expect(page.locator("#adapt-reasons li")).to_have_count(2)
    expect(page.locator("#adapt-reasons")).to_contain_text("PBC val accuracy falls 2.6 points")
    shot(page, artifacts, "24-adapt-rejected")
    rejected = next(a for a in world.adaptations.values() if a.status == training_pb2.ADAPTATION_STATUS_REJECTED
                    and a.organization_id == org)
    rejected.gate_reasons.append('<img src=x id="injected">')
    page.locator(f'#adapt-list tr[data-id="{rejected.id}"] button').click()
    expect(page.locator("#adapt-reasons li")).to_have_count(3, timeout=TIMEOUT)
    expect(page.locator("#adapt-reasons li").last).to_have_text('<img src=x id="injected">')
    expect(page.locator("#injected")).to_have_count(0)

    # cancel while it runs
    page.get_by_role("button", name="Start adaptation").click()
    page.get_by_role("button", name="Cancel adaptation").click()
    expect(page.locator("#adapt-status")).to_have_text("cancelled", timeout=TIMEOUT)

    # roll back to the platform's version (the confirm dialog is accepted by the fixture)
    page.get_by_role("button", name="Roll back to the previous version").click()
    expect(page.locator("#adapt-version")).to_have_text("hemovision v1", timeout=TIMEOUT)
    expect(panel).to_contain_text("platform model")
    expect(page.get_by_role("button", name="Roll back to the previous version")).to_be_hidden()
    shot(page, artifacts, "25-adapt-rolled-back")
    assert not page.errors, page.errors
