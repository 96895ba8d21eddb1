"""Batches: uploads, ZIP safety, idempotency per item, progress events, the report."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

from gateway_fakes import auth, jpeg_bytes, png_bytes

from hemovision_gateway.batches import storage as batch_storage
from hemovision_gateway.batches.processing import ItemTask, OnBehalfOfTokens, process_item
from hemovision_gateway.settings import Settings


def make_zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


async def wait_done(client, token, batch_id, timeout=10.0):
    for _ in range(int(timeout / 0.1)):
        b = (await client.get(f"/api/v1/batches/{batch_id}", headers=auth(token))).json()
        if b["status"] == "completed":
            return b
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch not done: {b}")


async def test_batch_of_files(client, world, settings):
    _, token = world.user("lab_user")
    files = [("files", (f"c{i}.png", png_bytes(color=(i, 2, 3)), "image/png")) for i in range(3)]
    files.append(("files", ("notes.txt", b"not an image", "text/plain")))
    r = await client.post("/api/v1/batches", headers=auth(token), files=files, data={"sample_id": "S-7"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["total"] == 4 and body["failed"] == 1
    b = await wait_done(client, token, body["id"])
    assert b["succeeded"] == 3 and b["failed"] == 1
    assert b["label_counts"]["neutrophil"] == 3 and b["differential_percent"]["neutrophil"] == 100.0
    failed = [i for i in b["items"] if i["status"] == "failed"]
    assert failed[0]["filename"] == "notes.txt" and "not a recognised image" in failed[0]["error"]
    assert all(p.batch_id == body["id"] for p in world.predictions.values())
    assert "obo" in world.calls  # items ran with an on-behalf-of token
    assert not any(Path(settings.upload_dir).rglob("*.bin"))  # stored uploads removed once recorded
    events = await client.get(f"/api/v1/batches/{body['id']}/events", headers=auth(token))
    assert "event: done" in events.text
    pdf = await client.get(f"/api/v1/batches/{body['id']}/report.pdf", headers=auth(token))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    listed = (await client.get("/api/v1/batches", headers=auth(token))).json()["items"]
    assert [x["id"] for x in listed] == [body["id"]]


async def test_zip_safety(client, world, settings):
    _, token = world.user("lab_user")
    inner = make_zip({"x.png": png_bytes()})
    bomb = b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024)  # compresses > 100:1
    archive = make_zip({
        "good/a.png": png_bytes(),
        "good/b.jpg": jpeg_bytes(),
        "../evil.png": png_bytes(),
        "/abs.png": png_bytes(),
        "nested.zip": inner,
        "readme.txt": b"hello",
        "bomb.png": bomb,
        "__MACOSX/._a.png": b"junk",
    })
    r = await client.post("/api/v1/batches", headers=auth(token), files={"files": ("cells.zip", archive, "application/zip")})
    assert r.status_code == 202, r.text
    b = await wait_done(client, token, r.json()["id"])
    by_name = {i["filename"]: i for i in b["items"]}
    assert b["total"] == 7 and b["succeeded"] == 2
    assert by_name["good/a.png"]["status"] == "succeeded"
    assert "path traversal" in by_name["../evil.png"]["error"]
    assert "absolute" in by_name["/abs.png"]["error"]
    assert "nested" in by_name["nested.zip"]["error"]
    assert "not a recognised image" in by_name["readme.txt"]["error"]
    assert "zip bomb" in by_name["bomb.png"]["error"]
    root = Path(settings.upload_dir).resolve()
    assert not list(root.rglob(".staging-*"))  # the staging directory became the batch directory
    assert not (root.parent / "evil.png").exists() and not (root / "evil.png").exists()
    assert not list(root.parent.rglob("evil.png")) and not list(root.parent.rglob("abs.png"))


def test_zip_archive_level_caps(tmp_path):
    s = Settings(zip_max_entries=3, upload_dir=str(tmp_path))
    many = make_zip({f"{i}.png": png_bytes() for i in range(5)})
    try:
        batch_storage.build_items([("m.zip", io.BytesIO(many))], s, tmp_path / "st")
        raise AssertionError("expected a 413")
    except batch_storage.ApiError as err:
        assert err.status == 413 and err.code == "too_many_entries"
    s2 = Settings(zip_max_total_uncompressed=1000, upload_dir=str(tmp_path))
    try:
        batch_storage.build_items([("b.zip", io.BytesIO(make_zip({"a.png": b"\x89PNG\r\n\x1a\n" + bytes(2000)}, zipfile.ZIP_STORED)))], s2, tmp_path / "st")
        raise AssertionError("expected a 413")
    except batch_storage.ApiError as err:
        assert err.status == 413 and err.code == "archive_too_large"
    try:
        batch_storage.build_items([("x.zip", io.BytesIO(b"PK\x03\x04garbage"))], s, tmp_path / "st")
        raise AssertionError("expected a 422")
    except batch_storage.ApiError as err:
        assert err.status == 422


async def test_empty_batch_and_bad_zip(client, world, settings):
    _, token = world.user("lab_user")
    r = await client.post("/api/v1/batches", headers=auth(token), data={"note": "x"})
    assert r.status_code == 422
    r = await client.post("/api/v1/batches", headers=auth(token), files={"files": ("x.zip", b"PK\x03\x04broken", "application/zip")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_archive"
    half_good = make_zip({f"{i}.png": png_bytes() for i in range(3)})
    settings_small = settings.model_copy(update={"max_batch_items": 2})
    client._transport.app.state.ctx.settings = settings_small
    r = await client.post("/api/v1/batches", headers=auth(token), files={"files": ("h.zip", half_good, "application/zip")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_items"
    assert not world.batches
    assert not [p for p in Path(settings.upload_dir).rglob("*") if p.is_file()]  # nothing stored


async def test_batch_idempotency_key(client, world):
    _, token = world.user("lab_user")
    h = {**auth(token), "Idempotency-Key": "batch-1"}
    files = {"files": ("a.png", png_bytes(), "image/png")}
    first = await client.post("/api/v1/batches", headers=h, files=files)
    second = await client.post("/api/v1/batches", headers=h, files=files)
    assert first.json() == second.json() and len(world.batches) == 1
    await wait_done(client, token, first.json()["id"])


async def test_redelivered_item_is_recorded_once(client, world, settings, app):
    """Running the same item twice (a redelivery after a crash before the ack) records one
    prediction and one item, thanks to the batch:<id>:<index> keys."""
    u, token = world.user("lab_user")
    r = await client.post("/api/v1/batches", headers=auth(token), files={"files": ("a.png", png_bytes(), "image/png")})
    bid = r.json()["id"]
    await wait_done(client, token, bid)
    # Simulate the crash window: the file is still there (recorded but not yet removed).
    directory = batch_storage.batch_dir(settings, u.organization_id, bid)
    directory.mkdir(parents=True, exist_ok=True)
    path = batch_storage.item_path(directory, 0)
    path.write_bytes(png_bytes())
    ctx = app.state.ctx
    task = ItemTask(batch_id=bid, index=0, organization_id=u.organization_id, user_id=u.id, filename="a.png",
                    path=str(path))
    outcome = await process_item(ctx.clients, settings, OnBehalfOfTokens(), ctx.redis, task)
    assert outcome == "succeeded"
    assert len([p for p in world.predictions.values() if p.batch_id == bid]) == 1
    assert len([k for k in world.items if k[0] == bid]) == 1
    # And once the file is gone the redelivery is a no-op.
    assert await process_item(ctx.clients, settings, OnBehalfOfTokens(), ctx.redis, task) == "already_done"
