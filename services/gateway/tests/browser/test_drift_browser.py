"""The dashboard's drift panel in a real browser: plain words for a drifting lab (what differs, what
to do, "Adapt to our lab"), the details table and charts, server strings escaped, "not enough cells"
for a small lab; on a running system (HV_E2E_BASE_URL) a fresh organization has too few cells."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import expect

from hemovision.history.v1 import history_pb2

from test_browser import TIMEOUT, shot, sign_in


def _user(target) -> tuple[str, str, str | None]:
    email, password = f"drift-{uuid.uuid4().hex[:8]}@lab.example", "drift-password-1234"
    if target.fake:
        user, _ = target.world.user("lab_user", email=email)
        target.world.passwords[email] = password
        return email, password, user.organization_id
    with httpx.Client(base_url=target.base_url, timeout=30) as c:
        r = c.post("/api/v1/auth/register", json={"email": email, "password": password,
                                                   "organization": f"E2E Drift {uuid.uuid4().hex[:6]}"})
        assert r.status_code == 201, r.text
    return email, password, None


def _report(org: str, status: str, cells: int, model_name: str = "hemovision") -> history_pb2.DriftReport:
    scored = status in ("ok", "watch", "drifting")
    comps = [history_pb2.DriftComponent(component="ood_score", score=0.55 if scored else 0, status=status),
             history_pb2.DriftComponent(component="confidence", score=0.04 if scored else 0, status="ok" if scored else status),
             history_pb2.DriftComponent(component="class_mix", score=0.02 if scored else 0, status="ok" if scored else status)]
    hists = [history_pb2.DriftHistogram(component="ood_score", bins=["[-inf, -17)", "[-17, inf)"], live=[0.1, 0.9],
                                        reference=[0.5, 0.5])] if scored else []
    return history_pb2.DriftReport(
        items=[history_pb2.OrganizationDrift(organization_id=org, model_name=model_name, model_version=1, cells=cells,
                                             score=0.55 if scored else 0, status=status, components=comps,
                                             histograms=hists, review_rate=0.3)],
        window_days=7, max_cells=5000, min_cells=200, watch_threshold=0.1, drifting_threshold=0.25)


def test_drift_panel_in_plain_words(page, target, artifacts):
    email, password, org = _user(target)
    if target.fake:
        target.world.drift[org] = _report(org, "drifting", 420, model_name="<b>hemovision</b>")
    sign_in(page, target.base_url, email, password)
    page.goto(f"{target.base_url}/#/dashboard")
    panel = page.locator("#drift")
    expect(panel.get_by_role("heading", name="Do your cells still look like the training cells?")).to_be_visible(
        timeout=TIMEOUT)
    if not target.fake:
        expect(page.locator("#drift-words")).to_contain_text("No cells classified", timeout=TIMEOUT)
        assert not page.errors, page.errors
        return
    words = page.locator("#drift-words")
    expect(words).to_contain_text("Your cells have drifted from what the model was trained on", timeout=TIMEOUT)
    expect(panel).to_contain_text("colour or stain")
    expect(panel).to_contain_text("Adapt to our lab")
    expect(panel).to_contain_text("Based on 420 cells from the last 7 days")
    expect(panel).to_contain_text("<b>hemovision</b> v1")  # escaped, shown as text
    panel.locator("summary", has_text="Details").click()
    expect(panel.locator("#drift-details table")).to_contain_text("0.55")
    expect(panel.locator("#drift-details svg")).to_have_count(1)
    shot(page, artifacts, "30-drift-drifting")

    target.world.drift[org] = _report(org, "too_few_cells", 37)
    page.reload()
    expect(page.locator("#drift-words")).to_contain_text("needs at least 200 cells", timeout=TIMEOUT)
    expect(page.locator("#drift-words")).to_contain_text("you have 37")
    target.world.drift[org] = _report(org, "ok", 900)
    page.reload()
    expect(page.locator("#drift-words")).to_contain_text("Your recent cells look like what the model was trained on",
                                                         timeout=TIMEOUT)
    assert not page.errors, page.errors
