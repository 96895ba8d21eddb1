"""Both reports rendered end to end: history (real server, real PostgreSQL) -> reports -> PDF,
parsed back with pypdf; cross-organization ids answer NOT_FOUND."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from hemovision.history.v1 import history_pb2
from hemovision.reports.v1 import reports_pb2
from hemovision_contracts import CLASS_NAMES
from pypdf import PdfReader

from reports_factories import caller, cell_png, heatmap_png, prediction

from hemovision_reports.rendering import differential_rows
from hemovision_reports.overlay import heatmap_overlay

T = 30
# Where rendered PDFs/PNGs are kept for a human to look at (set HV_REPORTS_ARTIFACTS to keep them).
ARTIFACTS = os.environ.get("HV_REPORTS_ARTIFACTS")


def _text(pdf: bytes) -> tuple[str, list[str]]:
    reader = PdfReader(io.BytesIO(pdf))
    pages = [page.extract_text() for page in reader.pages]
    return "\n".join(pages), pages


def _keep(name: str, pdf: bytes) -> None:
    if not ARTIFACTS:
        return
    folder = Path(ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.pdf").write_bytes(pdf)
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "70", str(folder / f"{name}.pdf"), str(folder / name)], check=True)


async def test_prediction_report_one_page_with_everything(history_stub, reports_stub):
    org, md = caller()
    stored = await history_stub.RecordPrediction(
        history_pb2.RecordPredictionRequest(prediction=prediction("eosinophil", 0.612, needs_review=True),
                                            image_png=cell_png(), heatmap_png=heatmap_png()),
        metadata=md, timeout=T,
    )
    _, reviewer_md = caller(org)
    await history_stub.ReviewPrediction(
        history_pb2.ReviewPredictionRequest(id=stored.id, label="neutrophil", comment="segmented nucleus"),
        metadata=reviewer_md, timeout=T,
    )
    report = await reports_stub.RenderPredictionReport(
        reports_pb2.RenderPredictionReportRequest(prediction_id=stored.id), metadata=md, timeout=T
    )
    assert report.pdf.startswith(b"%PDF") and report.pages == 1
    assert report.filename == f"hemovision-prediction-{stored.id}.pdf"
    _keep("prediction", report.pdf)
    text, pages = _text(report.pdf)
    assert len(pages) == 1
    assert "For Research Use Only" in pages[0]
    assert "eosinophil" in text and "61.2%" in text
    assert "Needs review" in text and "low confidence" in text
    assert "Reviewer's label" in text and "neutrophil" in text
    assert "hemovision version 3" in text and "1.420" in text
    assert "SMP-0042" in text and org in text  # organization id when auth is not configured
    for name in CLASS_NAMES:
        assert name.replace("_", " ") in text
    assert "Grad-CAM overlay" in text and "not stored" not in text


async def test_prediction_report_without_stored_images(history_stub, reports_stub):
    _, md = caller()
    stored = await history_stub.RecordPrediction(
        history_pb2.RecordPredictionRequest(prediction=prediction("platelet", 0.97)), metadata=md, timeout=T
    )
    report = await reports_stub.RenderPredictionReport(
        reports_pb2.RenderPredictionReportRequest(prediction_id=stored.id), metadata=md, timeout=T
    )
    text, pages = _text(report.pdf)
    assert len(pages) == 1 and "platelet" in text and "not stored" in text and "For Research Use Only" in text


async def test_batch_report_differential_flagged_and_footer_on_every_page(history_stub, reports_stub):
    org, md = caller()
    labels = ["neutrophil"] * 30 + ["lymphocyte"] * 12 + ["monocyte"] * 4 + ["eosinophil"] * 2 + ["basophil"] + \
             ["erythroblast"] * 3 + ["platelet"] * 6 + ["immature_granulocyte"] * 2
    batch = await history_stub.CreateBatch(
        history_pb2.CreateBatchRequest(total=len(labels) + 1, sample_id="SMP-B1"), metadata=md, timeout=T
    )
    flagged = 0
    for i, label in enumerate(labels):
        needs_review = i % 3 == 0
        flagged += needs_review
        p = await history_stub.RecordPrediction(
            history_pb2.RecordPredictionRequest(
                idempotency_key=f"{batch.id}:{i}",
                prediction=prediction(label, 0.55 if needs_review else 0.93, needs_review=needs_review, batch_id=batch.id),
                image_png=cell_png(seed=i),
            ),
            metadata=md, timeout=T,
        )
        await history_stub.RecordBatchItem(history_pb2.RecordBatchItemRequest(item=history_pb2.BatchItem(
            batch_id=batch.id, index=i, filename=f"cells/{i:03d}.png",
            status=history_pb2.BATCH_ITEM_STATUS_SUCCEEDED, prediction_id=p.id)), metadata=md, timeout=T)
    await history_stub.RecordBatchItem(history_pb2.RecordBatchItemRequest(item=history_pb2.BatchItem(
        batch_id=batch.id, index=len(labels), filename="cells/broken.jpg",
        status=history_pb2.BATCH_ITEM_STATUS_FAILED, error="not an image: truncated JPEG")), metadata=md, timeout=T)

    report = await reports_stub.RenderBatchReport(reports_pb2.RenderBatchReportRequest(batch_id=batch.id), metadata=md, timeout=T)
    _keep("batch", report.pdf)
    text, pages = _text(report.pdf)
    assert report.pages == len(pages) >= 2
    for page in pages:
        assert "For Research Use Only" in page
    assert "WBC differential" in text and "SMP-B1" in text
    # neutrophils: 30 of 60 classified = 50.0%; of 51 WBC = 58.8%
    assert "50.0%" in text and "58.8%" in text
    assert f"Flagged cells ({flagged})" in text
    assert "truncated JPEG" in text
    for name in CLASS_NAMES:
        assert name.replace("_", " ") in text


async def test_other_organization_gets_not_found(history_stub, reports_stub):
    _, md = caller()
    stored = await history_stub.RecordPrediction(
        history_pb2.RecordPredictionRequest(prediction=prediction()), metadata=md, timeout=T
    )
    batch = await history_stub.CreateBatch(history_pb2.CreateBatchRequest(total=1), metadata=md, timeout=T)
    _, other = caller()
    for call in (
        reports_stub.RenderPredictionReport(reports_pb2.RenderPredictionReportRequest(prediction_id=stored.id), metadata=other, timeout=T),
        reports_stub.RenderBatchReport(reports_pb2.RenderBatchReportRequest(batch_id=batch.id), metadata=other, timeout=T),
        reports_stub.RenderPredictionReport(reports_pb2.RenderPredictionReportRequest(prediction_id="nope"), metadata=other, timeout=T),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_no_token_is_unauthenticated(reports_stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await reports_stub.RenderPredictionReport(reports_pb2.RenderPredictionReportRequest(prediction_id="x"), timeout=T)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_differential_percentages():
    rows = {c: (n, of_all, of_wbc) for c, n, of_all, of_wbc in differential_rows(
        {"neutrophil": 6, "lymphocyte": 2, "platelet": 2})}
    assert rows["neutrophil"] == (6, 60.0, 75.0)
    assert rows["platelet"] == (2, 20.0, None)
    assert rows["basophil"] == (0, 0.0, 0.0)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA"])
def test_overlay_is_image_sized_and_warm_where_the_heat_is(mode):
    """Also for the colour-mapped renderings the gateway stores: their luminance is not the heat
    (jet's red is darker than its yellow), the palette index / alpha is."""
    from PIL import Image

    out = Image.open(io.BytesIO(heatmap_overlay(cell_png(), heatmap_png(cx=0.9, cy=0.1, mode=mode)))).convert("RGB")
    assert out.size == (128, 128)
    hot = out.getpixel((115, 13))
    cold = out.getpixel((13, 115))
    assert hot[0] > hot[2] and cold[2] >= cold[0] - 60  # red where hot, bluish/unchanged where cold


async def test_organization_name_comes_from_auth_get_me(history, history_stub, redis_url):
    """A minimal AuthService answering GetMe (the only auth RPC reports uses) on port 0."""
    from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
    from hemovision_grpc_server import GrpcServiceSettings, create_channel, create_server
    from hemovision.reports.v1 import reports_pb2_grpc

    from reports_factories import TOKENS

    from hemovision_reports.server import create_server as create_reports_server
    from hemovision_reports.settings import Settings

    seen = []

    class Auth(auth_pb2_grpc.AuthServiceServicer):
        async def GetMe(self, request, context):  # noqa: N802
            seen.append(dict(context.invocation_metadata()).get("authorization", ""))
            return auth_pb2.User(organization_name="St. Mary Haematology Lab")

    auth = await create_server(
        GrpcServiceSettings(port=0), service_names=["hemovision.auth.v1.AuthService"],
        register=lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(Auth(), s),
    )
    reports = await create_reports_server(
        Settings(port=0, history_addr=f"127.0.0.1:{history.port}", auth_addr=f"127.0.0.1:{auth.port}"),
        verifier=TOKENS.verifier(redis_url=redis_url),
    )
    try:
        _, md = caller()
        stored = await history_stub.RecordPrediction(
            history_pb2.RecordPredictionRequest(prediction=prediction()), metadata=md, timeout=T
        )
        async with create_channel(f"127.0.0.1:{reports.port}") as channel:
            report = await reports_pb2_grpc.ReportsServiceStub(channel).RenderPredictionReport(
                reports_pb2.RenderPredictionReportRequest(prediction_id=stored.id), metadata=md, timeout=T
            )
        text, _ = _text(report.pdf)
        assert "St. Mary Haematology Lab" in text
        assert seen == [md[0][1]]  # the caller's own token was forwarded
    finally:
        await reports.stop(0)
        await auth.stop(0)


def test_prediction_report_stays_one_page_with_long_free_text():
    from hemovision_reports.rendering import prediction_report

    p = prediction("immature_granulocyte", 0.5, needs_review=True)
    p.id = "00000000-0000-0000-0000-000000000000"
    p.review_reasons[:] = ["low_confidence", "out_of_distribution"]
    p.reviewed_label, p.review_comment, p.note = "monocyte", "very long comment " * 120, "n" * 2000
    p.filename = "f" * 255
    p.sample_id = "S" * 128
    rendered = prediction_report(p, organization="O" * 200, image_png=cell_png(), overlay_png=cell_png())
    text, pages = _text(rendered.data)
    assert rendered.pages == len(pages) == 1 and "For Research Use Only" in text


async def test_every_report_handed_out_is_audited_with_the_client_ip(history_stub, reports_stub):
    from hemovision_contracts import origin_metadata

    org, md = caller()
    stored = await history_stub.RecordPrediction(
        history_pb2.RecordPredictionRequest(prediction=prediction(), image_png=cell_png()), metadata=md, timeout=T)
    batch = await history_stub.CreateBatch(history_pb2.CreateBatchRequest(total=1), metadata=md, timeout=T)
    origin = origin_metadata("198.51.100.23", "pytest")
    await reports_stub.RenderPredictionReport(reports_pb2.RenderPredictionReportRequest(prediction_id=stored.id),
                                              metadata=md + origin, timeout=T)
    await reports_stub.RenderBatchReport(reports_pb2.RenderBatchReportRequest(batch_id=batch.id), metadata=md, timeout=T)
    # a refused report (another organization's id) is not a download
    _, other = caller()
    with pytest.raises(grpc.aio.AioRpcError):
        await reports_stub.RenderPredictionReport(reports_pb2.RenderPredictionReportRequest(prediction_id=stored.id),
                                                  metadata=other, timeout=T)

    _, admin = caller(org, role="org_admin")
    events = (await history_stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(action_prefix="report.download"),
                                                 metadata=admin, timeout=T)).items
    assert sorted((e.target_type, e.target_id, e.client_ip) for e in events) == sorted(
        [("prediction", stored.id, "198.51.100.23"), ("batch", batch.id, "")])
