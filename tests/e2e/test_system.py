"""End to end through the system as `make up` runs it: register -> login -> upload a real
PBC test image -> answer -> history -> PDF; every gRPC service healthy and reflecting;
stopping leaves no process behind."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pypdf import PdfReader

from hemovision_contracts.topology import SERVERS
from hemovision_testkit.dicom import colour_dicom

CLASSES = {"basophil", "eosinophil", "erythroblast", "immature_granulocyte", "lymphocyte", "monocyte",
           "neutrophil", "platelet"}


@pytest.fixture(scope="module")
def session(client):
    email = f"lab-{uuid.uuid4().hex[:8]}@example.org"
    password = "correct horse battery staple"
    reply = client.post("/api/v1/auth/register",
                        json={"email": email, "password": password, "organization": f"Lab {uuid.uuid4().hex[:6]}"})
    assert reply.status_code == 201, reply.text
    assert reply.json()["role"] == "org_admin"
    reply = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert reply.status_code == 200, reply.text
    tokens = reply.json()
    assert tokens["token_type"] == "bearer"
    return {"email": email, "headers": {"Authorization": f"Bearer {tokens['access_token']}"}, "tokens": tokens}


def test_predict_history_and_report(client, session, test_images):
    headers = session["headers"]
    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200 and me.json()["email"] == session["email"]

    correct = 0
    ids = []
    for label, path in test_images:
        reply = client.post("/api/v1/predictions", headers=headers,
                            files={"file": (path.name, path.read_bytes(), "image/jpeg")})
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["label"] in CLASSES
        assert set(body["probabilities"]) == CLASSES
        assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-3
        assert 0.0 < body["confidence"] <= 1.0
        assert body["model"]["name"] == "hemovision" and body["model"]["version"] >= 1
        assert body["timings_ms"] and all(v >= 0 for v in body["timings_ms"].values())
        assert isinstance(body["needs_review"], bool)
        correct += body["label"] == label
        ids.append(body["id"])
    # One image per class from the test split: a real model gets nearly all of them.
    assert correct >= len(test_images) - 2, f"only {correct}/{len(test_images)} correct"

    listing = client.get("/api/v1/predictions", headers=headers, params={"limit": 50})
    assert listing.status_code == 200
    assert set(ids) <= {item["id"] for item in listing.json()["items"]}

    one = client.get(f"/api/v1/predictions/{ids[0]}", headers=headers)
    assert one.status_code == 200 and one.json()["id"] == ids[0]

    pdf = client.get(f"/api/v1/predictions/{ids[0]}/report.pdf", headers=headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"].startswith("application/pdf")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert one.json()["label"] in text.replace(" ", "_") or one.json()["label"].replace("_", " ") in text
    assert "For Research Use Only" in text

    models = client.get("/api/v1/models", headers=headers)
    assert models.status_code == 200 and models.json()["items"]


def test_dicom_uploads_are_classified_like_the_cell(client, session, test_images):
    """A single-frame DICOM, uncompressed and JPEG-compressed, through REST: the same answer as
    the cell's own file (the JPEG one used to come back colour-shifted: YCbCr converted twice)."""
    import numpy as np
    from PIL import Image

    headers = session["headers"]
    _, path = test_images[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    plain = client.post("/api/v1/predictions", headers=headers,
                        files={"file": (path.name, path.read_bytes(), "image/jpeg")}).json()
    for jpeg in (False, True):
        reply = client.post("/api/v1/predictions", headers=headers,
                            files={"file": ("cell.dcm", colour_dicom(rgb, encoding="jpeg" if jpeg else "rgb"), "application/dicom")})
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["label"] == plain["label"]
        assert abs(body["confidence"] - plain["confidence"]) < 0.1


def test_bad_input_is_a_clear_4xx(client, session):
    headers = session["headers"]
    before = client.get("/api/v1/predictions", headers=headers).json()["items"]
    cases = [
        ({"file": ("notes.txt", b"not an image at all", "text/plain")}, {415, 422}),
        ({"file": ("empty.jpg", b"", "image/jpeg")}, {422}),
        ({"file": ("big.jpg", b"\xff\xd8\xff" + b"0" * (10 * 1024 * 1024 + 10), "image/jpeg")}, {413}),
    ]
    for files, statuses in cases:
        reply = client.post("/api/v1/predictions", headers=headers, files=files)
        assert reply.status_code in statuses, (files["file"][0], reply.status_code, reply.text)
        assert set(reply.json()["error"]) >= {"code", "message"}
    assert client.post("/api/v1/predictions", headers=headers).status_code == 422
    assert client.get("/api/v1/predictions").status_code == 401
    assert client.get("/api/v1/predictions", headers={"Authorization": "Bearer nope"}).status_code == 401
    after = client.get("/api/v1/predictions", headers=headers).json()["items"]
    assert len(after) == len(before)


def test_logout_revokes(client):
    email = f"out-{uuid.uuid4().hex[:8]}@example.org"
    client.post("/api/v1/auth/register", json={"email": email, "password": "another long password",
                                               "organization": f"Org {uuid.uuid4().hex[:6]}"})
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": "another long password"}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers,
                       json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401


async def test_every_grpc_service_is_healthy_and_reflects(system):
    for name, service in ((s.name, s.health_service) for s in SERVERS.values() if s.health_service):
        addr = f"127.0.0.1:{SERVERS[name].port + system.port_offset}"
        async with grpc.aio.insecure_channel(addr) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name

            async def ask():
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            async for answer in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(ask(), timeout=5):
                listed = {s.name for s in answer.list_services_response.service}
                assert service in listed, (name, listed)
                break


def test_readyz(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_zz_stop_leaves_no_process(system):
    """Runs last in this module: SIGTERM to `hemovision up` stops every process it started."""
    state = json.loads((system.var_dir / "run" / "devstack.json").read_text())
    pids = list(state["processes"].values())
    assert len(pids) >= 8
    system.process.send_signal(signal.SIGTERM)
    system.process.wait(timeout=90)
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        time.sleep(0.2)
    assert not alive, f"processes left behind: {alive}"
    assert not (system.var_dir / "run" / "devstack.json").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    status = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(status) and not status.startswith("Z")
