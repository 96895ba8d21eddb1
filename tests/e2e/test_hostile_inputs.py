"""Hostile uploads through REST on the real system (hemovision_testkit.hostile builds them): every
rejected file is a 4xx with its documented code and a message, within seconds, and stores nothing
(no prediction, no batch, no blob, no upload file); real images carrying a trick are classified;
ZIP slip and ZIP bombs never write outside the batch directory; bad images inside a ZIP fail item
by item in the batch worker and store no prediction."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from hemovision_testkit.hostile import HostileFile, image_corpus, zip_corpus, zip_of_images

IMAGES = image_corpus()
ZIPS = zip_corpus()
SLOW_S = 30.0  # a rejection must come back well inside this (the client's own timeout is 60 s)
STATE_DIRS = ("blobs", "uploads")  # what the system keeps: image/heatmap blobs, batch item files


def _files(var_dir: Path) -> set[str]:
    """Every file the system keeps (blob store, batch uploads), relative to var/."""
    out: set[str] = set()
    for sub in STATE_DIRS:
        root = var_dir / sub
        if root.exists():
            out |= {str(p.relative_to(var_dir)) for p in root.rglob("*") if p.is_file()}
    return out


def _all_predictions(client, headers) -> set[str]:
    ids: set[str] = set()
    cursor = ""
    while True:
        page = client.get("/api/v1/predictions", headers=headers, params={"limit": 200, "cursor": cursor})
        assert page.status_code == 200, page.text
        body = page.json()
        ids |= {p["id"] for p in body["items"]}
        cursor = body["next_cursor"]
        if not cursor:
            return ids


def _all_batches(client, headers) -> set[str]:
    page = client.get("/api/v1/batches", headers=headers, params={"limit": 200})
    assert page.status_code == 200, page.text
    return {b["id"] for b in page.json()["items"]}


@pytest.fixture(scope="module")
def lab(client) -> dict:
    """A fresh organization, so its lists hold only what this module uploads."""
    email, password = f"hostile-{uuid.uuid4().hex[:8]}@example.org", "correct horse battery staple"
    reply = client.post("/api/v1/auth/register",
                        json={"email": email, "password": password, "organization": f"Hostile {uuid.uuid4().hex[:6]}"})
    assert reply.status_code == 201, reply.text
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": password}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _post_image(client, headers, case: HostileFile):
    start = time.monotonic()
    reply = client.post("/api/v1/predictions", headers=headers,
                        files={"file": (case.filename, case.data, case.content_type)})
    elapsed = time.monotonic() - start
    assert elapsed < SLOW_S, f"{case.name}: {elapsed:.1f} s"
    assert reply.status_code < 500, f"{case.name}: {reply.status_code} {reply.text}"
    return reply


def test_rejected_single_uploads_are_clear_4xx_and_store_nothing(client, system, lab):
    rejected = [c for c in IMAGES if c.expect == "rejected"]
    assert len(rejected) >= 30
    predictions, batches, files = _all_predictions(client, lab), _all_batches(client, lab), _files(system.var_dir)
    wrong = []
    for case in rejected:
        reply = _post_image(client, lab, case)
        body = reply.json()
        error = body.get("error", {})
        if reply.status_code not in case.statuses or error.get("code") not in case.codes or not error.get("message"):
            wrong.append(f"{case.name} ({case.why}): {reply.status_code} {body}")
    assert not wrong, "\n".join(wrong)
    assert _all_predictions(client, lab) == predictions
    assert _all_batches(client, lab) == batches
    assert _files(system.var_dir) == files


def test_images_with_tricks_are_classified(client, lab):
    """Real images with a lying name, odd EXIF or an over-long deflate stream: the content rule
    accepts them (201); EXIF rotation 6 turns the 48x32 cell upright."""
    before = _all_predictions(client, lab)
    created = set()
    for case in (c for c in IMAGES if c.expect == "accepted"):
        reply = _post_image(client, lab, case)
        assert reply.status_code == 201, f"{case.name} ({case.why}): {reply.status_code} {reply.text}"
        created.add(reply.json()["id"])
    assert _all_predictions(client, lab) == before | created


def _wait_done(client, headers, batch_id: str, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while True:
        reply = client.get(f"/api/v1/batches/{batch_id}", headers=headers)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        if body["status"] in ("completed", "failed"):
            return body
        assert time.monotonic() < end, f"batch {batch_id} not done after {timeout} s: {body['status']}"
        time.sleep(1)


def _slipped(var_dir: Path) -> list[Path]:
    """Anything named like a ZIP-slip target, wherever it could have landed."""
    found = list(var_dir.rglob("hv-slip*"))
    for root in (Path("/tmp"), var_dir.parent, Path.cwd(), Path.cwd() / "C:" / "Windows"):
        found += [p for p in root.glob("hv-slip*")]
    return found


def test_hostile_archives(client, system, lab):
    predictions, files = _all_predictions(client, lab), _files(system.var_dir)
    wrong = []
    for case in ZIPS:
        batches = _all_batches(client, lab)
        start = time.monotonic()
        reply = client.post("/api/v1/batches", headers=lab, files={"files": (f"{case.name}.zip", case.data,
                                                                             "application/zip")})
        assert time.monotonic() - start < SLOW_S, case.name
        assert reply.status_code < 500, f"{case.name}: {reply.status_code} {reply.text}"
        if case.level == "archive":
            error = reply.json().get("error", {})
            if reply.status_code not in case.statuses or error.get("code") not in case.codes:
                wrong.append(f"{case.name} ({case.why}): {reply.status_code} {reply.text}")
            if _all_batches(client, lab) != batches:
                wrong.append(f"{case.name}: a refused archive created a batch")
            continue
        if reply.status_code != 202:
            wrong.append(f"{case.name} ({case.why}): {reply.status_code} {reply.text}")
            continue
        accepted = reply.json()
        if accepted["failed"] != accepted["total"]:
            wrong.append(f"{case.name}: {accepted['total'] - accepted['failed']} item(s) accepted: {accepted}")
        batch = _wait_done(client, lab, accepted["id"])
        for item in batch["items"]:
            if item["status"] != "failed" or not any(w in (item["error"] or "") for w in case.reason_words):
                wrong.append(f"{case.name}: item {item['filename']!r} {item['status']} {item['error']!r}")
    assert not wrong, "\n".join(wrong)
    assert _all_predictions(client, lab) == predictions
    assert _files(system.var_dir) == files, "an entry was written (or left) in the blob store or the upload folder"
    assert not _slipped(system.var_dir)


def test_bad_images_inside_a_zip_fail_item_by_item(client, system, lab):
    """Each rejected single-file case, packed into one ZIP: the gateway lets through what looks like
    an image by its magic, the pipeline refuses it in the batch worker; every item fails with a
    reason, no prediction and no blob is stored, the batch finishes."""
    rejected = [c for c in IMAGES if c.expect == "rejected"]
    predictions, files = _all_predictions(client, lab), _files(system.var_dir)
    reply = client.post("/api/v1/batches", headers=lab,
                        files={"files": ("hostile.zip", zip_of_images(rejected), "application/zip")})
    assert reply.status_code == 202, reply.text
    assert reply.json()["total"] == len(rejected)
    batch = _wait_done(client, lab, reply.json()["id"], timeout=600)
    assert batch["succeeded"] == 0 and batch["failed"] == len(rejected)
    by_name = {c.name: c for c in rejected}
    wrong = []
    for item in batch["items"]:
        case = by_name[item["filename"].split("-", 1)[1].rsplit(".", 1)[0]]
        if item["status"] != "failed" or not item["error"]:
            wrong.append(f"{case.name}: {item}")
    assert not wrong, "\n".join(wrong)
    assert _all_predictions(client, lab) == predictions
    assert _files(system.var_dir) == files
