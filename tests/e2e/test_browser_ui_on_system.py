"""The browser UI on the real system (the shared `system` stack), for what the browser suite on fake
peers does not check:

- the upload drop zone: files dragged from disk and dropped on it in Chromium (the browser's own
  drag-and-drop, Input.dispatchDragEvent: trusted dragenter/dragover/drop at the zone's centre, the
  files read from disk; the file input is never touched) -> classified, and what the batch page and
  the result page show is what the API returns for the same cells;
- the dashboard: every figure it shows (the four numbers, the class mix, the per-day line, the
  per-version table, the reviewer agreement table, the drift panel's words, counts and scores)
  equals GET /api/v1/stats and GET /api/v1/drift for the same session, and the API's totals are
  the cells this lab uploaded; a screenshot of it is kept (docs/img/dashboard.png is one);
- the admin page's training form: a platform admin starts a job, the page follows it live (the
  status line, progress bar and jobs table step through the epochs, as GET
  /api/v1/training-jobs/{id} says), and cancels it from the jobs table; and a small job (3 epochs,
  4 cells per class, ~30 s) followed live to "succeeded", after which the page lists the version it
  registered. That one is marked `shared_stack_last` (conftest runs it after every other test on
  the shared stack, before the one that stops it): the new platform version is the newest non-active one,
  which the activation and rollout tests would otherwise take for theirs.

Screenshots land in test-artifacts/browser-ui-system/; with HV_E2E_DOCS_SCREENSHOTS=1 the dashboard's
two also replace docs/img/dashboard.png and docs/img/dashboard-drift.png (docs/operations.md)."""

from __future__ import annotations

import csv
import io
import os
import random
import re
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from hemovision_testkit.browser import JOB_LINES, RECORD_JOB_LINES

from browser_support import TIMEOUT, sign_in  # its `browser` and `page` fixtures come through conftest

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT.parent / "shared" / "data" / "pbc_128").resolve()
ARTIFACTS = ROOT / "test-artifacts" / "browser-ui-system"
DRIFT_CELLS = 200  # the drift check's minimum (docs/operations.md "Drift"): the panel shows a real status


def pct(x: float) -> str:
    """app.js pct(): 100·x with one decimal and a % sign."""
    return f"{100 * (x or 0):.1f}%"


def nice(s: str) -> str:
    return s.replace("_", " ")


@dataclass
class Lab:
    email: str
    password: str
    uploaded: int = 0  # cells this lab has had classified, by every test of this module


def _test_cells() -> list[tuple[str, Path]]:
    """(label, path) of every cell of the PBC test split."""
    if not (DATA / "splits.csv").exists():
        pytest.fail(f"the PBC data set is required at {DATA}", pytrace=False)
    with (DATA / "splits.csv").open() as fh:
        return [(r["label"], DATA / r["path"]) for r in csv.DictReader(fh) if r["split"] == "test"]


@pytest.fixture(scope="module")
def cells() -> list[tuple[str, Path]]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return _test_cells()


@pytest.fixture(scope="module")
def lab(client) -> Lab:
    """A lab of its own (its org_admin), shared by the drop zone and dashboard tests."""
    email, password = f"ui-{uuid.uuid4().hex[:8]}@lab.example", f"Tz-{uuid.uuid4().hex}"
    reply = client.post("/api/v1/auth/register", json={"email": email, "password": password,
                                                        "organization": f"UI Lab {uuid.uuid4().hex[:6]}"})
    assert reply.status_code == 201, reply.text
    return Lab(email, password)


def bearer(page: Page) -> dict[str, str]:
    """The page's own session: its in-memory access token (app.js `session`)."""
    token = page.evaluate("() => session.access")
    assert token, "the page holds no access token"
    return {"Authorization": f"Bearer {token}"}


def drag_files_onto(page: Page, selector: str, paths: list[Path]) -> None:
    """Drags files from disk onto the element the way a user's drag does in Chromium: the browser's
    own drag-and-drop (DevTools Input.dispatchDragEvent: trusted events, hit-tested at the point,
    the files read from disk by the browser), entering, moving over and dropping at its centre."""
    box = page.locator(selector).bounding_box()
    assert box, f"{selector} is not on screen"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1}  # 1 = copy
    try:
        cdp.send("Input.dispatchDragEvent", {"type": "dragEnter", "x": x, "y": y, "data": data})
        cdp.send("Input.dispatchDragEvent", {"type": "dragOver", "x": x, "y": y, "data": data})
        # while the files are over it, the zone says so (its dragover handler ran)
        assert page.locator(selector).evaluate("e => e.classList.contains('over')"), "no hover state while dragging"
        cdp.send("Input.dispatchDragEvent", {"type": "drop", "x": x, "y": y, "data": data})
    finally:
        cdp.detach()


def test_drop_zone_classifies_dropped_cells(page, system, lab, cells, tmp_path):
    """Cells dragged onto the drop zone: a batch of one cell per class, then a single cell; what the
    pages show is what the API has for them, and the model got them right."""
    base = system.base_url
    sign_in(page, base, lab.email, lab.password)
    first = {}
    for label, path in cells:
        first.setdefault(label, path)
    dropped = []
    for i, (label, path) in enumerate(sorted(first.items())):  # renamed: the file name must not give the class away
        target = tmp_path / f"drop-{i + 1:02d}.png"
        target.write_bytes(path.read_bytes())
        dropped.append((label, target))
    truth = {p.name: label for label, p in dropped}

    page.goto(f"{base}/#/upload")
    expect(page.get_by_role("button", name="Upload and classify")).to_be_disabled()
    drag_files_onto(page, "#drop", [p for _, p in dropped])
    expect(page.locator("#previews figure")).to_have_count(len(dropped))
    assert page.locator("#previews figcaption").all_inner_texts() == [p.name for _, p in dropped]
    expect(page.locator("#previews img")).to_have_count(len(dropped))
    expect(page.locator("#status")).to_have_text(f"{len(dropped)} file(s) selected")
    assert page.locator("#drop").evaluate("e => e.classList.contains('over')") is False
    assert page.locator("#files").evaluate("e => e.files.length") == 0, "the files came through the input, not the drop"
    page.screenshot(path=str(ARTIFACTS / "01-dropped.png"))
    page.get_by_role("button", name="Upload and classify").click()

    expect(page.get_by_role("heading", name=re.compile("^Batch "))).to_be_visible(timeout=TIMEOUT)
    batch_id = page.url.split("#/batch/")[1]
    expect(page.locator("#bstat")).to_contain_text("completed", timeout=180_000)
    expect(page.locator("#items tr")).to_have_count(len(dropped), timeout=TIMEOUT)
    page.wait_for_load_state("networkidle")
    batch = httpx.get(f"{base}/api/v1/batches/{batch_id}", headers=bearer(page), timeout=30).json()
    assert batch["status"] == "completed" and batch["total"] == len(dropped) == batch["succeeded"], batch
    lab.uploaded += batch["succeeded"]
    expect(page.locator("#bstat")).to_have_text(
        f"completed: {batch['done']} of {batch['total']} done ({batch['succeeded']} classified, "
        f"{batch['failed']} failed, {batch['needs_review']} flagged)")
    rows = [[c.strip() for c in row.locator("td").all_inner_texts()] for row in page.locator("#items tr").all()]
    expected = [[str(i["index"] + 1), i["filename"], i["status"], nice(i["prediction"]["label"]),
                 pct(i["prediction"]["confidence"]), "needs review" if i["prediction"]["needs_review"] else ""]
                for i in sorted(batch["items"], key=lambda i: i["index"])]
    assert rows == expected
    assert sorted(i["filename"] for i in batch["items"]) == sorted(truth)
    diff = [[c.strip() for c in row.locator("td").all_inner_texts()] for row in page.locator("#diff tbody tr").all()]
    assert diff == [[nice(c), str(n), f"{batch['differential_percent'].get(c, 0):.1f}%"]
                    for c, n in batch["label_counts"].items()]
    assert sum(batch["label_counts"].values()) == len(dropped)
    right = sum(truth[i["filename"]] == i["prediction"]["label"] for i in batch["items"])
    print(f"dropped batch: {right}/{len(dropped)} classified as their PBC label")
    assert right >= len(dropped) - 1, [(i["filename"], truth[i["filename"]], i["prediction"]["label"])
                                       for i in batch["items"]]
    page.screenshot(path=str(ARTIFACTS / "02-dropped-batch.png"), full_page=True)

    # one cell dropped: a single prediction, its result page
    label, path = next((lb, p) for lb, p in cells[1:] if lb == "neutrophil" and p != first["neutrophil"])
    single = tmp_path / "drop-single.png"
    single.write_bytes(path.read_bytes())
    page.goto(f"{base}/#/upload")
    drag_files_onto(page, "#drop", [single])
    expect(page.locator("#previews figcaption")).to_have_text(["drop-single.png"])
    page.get_by_role("button", name="Upload and classify").click()
    expect(page.get_by_role("heading", name=re.compile("^Result: "))).to_be_visible(timeout=TIMEOUT)
    pid = page.url.split("#/result/")[1]
    p = httpx.get(f"{base}/api/v1/predictions/{pid}", headers=bearer(page), timeout=30).json()
    lab.uploaded += 1
    assert p["label"] == label, p
    expect(page.get_by_role("heading", name=f"Result: {nice(p['label'])}")).to_be_visible()
    expect(page.locator(".kpi")).to_have_text(f"{nice(p['label'])} {pct(p['confidence'])}")
    meters = page.locator(".bars [role=meter]")
    expect(meters).to_have_count(len(p["probabilities"]))
    shown = {m.get_attribute("aria-labelledby").removeprefix("pl-"): m.get_attribute("aria-valuenow")
             for m in meters.all()}
    assert shown == {c: f"{100 * v:.1f}" for c, v in p["probabilities"].items()}
    expect(page.get_by_text(f"Model {p['model']['name']} v{p['model']['version']}")).to_be_visible()
    expect(page.locator("#main .badge").first).to_have_text("needs review" if p["needs_review"] else "no review flag")
    page.screenshot(path=str(ARTIFACTS / "03-dropped-single.png"), full_page=True)
    assert not page.errors, page.errors


def _texts(page: Page, selector: str) -> list[list[str]]:
    return [[c.strip() for c in row.locator("td").all_inner_texts()] for row in page.locator(selector).all()]


def test_dashboard_shows_what_the_api_returns(page, system, client, lab, cells):
    """After >= 200 cells (a batch through the API beside the dropped ones) and some reviews (one
    correcting the model), every figure of the dashboard equals the API's for the same session."""
    base = system.base_url
    sign_in(page, base, lab.email, lab.password)
    headers = bearer(page)

    # the lab's stream: more PBC test cells through a batch (a ZIP), so the drift check has enough
    picked = random.Random(18).sample(cells, DRIFT_CELLS)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i, (label, path) in enumerate(picked):
            zf.writestr(f"cells/{i:03d}.png", path.read_bytes())
    reply = client.post("/api/v1/batches", headers=headers, timeout=120,
                        files={"files": ("cells.zip", archive.getvalue(), "application/zip")})
    assert reply.status_code == 202, reply.text
    batch_id = reply.json()["id"]
    deadline = time.monotonic() + 300
    while (batch := client.get(f"/api/v1/batches/{batch_id}", headers=headers).json())["status"] not in (
            "completed", "failed"):
        assert time.monotonic() < deadline, batch
        time.sleep(1)
    assert batch["succeeded"] == DRIFT_CELLS, batch
    lab.uploaded += DRIFT_CELLS
    truth = {f"cells/{i:03d}.png": label for i, (label, _) in enumerate(picked)}
    items = sorted(batch["items"], key=lambda i: i["index"])
    # reviews: five with the true class (one of them correcting the model if it got one wrong), one wrong on purpose
    wrong = [i for i in items if i["prediction"]["label"] != truth[i["filename"]]][:1]
    right = [i for i in items if i["prediction"]["label"] == truth[i["filename"]]]
    reviews = [(i, truth[i["filename"]]) for i in wrong + right[:5 - len(wrong)]]
    other = right[5]
    reviews.append((other, next(c for c in ("lymphocyte", "monocyte") if c != other["prediction"]["label"])))
    for item, label in reviews:
        r = client.post(f"/api/v1/predictions/{item['prediction']['id']}/review", headers=headers,
                        json={"label": label, "comment": "e2e dashboard"})
        assert r.status_code in (200, 201), r.text

    page.goto(f"{base}/#/dashboard")
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#dash .kpi").first).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#drift-words")).to_be_visible(timeout=TIMEOUT)
    page.wait_for_load_state("networkidle")
    stats = httpx.get(f"{base}/api/v1/stats", headers=headers, timeout=30).json()
    drift = httpx.get(f"{base}/api/v1/drift", headers=headers, timeout=30).json()

    # the API's figures are this lab's cells
    assert stats["total"] == lab.uploaded, (stats["total"], lab.uploaded)
    assert stats["reviewed"] == len(reviews)
    assert sum(stats["label_counts"].values()) == lab.uploaded
    assert sum(d["count"] for d in stats["daily"]) == lab.uploaded
    assert sum(a["reviewed"] for a in stats["agreement"]) == len(reviews)
    assert sum(a["agreed"] for a in stats["agreement"]) == sum(
        label == item["prediction"]["label"] for item, label in reviews)

    # the four numbers
    kpis = dict(zip(page.locator("#dash .grid:first-child h2").all_inner_texts(),
                    page.locator("#dash .grid:first-child .kpi").all_inner_texts()))
    assert kpis == {"Predictions": str(stats["total"]), "Mean confidence": pct(stats["mean_confidence"]),
                    "Flagged for review": pct(stats["review_rate"]), "Reviewed": str(stats["reviewed"])}
    # the class mix: one bar per class, in the API's order, its height the count
    bars = page.locator("#dash svg[aria-label='Predictions per class'] rect")
    assert [t.strip() for t in bars.locator("title").all_text_contents()] == [
        f"{nice(c)}: {n}" for c, n in stats["label_counts"].items()]
    heights = [float(h) for h in bars.evaluate_all("rs => rs.map(r => r.getAttribute('height'))")]
    top = max(1, *stats["label_counts"].values())
    assert heights == pytest.approx([220 * n / top for n in stats["label_counts"].values()])
    # the line per day
    points = page.locator("#dash svg[aria-label='Predictions per day'] circle title").all_text_contents()
    assert points == [f"{d['day']}: {d['count']}" for d in stats["daily"]]
    # per model version and reviewer agreement
    tables = page.locator("#dash .grid").nth(2).locator("tbody")
    assert _texts(page, "#dash .grid:nth-child(3) section:first-child tbody tr") == [
        [f"{m['model']['name']} v{m['model']['version']}", str(m["count"]), pct(m["mean_confidence"])]
        for m in stats["by_model"]]
    assert tables.count() == 2
    assert _texts(page, "#dash .grid:nth-child(3) section:nth-child(2) tbody tr") == [
        [nice(a["label"]), str(a["reviewed"]), str(a["agreed"]), "—" if a["rate"] is None else pct(a["rate"])]
        for a in stats["agreement"]]

    # the drift panel: the lab's version with the most cells, in words, with its details
    assert len(drift["items"]) >= 1
    item = drift["items"][0]
    assert item["cells"] == lab.uploaded and item["status"] in ("ok", "watch", "drifting"), item
    words = {"ok": "no drift", "watch": "watch", "drifting": "drifted"}[item["status"]]
    expect(page.locator("#drift-words .badge")).to_have_text(words)
    basis = " ".join(page.locator("#drift p.muted").first.inner_text().split())
    assert basis == (f"Based on {item['cells']} cells from the last {drift['window_days']} days, classified by "
                     f"{item['model_name']} v{item['model_version']}.")
    page.locator("#drift-details summary").click()
    parts = {"ood_score": "How the images look to the model", "confidence": "How sure the model is",
             "class_mix": "Mix of cell types"}
    status_words = {"ok": "as expected", "watch": "a little different", "drifting": "different"}
    rows = [[c.strip() for c in row.locator("th, td").all_inner_texts()]
            for row in page.locator("#drift-details tbody tr").all()]
    assert rows == [[parts[c["component"]], f"{c['score']:.2f}", status_words[c["status"]]]
                    for c in item["components"]]
    expect(page.locator("#drift-details")).to_contain_text(
        f"Cells flagged for review in this period: {100 * item['review_rate']:.1f} %")
    assert abs(item["review_rate"] - stats["review_rate"]) < 1e-6  # the same cells, the same flag rate
    expect(page.locator("#drift-details figure svg")).to_have_count(len(item["histograms"]))
    live = page.locator("#drift-details figure").first.locator("rect[fill='#1a5fd1'] title").all_text_contents()
    h = item["histograms"][0]
    assert live == [f"{b} your cells: {100 * v:.1f} %" for b, v in zip(h["bins"], h["live"])]

    # the screenshots for docs/operations.md: the drift panel with its details, the dashboard as a lab sees it
    docs = os.environ.get("HV_E2E_DOCS_SCREENSHOTS") == "1"
    for path in [ARTIFACTS / "dashboard-drift.png"] + ([ROOT / "docs" / "img" / "dashboard-drift.png"] if docs else []):
        page.locator("#drift").screenshot(path=str(path))
    page.locator("#drift-details summary").click()
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    for path in [ARTIFACTS / "dashboard.png"] + ([ROOT / "docs" / "img" / "dashboard.png"] if docs else []):
        page.screenshot(path=str(path), full_page=True)
    assert not page.errors, page.errors


STARTED = lambda r: r.url.endswith("/api/v1/training-jobs") and r.request.method == "POST"  # noqa: E731
def _start_training_from_form(page: Page, *, epochs: int) -> dict:
    """Fills the admin page's training form (PBC, 4 images per class), records the status line's
    texts (JOB_LINES) and starts the job; returns the job the API created."""
    page.evaluate(RECORD_JOB_LINES)
    page.get_by_label(re.compile("^Data set folder")).fill(str(DATA))
    page.get_by_label("Epochs").fill(str(epochs))
    page.get_by_label("Images per class (0 = all)").fill("4")
    with page.expect_response(STARTED) as started:
        page.get_by_role("button", name="Start training").click()
    assert started.value.status == 201, started.value.text()
    return started.value.json()


RUNNING = re.compile(r"^running \(epoch (\d+)/(\d+)\): epoch (\d+) of (\d+)$")


@pytest.mark.timeout(600)
def test_admin_starts_watches_and_cancels_a_training_job(page, system, platform_admin):
    base = system.base_url
    email, password = platform_admin()
    sign_in(page, base, email, password)
    headers = bearer(page)
    versions = httpx.get(f"{base}/api/v1/models", headers=headers, timeout=30).json()["items"]
    page.goto(f"{base}/#/admin")
    expect(page.get_by_role("heading", name="Training jobs")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#jobs tr")).not_to_have_count(0, timeout=TIMEOUT)
    job = _start_training_from_form(page, epochs=200)
    jid = job["id"]
    expect(page.locator("#toast")).to_contain_text("Training job started")
    expect(page.get_by_text(f"Job {jid[:8]}")).to_be_visible()
    api_job = httpx.get(f"{base}/api/v1/training-jobs/{jid}", headers=headers, timeout=30).json()
    assert (api_job["config"]["data_dir"], api_job["config"]["epochs"], api_job["config"]["limit_per_class"]) == (
        str(DATA), 200, 4), api_job["config"]

    # live: the status line and the bar step through the epochs as the worker trains
    page.wait_for_function(
        """() => /^running \\(epoch ([2-9]|\\d\\d+)\\//.test(document.getElementById("js").textContent)""",
        timeout=240_000)
    now = page.evaluate(f"""() => ({{line: document.getElementById("js").textContent,
        bar: document.getElementById("jp").value,
        row: Array.from(document.querySelectorAll("#jobs tr[data-id='{jid}'] td"), (td) => td.textContent.trim())}})""")
    api_job = httpx.get(f"{base}/api/v1/training-jobs/{jid}", headers=headers, timeout=30).json()
    m = RUNNING.match(now["line"])
    assert m, now
    shown = int(m.group(3))
    assert m.group(1) == m.group(3) and int(m.group(4)) == api_job["total_epochs"] == 200
    assert api_job["status"] == "running" and shown <= api_job["epoch"] <= shown + 2, (now, api_job)
    assert now["bar"] == pytest.approx(shown / 200)
    # the jobs table follows the same stream
    assert now["row"][:3] == [jid[:8], f"running · epoch {shown}/200", f"{shown}/200"], now
    seen = [int(RUNNING.match(t).group(3)) for t in page.evaluate(JOB_LINES) if RUNNING.match(t)]
    assert len(set(seen)) >= 2 and seen == sorted(seen), seen  # it moved, forwards, while we watched
    page.screenshot(path=str(ARTIFACTS / "04-training-live.png"), full_page=True)

    # cancel from the jobs table
    row = page.locator(f"#jobs tr[data-id='{jid}']")
    row.get_by_role("button", name="Cancel").click()
    expect(page.locator("#js")).to_have_text(re.compile("^cancelled"), timeout=TIMEOUT)
    api_job = httpx.get(f"{base}/api/v1/training-jobs/{jid}", headers=headers, timeout=30).json()
    assert api_job["status"] == "cancelled" and api_job["model_version"] is None, api_job
    phase = f" ({api_job['phase']})" if api_job["phase"] not in ("", "cancelled") else ""  # app.js: not beside an equal status
    error = f" — {api_job['error']}" if api_job["error"] else ""
    expect(page.locator("#js")).to_have_text(f"cancelled{phase}: epoch {api_job['epoch']} of 200{error}")
    phase = f" · {api_job['phase']}" if api_job["phase"] not in ("", "cancelled") else ""
    expect(row.locator("td").nth(1)).to_have_text(f"cancelled{phase}", timeout=TIMEOUT)
    expect(row.locator("td").nth(2)).to_have_text(f"{api_job['epoch']}/200")
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "05-training-cancelled.png"), full_page=True)
    # the worker stops at its next epoch and registers nothing
    time.sleep(5)
    after = httpx.get(f"{base}/api/v1/training-jobs/{jid}", headers=headers, timeout=30).json()
    assert after["status"] == "cancelled" and after["epoch"] <= api_job["epoch"] + 1, after
    assert [v["version"] for v in httpx.get(f"{base}/api/v1/models", headers=headers, timeout=30).json()["items"]] \
        == [v["version"] for v in versions]
    assert not page.errors, page.errors


@pytest.mark.shared_stack_last  # it registers a platform version: no other test on the shared stack may see it
@pytest.mark.timeout(600)
def test_admin_runs_a_training_job_to_the_end(page, system, platform_admin):
    """A small job (3 epochs of 4 cells per class: about 30 s on 2 cores) started from the form is
    followed live to "succeeded"; the page then lists the version it registered, as the API does."""
    base = system.base_url
    email, password = platform_admin()
    sign_in(page, base, email, password)
    headers = bearer(page)
    page.goto(f"{base}/#/admin")
    expect(page.get_by_role("heading", name="Training jobs")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#jobs tr")).not_to_have_count(0, timeout=TIMEOUT)
    expect(page.locator("#models tr")).not_to_have_count(0, timeout=TIMEOUT)
    jid = _start_training_from_form(page, epochs=3)["id"]

    expect(page.locator("#js")).to_have_text(re.compile("^succeeded"), timeout=300_000)
    job = httpx.get(f"{base}/api/v1/training-jobs/{jid}", headers=headers, timeout=30).json()
    assert job["status"] == "succeeded" and job["epoch"] == 3 and job["model_version"], job
    phase = f" ({job['phase']})" if job["phase"] not in ("", "succeeded") else ""
    expect(page.locator("#js")).to_have_text(f"succeeded{phase}: epoch 3 of 3")
    assert page.locator("#jp").evaluate("e => e.value") == 1
    lines = page.evaluate(JOB_LINES)
    seen = [int(RUNNING.match(t).group(3)) for t in lines if RUNNING.match(t)]
    assert len(set(seen)) >= 2 and seen == sorted(seen) and seen[-1] == 3, lines  # live, epoch by epoch

    # the table and the model versions follow: the job's row, the version it registered
    row = page.locator(f"#jobs tr[data-id='{jid}']")
    expect(row.locator("td").nth(1)).to_have_text(f"succeeded · {job['phase']}" if job["phase"] not in ("", "succeeded") else "succeeded",
                                                  timeout=TIMEOUT)
    expect(row.locator("td").nth(2)).to_have_text("3/3")
    shown = dict(pair.rsplit(" ", 1) for pair in row.locator("td").nth(3).inner_text().split(", "))
    assert len(shown) == min(4, len(job["metrics"])), shown  # four of them (a protobuf map: in no fixed order)
    assert shown == {k: f"{job['metrics'][k]:.3f}" for k in shown}, (shown, job["metrics"])
    expect(row.locator("td").nth(4)).to_have_text(f"v{job['model_version']}")
    version = next(v for v in httpx.get(f"{base}/api/v1/models", headers=headers, timeout=30).json()["items"]
                   if v["version"] == job["model_version"] and not v["organization_id"])
    assert version["status"] == "registered", version  # not activated: the form's box was left unticked
    mrow = page.locator("#models tr", has=page.get_by_text(f"{version['name']} v{version['version']}", exact=True))
    expect(mrow).to_have_count(1, timeout=TIMEOUT)
    expect(mrow.locator("td").nth(1)).to_have_text("registered")
    headings = page.locator("#mhead th").all_inner_texts()
    if "accuracy" in headings and "accuracy" in version["metrics"]:
        expect(mrow.locator("td").nth(headings.index("accuracy"))).to_have_text(f"{version['metrics']['accuracy']:.4f}")
    page.screenshot(path=str(ARTIFACTS / "06-training-succeeded.png"), full_page=True)
    assert not page.errors, page.errors
