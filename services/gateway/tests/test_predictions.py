"""Single uploads: happy path, bad input (never a 500, nothing stored), Idempotency-Key, history."""

from __future__ import annotations

import io

from PIL import Image

import struct
import zlib

from gateway_fakes import auth, jpeg_bytes, png_bytes

CLASSES = {"basophil", "eosinophil", "erythroblast", "immature_granulocyte", "lymphocyte", "monocyte",
           "neutrophil", "platelet"}


async def upload(client, token, data, name="cell.png", headers=None, **form):
    return await client.post("/api/v1/predictions", headers={**auth(token), **(headers or {})},
                             files={"file": (name, data, "application/octet-stream")}, data=form)


async def test_upload_happy_path(client, world):
    _, token = world.user("lab_user")
    r = await upload(client, token, png_bytes(), sample_id="S-1", slide_id="SL-9", note="n")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["label"] == "neutrophil" and set(body["probabilities"]) == CLASSES
    assert body["model"] == {"name": "hemovision", "version": 1}
    assert {"preprocess", "inference", "history", "total"} <= set(body["timings_ms"])
    assert body["needs_review"] is False and body["review_reasons"] == []
    assert body["confidence_holds"] is True
    assert body["sample_id"] == "S-1" and body["created_at"].endswith("Z")
    assert body["has_heatmap"] and body["has_image"]
    got = await client.get(f"/api/v1/predictions/{body['id']}", headers=auth(token))
    assert got.status_code == 200 and got.json()["id"] == body["id"]
    listed = await client.get("/api/v1/predictions?limit=10", headers=auth(token))
    assert [p["id"] for p in listed.json()["items"]] == [body["id"]]
    heat = await client.get(f"/api/v1/predictions/{body['id']}/heatmap.png", headers=auth(token))
    assert heat.status_code == 200 and heat.content.startswith(b"\x89PNG")
    img = await client.get(f"/api/v1/predictions/{body['id']}/image.png", headers=auth(token))
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    pdf = await client.get(f"/api/v1/predictions/{body['id']}/report.pdf", headers=auth(token))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert b"neutrophil" in pdf.content


async def test_pipeline_review_reasons_reach_the_answer(client, world):
    """What the pixel pipeline saw (no cell in a blank field) flags the cell, and the answer says
    its calibrated confidence does not hold -- also when read back from history."""
    _, token = world.user("lab_user")
    blank = io.BytesIO()
    Image.new("RGB", (64, 64), (240, 228, 205)).save(blank, format="PNG")
    r = await upload(client, token, blank.getvalue())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["needs_review"] is True and "cell_not_found" in body["review_reasons"], body
    assert body["confidence_holds"] is False
    again = (await client.get(f"/api/v1/predictions/{body['id']}", headers=auth(token))).json()
    assert again["review_reasons"] == body["review_reasons"] and again["confidence_holds"] is False


async def test_jpeg_accepted(client, world):
    _, token = world.user("lab_user")
    assert (await upload(client, token, jpeg_bytes(), name="a.jpg")).status_code == 201


def _bomb_png(w=50_000, h=50_000) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


async def _assert_rejected(client, world, token, data, status, code=None, name="x.png"):
    before = world.count_records()
    r = await upload(client, token, data, name=name)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and (code is None or err["code"] == code)
    assert world.count_records() == before


async def test_bad_input(client, world):
    _, token = world.user("lab_user")
    await _assert_rejected(client, world, token, b"hello, this is text", 415, "not_an_image", name="cell.png")
    await _assert_rejected(client, world, token, b"GIF89a" + b"\x00" * 50, 415, "unsupported_type")
    await _assert_rejected(client, world, token, jpeg_bytes()[:60], 422, "truncated", name="cut.jpg")
    await _assert_rejected(client, world, token, b"", 422, "empty")
    await _assert_rejected(client, world, token, _bomb_png(), 413, "too_many_pixels")
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024 + 10)
    await _assert_rejected(client, world, token, big, 413)


async def test_missing_field_and_bad_tokens(client, world):
    u, token = world.user("lab_user")
    r = await client.post("/api/v1/predictions", headers=auth(token), data={"note": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = await client.post("/api/v1/predictions", files={"file": ("a.png", png_bytes())})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    r = await upload(client, "not-a-jwt", png_bytes())
    assert r.status_code == 401
    expired = world.token_for(u, ttl=-120)
    r = await upload(client, expired, png_bytes())
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    r = await client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    assert world.count_records() == 0


async def test_content_length_over_limit_is_413_before_reading(client, world):
    _, token = world.user("lab_user")
    r = await client.post("/api/v1/predictions", headers={**auth(token), "Content-Length": str(50 * 1024 * 1024),
                                                         "Content-Type": "multipart/form-data; boundary=x"},
                          content=b"--x--")
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_streamed_body_over_limit_is_413(client, world):
    _, token = world.user("lab_user")

    async def gen():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(12):
            yield b"\x00" * (1024 * 1024)

    r = await client.post("/api/v1/predictions", headers={**auth(token), "Content-Type": "multipart/form-data; boundary=b"},
                          content=gen())
    assert r.status_code == 413
    assert world.count_records() == 0


async def test_idempotency_key_returns_first_answer(client, world):
    _, token = world.user("lab_user")
    h = {"Idempotency-Key": "upload-123"}
    first = await upload(client, token, png_bytes(), headers=h)
    second = await upload(client, token, png_bytes(color=(1, 2, 3)), headers=h)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert world.count_records() == 1
    bad = await upload(client, token, png_bytes(), headers={"Idempotency-Key": "bad key with spaces"})
    assert bad.status_code == 422


async def test_idempotency_is_scoped_by_organization(client, world):
    _, a = world.user("lab_user")
    _, b = world.user("lab_user")
    ra = await upload(client, a, png_bytes(), headers={"Idempotency-Key": "same"})
    rb = await upload(client, b, png_bytes(), headers={"Idempotency-Key": "same"})
    assert ra.json()["id"] != rb.json()["id"]


async def test_unverified_user_cannot_upload(client, world):
    u, _ = world.user("lab_user")
    token = world.token_for(u, email_verified=False)
    r = await upload(client, token, png_bytes())
    assert r.status_code == 403 and r.json()["error"]["code"] == "email_not_verified"


async def test_review_delete_export_stats(client, world):
    _, token = world.user("lab_user")
    pid = (await upload(client, token, png_bytes(), sample_id="=cmd")).json()["id"]
    q = await client.get("/api/v1/review-queue", headers=auth(token))
    assert [p["id"] for p in q.json()["items"]] == [pid]
    r = await client.post(f"/api/v1/predictions/{pid}/review", headers=auth(token),
                          json={"label": "lymphocyte", "comment": "clearly a lymphocyte"})
    assert r.status_code == 200 and r.json()["review"]["label"] == "lymphocyte"
    assert r.json()["review"]["agrees"] is False and r.json()["label"] == "neutrophil"
    bad = await client.post(f"/api/v1/predictions/{pid}/review", headers=auth(token), json={"label": "dragon"})
    assert bad.status_code == 422
    csv = await client.get("/api/v1/predictions/export.csv?label=neutrophil", headers=auth(token))
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("id,created_at,label") and pid in lines[1] and "'=cmd" in lines[1]
    exported = [e for e in world.audit if e.action == "prediction.export"]
    assert len(exported) == 1 and '"label": "neutrophil"' in exported[0].details_json
    assert (await client.get("/api/v1/predictions?label=dragon", headers=auth(token))).status_code == 422
    stats = await client.get("/api/v1/stats", headers=auth(token))
    assert stats.status_code == 200 and stats.json()["total"] == 1 and stats.json()["label_counts"]["neutrophil"] == 1
    ds = await client.get("/api/v1/datasets/reviewed.zip", headers=auth(token))
    assert ds.status_code == 200 and ds.content.startswith(b"PK")
    assert (await client.delete(f"/api/v1/predictions/{pid}", headers=auth(token))).status_code == 204
    assert (await client.get(f"/api/v1/predictions/{pid}", headers=auth(token))).status_code == 404


def test_every_rejection_reason_has_an_http_status():
    from hemovision_contracts.image_formats import REJECTION_REASONS
    from hemovision_gateway.errors import PREPROCESS_REASON_TO_HTTP

    assert set(PREPROCESS_REASON_TO_HTTP) == set(REJECTION_REASONS)
