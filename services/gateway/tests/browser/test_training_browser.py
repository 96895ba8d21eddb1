"""The admin page's training form in a real browser (fake system): an ml_engineer starts a job with the
form (what it sends is what was typed; a job needs its data set folder), the page follows the job
live through every epoch to "succeeded" (status line, progress bar and the jobs table), and the
table shows the finished job.

On the real system the form is tested by tests/e2e/test_browser_ui_on_system.py (live epochs from
the real worker, cancel from the table, a small job to the end); this one runs where the suite runs
on fake peers only, since a job it finished there would register a platform version mid-run."""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import expect

from hemovision_testkit.browser import JOB_LINES, RECORD_JOB_LINES
from test_browser import TIMEOUT, shot, sign_in



def test_training_form_runs_a_job_live_to_the_end(page, target, artifacts):
    if not target.fake:
        pytest.skip("runs a job to the end on the fake training service (the real system: tests/e2e)")
    world = target.world
    email, password = f"ml-{uuid.uuid4().hex[:8]}@lab.example", "ml-engineer-password-1234"
    world.user("ml_engineer", email=email)
    world.passwords[email] = password
    sign_in(page, target.base_url, email, password)
    page.goto(f"{target.base_url}/#/admin")
    expect(page.get_by_role("heading", name="Training jobs")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#jobs tr")).to_have_count(1, timeout=TIMEOUT)
    page.evaluate(RECORD_JOB_LINES)
    posts: list[dict] = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/api/v1/training-jobs")
            and posts.append(json.loads(r.post_data or "{}")))

    # no data set folder: the form is not sent (the service would refuse it: "data_dir is required")
    folder = page.get_by_label("Data set folder")
    page.get_by_label("Epochs").fill("3")
    page.get_by_role("button", name="Start training").click()
    assert folder.evaluate("e => !e.validity.valid && e.validity.valueMissing")
    page.wait_for_timeout(300)
    assert posts == []

    folder.fill("  /data/pbc_128 ")
    page.get_by_label("Images per class (0 = all)").fill("4")
    page.get_by_label("Activate automatically if it passes the quality gate").check()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/training-jobs") and r.request.method == "POST") as sent:
        page.get_by_role("button", name="Start training").click()
    assert sent.value.status == 201, sent.value.text()
    assert posts == [{"data_dir": "/data/pbc_128", "epochs": 3, "limit_per_class": 4, "auto_activate": True}]
    jid = sent.value.json()["id"]
    job = world.training.jobs[jid]
    assert (job.config.data_dir, job.config.epochs, job.config.limit_per_class, job.config.auto_activate) == (
        "/data/pbc_128", 3, 4, True)
    expect(page.locator("#toast")).to_contain_text("Training job started")
    expect(page.get_by_text(f"Job {jid[:8]}")).to_be_visible()

    expect(page.locator("#js")).to_have_text("succeeded: epoch 3 of 3", timeout=TIMEOUT)
    assert page.locator("#jp").evaluate("e => e.value") == 1
    lines = page.evaluate(JOB_LINES)
    steps = [line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1]]
    assert steps == ["queued: epoch 0 of 3", "running: epoch 1 of 3", "running: epoch 2 of 3",
                     "running: epoch 3 of 3", "succeeded: epoch 3 of 3"], lines
    row = page.locator(f"#jobs tr[data-id='{jid}']")
    expect(row.locator("td").nth(1)).to_have_text("succeeded", timeout=TIMEOUT)
    expect(row.locator("td").nth(2)).to_have_text("3/3")
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    shot(page, artifacts, "40-training-succeeded")
    assert not page.errors, page.errors
