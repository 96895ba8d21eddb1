"""The bench's "inputs" leg: every hostile file of hemovision_testkit.hostile sent through REST to
the running stack (docs/reliability.md "Hostile input"). The same corpus and the same rules as
tests/e2e/test_hostile_inputs.py, counted instead of asserted: a rejected file is its documented
4xx with an error code and a message, within seconds; a real image carrying a trick is classified
(201); a hostile archive is refused or fails item by item; nothing of a rejected input is stored
(no prediction, no batch, no file under the blob store or the upload folder)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from hemovision_testkit.hostile import image_corpus, zip_corpus, zip_of_images

STATE_DIRS = ("blobs", "uploads")
SLOW_S = 30.0


def _files(var_dir: Path) -> set[str]:
    out: set[str] = set()
    for sub in STATE_DIRS:
        root = var_dir / sub
        if root.exists():
            out |= {str(p.relative_to(var_dir)) for p in root.rglob("*") if p.is_file()}
    return out


def _ids(http: httpx.Client, path: str) -> set[str]:
    ids: set[str] = set()
    cursor = ""
    while True:
        page = http.get(path, params={"limit": 200, "cursor": cursor})
        page.raise_for_status()
        body = page.json()
        ids |= {x["id"] for x in body["items"]}
        cursor = body.get("next_cursor") or ""
        if not cursor:
            return ids


def _error(reply: httpx.Response) -> dict:
    """The answer's `error` object, or {} when the answer is not our JSON (a proxy's HTML page)."""
    if not reply.headers.get("content-type", "").startswith("application/json"):
        return {}
    body = reply.json()
    return body.get("error", {}) if isinstance(body, dict) else {}


def _wait_done(http: httpx.Client, batch_id: str, timeout_s: float = 600) -> dict:
    end = time.monotonic() + timeout_s
    while True:
        body = http.get(f"/api/v1/batches/{batch_id}").raise_for_status().json()
        if body["status"] in ("completed", "failed") or time.monotonic() > end:
            return body
        time.sleep(0.5)


def run_inputs(gateway_url: str, var_dir: Path) -> dict:
    """Send the corpus as one fresh organization; count what was answered as documented."""
    tried = documented = server_errors = 0
    slowest = 0.0
    wrong: list[str] = []
    with httpx.Client(base_url=gateway_url, timeout=60) as anon:
        email = f"hostile-{uuid.uuid4().hex[:8]}@example.org"
        anon.post("/api/v1/auth/register", json={"email": email, "password": "reliability pw 123",
                                                  "organization": f"Hostile {uuid.uuid4().hex[:6]}"}).raise_for_status()
        token = anon.post("/api/v1/auth/login", json={"email": email, "password": "reliability pw 123"}
                          ).raise_for_status().json()["access_token"]
    with httpx.Client(base_url=gateway_url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        def send(path: str, files: dict) -> httpx.Response:
            nonlocal tried, server_errors, slowest
            t = time.monotonic()
            reply = http.post(path, files=files)
            slowest = max(slowest, time.monotonic() - t)
            tried += 1
            server_errors += reply.status_code >= 500
            return reply

        images = image_corpus()
        rejected = [c for c in images if c.expect == "rejected"]
        predictions, batches, files = _ids(http, "/api/v1/predictions"), _ids(http, "/api/v1/batches"), _files(var_dir)
        for case in rejected:
            reply = send("/api/v1/predictions", {"file": (case.filename, case.data, case.content_type)})
            error = _error(reply)
            if reply.status_code in case.statuses and error.get("code") in case.codes and error.get("message"):
                documented += 1
            else:
                wrong.append(f"{case.name}: {reply.status_code} {reply.text[:120]}")
        accepted = [c for c in images if c.expect == "accepted"]
        created: set[str] = set()
        for case in accepted:
            reply = send("/api/v1/predictions", {"file": (case.filename, case.data, case.content_type)})
            if reply.status_code == 201:
                documented += 1
                created.add(reply.json()["id"])
            else:
                wrong.append(f"{case.name}: {reply.status_code} {reply.text[:120]}")
        archives = zip_corpus()
        for case in archives:
            before = _ids(http, "/api/v1/batches")
            reply = send("/api/v1/batches", {"files": (f"{case.name}.zip", case.data, "application/zip")})
            if case.level == "archive":
                error = _error(reply)
                ok = (reply.status_code in case.statuses and error.get("code") in case.codes
                      and _ids(http, "/api/v1/batches") == before)
            elif reply.status_code == 202:
                batch = _wait_done(http, reply.json()["id"])
                ok = (batch["status"] in ("completed", "failed") and bool(batch["items"])
                      and all(i["status"] == "failed" and any(w in (i["error"] or "") for w in case.reason_words)
                              for i in batch["items"]))
            else:
                ok = False
            documented += ok
            if not ok:
                wrong.append(f"{case.name}: {reply.status_code} {reply.text[:120]}")
        # every rejected single file again, packed in one ZIP: each item fails in the batch worker
        reply = send("/api/v1/batches", {"files": ("hostile.zip", zip_of_images(rejected), "application/zip")})
        items_failed = 0
        if reply.status_code == 202:
            batch = _wait_done(http, reply.json()["id"])
            if batch["status"] in ("completed", "failed"):
                items_failed = sum(i["status"] == "failed" and bool(i["error"]) for i in batch["items"])
        documented += items_failed == len(rejected)
        stored_predictions = len(_ids(http, "/api/v1/predictions") - predictions - created)
        new_files = _files(var_dir) - files
        # the accepted images' own blobs (image + heatmap) are the only new files allowed
        stray_files = [f for f in new_files if not any(pid in f for pid in created)]
        new_batches = len(_ids(http, "/api/v1/batches") - batches)
    return {
        "images_rejected": len(rejected), "images_accepted": len(accepted), "archives": len(archives),
        "zip_of_rejected_items": len(rejected), "items_failed": items_failed,
        "cases": len(rejected) + len(accepted) + len(archives) + 1, "requests": tried,
        "answered_as_documented": documented, "server_errors": server_errors,
        "slowest_s": round(slowest, 2), "slow_limit_s": SLOW_S,
        "stored_predictions_of_rejected": stored_predictions, "stray_files": len(stray_files),
        "batches_created": new_batches, "wrong": wrong[:10],
    }
