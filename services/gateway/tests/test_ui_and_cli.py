"""The browser page is served locally (no CDN), and the `hemovision` CLI talks to a live gateway."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import pytest
import uvicorn

from gateway_fakes import World

from hemovision_gateway import create_app, static_dir_files
from hemovision_gateway.cli import main as cli_main


async def test_ui_pages_and_assets(client):
    for path in ["/", "/verify-email?token=x", "/reset-password?token=x", "/accept-invitation?token=x"]:
        r = await client.get(path)
        assert r.status_code == 200 and "<main id=\"main\"" in r.text
    html = (await client.get("/")).text
    refs = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert refs and not re.search(r'(?:src|href)="(?:https?:)?//', html)  # no CDN
    for ref in refs:
        assert (await client.get(ref)).status_code == 200
    js = (await client.get("/static/app.js")).text
    assert "http://" not in js and "https://" not in js
    for page in ("/docs", "/redoc"):
        doc = await client.get(page)
        assert doc.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', doc.text)
        assert assets and all(a.startswith("/static-docs/") for a in assets), assets
        for asset in assets:
            assert (await client.get(asset)).status_code == 200
        assert "cdn.jsdelivr" not in doc.text and "fonts.googleapis" not in doc.text
    assert "/api/v1/predictions" in (await client.get("/openapi.json")).json()["paths"]


async def test_ui_class_filter_comes_from_the_label_set(client):
    from hemovision_contracts import CLASS_NAMES

    html = (await client.get("/")).text
    assert '<script src="/ui/classes.js"' in html
    script = (await client.get("/ui/classes.js")).text
    assert script == f"window.HV_CLASS_NAMES = {json.dumps(list(CLASS_NAMES))};\n"


def test_static_files_listed():
    assert {"index.html", "app.js", "app.css", "favicon.svg"} <= set(static_dir_files())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_gateway(settings, world: World):
    port = _free_port()
    app = create_app(settings, verifier=world.factory.verifier())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


async def test_cli_models_and_training(live_gateway, world, monkeypatch, capsys):
    _, token = world.user("ml_engineer")
    monkeypatch.setenv("HV_TOKEN", token)
    url = ["--url", live_gateway]
    assert await asyncio.to_thread(cli_main, [*url, "models", "list"]) == 0
    out = capsys.readouterr().out
    assert "hemovision\t1\tactive" in out and "hemovision\t2\tregistered" in out
    assert await asyncio.to_thread(cli_main, [*url, "models", "activate", "2", "--reason", "better"]) == 0
    assert "v2 is active" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, [*url, "models", "deprecate", "1", "--reason", "mislabelled"]) == 0
    assert "v1 is registered, deprecated (mislabelled)" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, [*url, "models", "list"]) == 0
    assert "hemovision\t1\tregistered (deprecated)" in capsys.readouterr().out
    # the active version cannot be deprecated: the service's 409 and its message, exit 2
    assert await asyncio.to_thread(cli_main, [*url, "models", "deprecate", "2", "--reason", "x"]) == 2
    assert "activate another one first" in capsys.readouterr().err
    assert await asyncio.to_thread(cli_main, [*url, "models", "restore", "1"]) == 0
    assert "v1 is registered, not deprecated" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, [*url, "train", "--epochs", "2", "--watch"]) == 0
    out = capsys.readouterr().out
    assert "training job" in out and "[succeeded]" in out
    _, lab = world.user("lab_user")
    monkeypatch.setenv("HV_TOKEN", lab)
    assert await asyncio.to_thread(cli_main, [*url, "models", "activate", "1"]) == 2
    assert "403 permission_denied" in capsys.readouterr().err


async def test_cli_adapt(live_gateway, world, monkeypatch, capsys):
    u, token = world.user("org_admin")
    monkeypatch.setenv("HV_TOKEN", token)
    url = ["--url", live_gateway]
    # too few reviewed cells: the service's message, exit 2
    assert await asyncio.to_thread(cli_main, [*url, "adapt", "start"]) == 2
    assert "409 failed_precondition: your organization has 0 reviewed cells" in capsys.readouterr().err

    world.add_reviewed(u.organization_id, 25)
    assert await asyncio.to_thread(cli_main, [*url, "adapt", "start", "--wait", "--interval", "0"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "25 reviewed cells" in lines[0] and "[queued]" in lines[1]
    assert [line for line in lines if line.startswith("[running]")] == [
        f"[running] epoch {e}/3" for e in (1, 2, 3)]
    assert "held-back cells (10 of 25): 55.0 % -> 85.0 %" in out and "PBC val: 98.8 % -> 98.4 %" in out
    assert "now serves your organization" in out
    adaptation_id = lines[0].split()[1]

    assert await asyncio.to_thread(cli_main, [*url, "adapt", "status", adaptation_id]) == 0
    assert "[succeeded]" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, [*url, "adapt", "list"]) == 0
    out = capsys.readouterr().out
    assert "(adapted; platform v1)" in out and f"{adaptation_id}\tsucceeded" in out
    assert await asyncio.to_thread(cli_main, [*url, "adapt", "rollback"]) == 0
    assert "hemovision v1 (platform)" in capsys.readouterr().out

    world.adapt_outcome = "rejected"
    assert await asyncio.to_thread(cli_main, [*url, "adapt", "start", "--wait", "--interval", "0"]) == 1
    out = capsys.readouterr().out
    assert "[rejected]" in out and "gate: PBC val accuracy falls 2.6 points (more than 1)" in out

    assert await asyncio.to_thread(cli_main, [*url, "adapt", "start"]) == 0
    adaptation_id = capsys.readouterr().out.split()[1]
    assert await asyncio.to_thread(cli_main, [*url, "adapt", "cancel", adaptation_id]) == 0
    assert "cancelled" in capsys.readouterr().out

    _, lab = world.user("lab_user", org=u.organization_id)
    monkeypatch.setenv("HV_TOKEN", lab)
    assert await asyncio.to_thread(cli_main, [*url, "adapt", "rollback"]) == 2
    assert "403 permission_denied" in capsys.readouterr().err


async def test_cli_predict_files_folders_and_zips(live_gateway, world, monkeypatch, capsys, tmp_path):
    """`hemovision predict`: a file, a folder (recursively) and a ZIP; a refused image is a row
    with its error and makes the exit status 1; CSV, JSON and table outputs."""
    import csv as csvmod
    import json
    import zipfile

    from gateway_fakes import png_bytes

    _, token = world.user("lab_user")
    monkeypatch.setenv("HV_TOKEN", token)
    url = ["--url", live_gateway]
    folder = tmp_path / "cells" / "day1"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(color=(10, 20, 30)))
    (folder / "b.PNG").write_bytes(png_bytes(color=(40, 50, 60)))
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "=single.png"
    single.write_bytes(png_bytes(color=(70, 80, 90)))
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x/c.png", png_bytes(color=(100, 110, 120)))
        z.writestr("__MACOSX/x/._c.png", b"junk")
        z.writestr("readme.md", "skip me")

    assert await asyncio.to_thread(cli_main, [*url, "predict", str(tmp_path / "cells"), str(archive),
                                              str(single), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    rows = list(csvmod.DictReader(out.splitlines()))
    names = [r["file"].removeprefix(str(tmp_path) + "/") for r in rows]
    assert names == ["cells/day1/a.png", "cells/day1/b.PNG", "batch.zip:x/c.png", "=single.png"]
    assert all(r["label"] == "neutrophil" and r["id"] and not r["error"] for r in rows)
    assert len(world.predictions) == 4  # each recorded in the caller's history

    broken = tmp_path / "broken.png"
    broken.write_bytes(png_bytes()[:60])
    assert await asyncio.to_thread(cli_main, [*url, "predict", str(single), str(broken), "--format", "json"]) == 1
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows[0]["label"] == "neutrophil" and rows[0]["confidence"] == pytest.approx(0.93)
    assert rows[1]["label"] == "" and rows[1]["error"].startswith("422 truncated")
    assert "1 of 2 images failed" in captured.err

    assert await asyncio.to_thread(cli_main, [*url, "predict", str(single)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["file", "label", "confidence", "needs_review", "review_reasons", "id", "error"]
    assert "neutrophil" in table[1] and "0.930" in table[1]

    for bad in ([str(tmp_path / "missing.png")], [str(tmp_path / "empty")]):
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert await asyncio.to_thread(cli_main, [*url, "predict", *bad]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_predict_output_is_spreadsheet_safe_and_zip_bombs_are_bounded(tmp_path):
    import zipfile

    from hemovision_gateway import cli_predict

    csv_text = cli_predict.render([{"file": "=cmd|' /C calc'!A0", "label": "", "confidence": None,
                                    "needs_review": None, "review_reasons": [], "id": "", "error": "x"}], "csv")
    assert csv_text.splitlines()[1].startswith("'=cmd")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", b"\0" * (cli_predict.MAX_FILE_BYTES + 10))
    (source,) = cli_predict.collect([str(bomb)])
    with pytest.raises(cli_predict.InputError, match="limit"):
        source.read()
