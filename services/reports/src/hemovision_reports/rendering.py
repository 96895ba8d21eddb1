"""PDF layout with ReportLab (platypus + graphics). Pure functions: records in, PDF bytes out.

Every page carries the footer "For Research Use Only" with the page number; the
prediction report fits one A4 page, the batch report flows over as many as it needs."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hemovision_contracts import CLASS_NAMES, WHITE_BLOOD_CELL_CLASSES, confidence_holds
from hemovision.history.v1 import history_pb2
from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm, mm
from reportlab.pdfgen import canvas as pdf_canvas
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

FOOTER = "For Research Use Only. Not for use in diagnostic procedures."
PAGE_W, PAGE_H = A4
MARGIN = 1.6 * cm
CONTENT_W = PAGE_W - 2 * MARGIN

INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
ACCENT = colors.HexColor("#2563eb")
FLAG_HEX = "#b45309"
FLAG = colors.HexColor(FLAG_HEX)
GRID = colors.HexColor("#d9e2ec")
BAND = colors.HexColor("#f0f4f8")

_styles = getSampleStyleSheet()
H1 = ParagraphStyle("h1", parent=_styles["Heading1"], fontSize=17, leading=21, textColor=INK, spaceAfter=2)
H2 = ParagraphStyle("h2", parent=_styles["Heading2"], fontSize=12, leading=15, textColor=INK, spaceBefore=8, spaceAfter=4)
BODY = ParagraphStyle("body", parent=_styles["BodyText"], fontSize=9, leading=12, textColor=INK)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8, leading=10, textColor=MUTED)
CAPTION = ParagraphStyle("caption", parent=SMALL, alignment=TA_CENTER)
LABEL = ParagraphStyle("label", parent=BODY, fontSize=15, leading=19, fontName="Helvetica-Bold", textColor=INK)


def pretty(class_name: str) -> str:
    return class_name.replace("_", " ")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """Free text cut to `limit` characters, so the one-page report stays one page."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _when(ts) -> str:  # noqa: ANN001 - a protobuf Timestamp
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class RenderedPdf:
    data: bytes
    pages: int


def _numbered_canvas(generated: str, counter: list[int]):  # noqa: ANN202
    """A canvas that defers page output to write "Page n of N" and the footer on every page."""

    class NumberedCanvas(pdf_canvas.Canvas):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            self._saved: list[dict] = []

        def showPage(self) -> None:  # noqa: N802 - ReportLab's name
            self._saved.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._saved)
            counter.append(total)
            for state in self._saved:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            self.saveState()
            self.setStrokeColor(GRID)
            self.setLineWidth(0.6)
            self.line(MARGIN, 1.45 * cm, PAGE_W - MARGIN, 1.45 * cm)
            self.setFont("Helvetica-Bold", 8.5)
            self.setFillColor(FLAG)
            self.drawString(MARGIN, 1.0 * cm, FOOTER)
            self.setFont("Helvetica", 8)
            self.setFillColor(MUTED)
            self.drawRightString(PAGE_W - MARGIN, 1.0 * cm, f"Page {self._pageNumber} of {total}")
            self.drawString(MARGIN, 0.6 * cm, f"HemoVision - generated {generated}")
            self.restoreState()

    return NumberedCanvas


def _build(story: list, title: str) -> RenderedPdf:
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=1.4 * cm,
        bottomMargin=2.0 * cm,
        title=title,
        author="HemoVision",
        subject=FOOTER,
    )
    counter: list[int] = []
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc.build(story, canvasmaker=_numbered_canvas(generated, counter))
    return RenderedPdf(data=out.getvalue(), pages=counter[-1] if counter else 1)


def _kv_table(rows: list[tuple[str, str]], widths: tuple[float, float]) -> Table:
    data = [[Paragraph(f"<b>{_esc(k)}</b>", SMALL), Paragraph(_esc(v), BODY)] for k, v in rows]
    table = Table(data, colWidths=widths, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return table


def probability_chart(probabilities: dict[str, float], label: str, *, width: float, height: float) -> Drawing:
    """Horizontal bars of the class probabilities (percent), the model's label highlighted. The
    classes are the keys of `probabilities`: those of the model that classified the cell."""
    drawing = Drawing(width, height)
    chart = HorizontalBarChart()
    chart.x = 3.3 * cm
    chart.y = 0.8 * cm
    chart.width = width - chart.x - 1.3 * cm
    chart.height = height - chart.y - 0.2 * cm
    names = sorted(probabilities, reverse=True)  # first class (in output-unit order) on top
    chart.data = [[100.0 * float(probabilities.get(c, 0.0)) for c in names]]
    chart.categoryAxis.categoryNames = [pretty(c) for c in names]
    chart.categoryAxis.labels.fontName = "Helvetica"
    chart.categoryAxis.labels.fontSize = 8
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.categoryAxis.labels.dx = -4
    chart.categoryAxis.strokeColor = GRID
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = 100
    chart.valueAxis.valueStep = 20
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = "%d%%"
    chart.valueAxis.strokeColor = GRID
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = GRID
    chart.valueAxis.gridStrokeWidth = 0.4
    chart.barWidth = 8
    chart.groupSpacing = 5
    chart.bars[0].fillColor = colors.HexColor("#93b4f5")
    chart.bars[0].strokeColor = None
    for i, name in enumerate(names):
        if name == label:
            chart.bars[(0, i)].fillColor = ACCENT
    chart.barLabelFormat = "%.1f%%"
    chart.barLabels.fontSize = 7
    chart.barLabels.boxAnchor = "w"
    chart.barLabels.dx = 3
    drawing.add(chart)
    drawing.add(String(chart.x + chart.width / 2, 0, "calibrated probability", fontSize=7, fillColor=MUTED, textAnchor="middle"))
    return drawing


def _image_or_placeholder(png: bytes | None, side: float, caption: str) -> list:
    if png:
        flow = Image(io.BytesIO(png), width=side, height=side)
    else:
        flow = Table([[Paragraph("not stored", CAPTION)]], colWidths=[side], rowHeights=[side])
        flow.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 0.5, GRID), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                                  ("BACKGROUND", (0, 0), (-1, -1), BAND)]))
    return [flow, Spacer(1, 2 * mm), Paragraph(caption, CAPTION)]


def _review_text(p: history_pb2.Prediction) -> str:
    if not p.needs_review:
        return "No"
    reasons = ", ".join(pretty(r) for r in p.review_reasons) or "flagged by the model"
    return f"Yes - {reasons}"


def prediction_report(
    p: history_pb2.Prediction,
    *,
    organization: str,
    image_png: bytes | None,
    overlay_png: bytes | None,
) -> RenderedPdf:
    """One A4 page: header, cell image beside its Grad-CAM overlay, result, probability chart, model."""
    story: list = [
        Paragraph("HemoVision - single-cell classification report", H1),
        Paragraph(f"Prediction {_esc(p.id)}", SMALL),
        Spacer(1, 4 * mm),
    ]
    meta = _kv_table(
        [
            ("Organization", _clip(organization, 80)),
            ("Sample id", p.sample_id or "-"),
            ("Slide id", p.slide_id or "-"),
            ("Date", _when(p.created_at)),
            ("File", _clip(p.filename, 80) or "-"),
        ],
        (2.6 * cm, CONTENT_W / 2 - 2.6 * cm),
    )
    confidence = f"{100.0 * p.confidence:.1f}%"
    result_rows = [
        [Paragraph("Model label", SMALL)],
        [Paragraph(_esc(pretty(p.label)), LABEL)],
        [Paragraph(f"Calibrated confidence: <b>{confidence}</b>" if confidence_holds(p.review_reasons) else
                   f"Confidence: <b>{confidence}</b> - <font color='{FLAG_HEX}'><b>does not hold for this cell</b>"
                   "</font>: it is unlike the cells the model learned from; a person must review it.", BODY)],
        [Paragraph(
            f"Needs review: <font color='{FLAG_HEX}'><b>{_esc(_review_text(p))}</b></font>"
            if p.needs_review else "Needs review: <b>No</b>",
            BODY,
        )],
    ]
    if p.reviewed_label:
        agreed = "agrees with the model" if p.reviewed_label == p.label else "corrects the model"
        result_rows.append([Paragraph(
            f"Reviewer's label: <b>{_esc(pretty(p.reviewed_label))}</b> ({agreed})"
            + (f", {_when(p.reviewed_at)}" if p.HasField("reviewed_at") else ""),
            BODY,
        )])
        if p.review_comment:
            result_rows.append([Paragraph(f"Comment: {_esc(_clip(p.review_comment, 240))}", SMALL)])
    else:
        result_rows.append([Paragraph("Reviewer's label: not reviewed yet", SMALL)])
    result = Table(result_rows, colWidths=[CONTENT_W / 2])
    result.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("TOPPADDING", (0, 0), (-1, -1), 1),
                                ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]))
    story.append(Table([[meta, result]], colWidths=[CONTENT_W / 2, CONTENT_W / 2],
                       style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)])))

    story.append(Paragraph("Cell and Grad-CAM explanation", H2))
    side = 6.2 * cm
    images = Table(
        [[_image_or_placeholder(image_png, side, "Cell (model input)"),
          _image_or_placeholder(overlay_png, side, "Grad-CAM overlay (red = most influential)")]],
        colWidths=[CONTENT_W / 2, CONTENT_W / 2],
    )
    images.setStyle(TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story.append(images)

    story.append(Paragraph("Class probabilities", H2))
    story.append(probability_chart(dict(p.probabilities), p.label, width=CONTENT_W, height=5.6 * cm))

    story.append(Paragraph("Model", H2))
    story.append(_kv_table(
        [
            ("Model", f"{p.model.name} version {p.model.version}"),
            ("Temperature", f"{p.temperature:.3f} (calibration)"),
            ("OOD score", f"{p.ood_score:.3f}"),
        ],
        (2.6 * cm, CONTENT_W - 2.6 * cm),
    ))
    return _build(story, f"HemoVision prediction {p.id}")


@dataclass
class FlaggedCell:
    index: int
    filename: str
    prediction: history_pb2.Prediction
    thumbnail_png: bytes | None = None


@dataclass
class BatchReportData:
    batch: history_pb2.Batch
    organization: str
    items: list[history_pb2.BatchItem]
    flagged: list[FlaggedCell] = field(default_factory=list)
    thumbnails_left_out: int = 0


def differential_rows(label_counts: dict[str, int]) -> list[tuple[str, int, float, float | None]]:
    """(class, count, % of classified cells, % of WBC or None) for every class of the platform's
    label set, those no cell was given included."""
    total = sum(label_counts.get(c, 0) for c in CLASS_NAMES)
    wbc = sum(label_counts.get(c, 0) for c in WHITE_BLOOD_CELL_CLASSES)
    rows = []
    for c in CLASS_NAMES:
        n = label_counts.get(c, 0)
        of_all = 100.0 * n / total if total else 0.0
        of_wbc = (100.0 * n / wbc if wbc else 0.0) if c in WHITE_BLOOD_CELL_CLASSES else None
        rows.append((c, n, of_all, of_wbc))
    return rows


def batch_report(data: BatchReportData) -> RenderedPdf:
    b = data.batch
    counts = {c: int(b.label_counts.get(c, 0)) for c in CLASS_NAMES}
    classified = sum(counts.values())
    wbc = sum(counts[c] for c in WHITE_BLOOD_CELL_CLASSES)
    status = history_pb2.BatchStatus.Name(b.status).removeprefix("BATCH_STATUS_").lower()
    story: list = [
        Paragraph("HemoVision - batch report (WBC differential)", H1),
        Paragraph(f"Batch {_esc(b.id)}", SMALL),
        Spacer(1, 4 * mm),
        _kv_table(
            [
                ("Organization", data.organization),
                ("Sample id", b.sample_id or "-"),
                ("Slide id", b.slide_id or "-"),
                ("Created", _when(b.created_at)),
                ("Completed", _when(b.completed_at)),
                ("Status", status),
                ("Items", f"{b.total} total, {b.succeeded} classified, {b.failed} failed, {b.needs_review} flagged for review"),
            ],
            (3.0 * cm, CONTENT_W - 3.0 * cm),
        ),
        Paragraph("WBC differential", H2),
    ]
    header = ["Class", "Count", "% of classified cells", "% of WBC"]
    rows = [header]
    for c, n, of_all, of_wbc in differential_rows(counts):
        rows.append([pretty(c), str(n), f"{of_all:.1f}%", "-" if of_wbc is None else f"{of_wbc:.1f}%"])
    rows.append(["Total", str(classified), "100.0%" if classified else "0.0%", f"{wbc} WBC"])
    table = Table(rows, colWidths=[5.2 * cm, 2.4 * cm, 4.4 * cm, 3.2 * cm], hAlign="LEFT", repeatRows=1)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 9),
        ("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 9),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK),
        ("LINEABOVE", (0, -1), (-1, -1), 0.8, INK),
        ("ROWBACKGROUNDS", (0, 1), (-1, -2), [colors.white, BAND]),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]))
    story.append(table)
    nrbc = f"{100.0 * counts['erythroblast'] / wbc:.1f}" if wbc else "-"
    story.append(Spacer(1, 2 * mm))
    story.append(Paragraph(
        f"% of WBC counts the six leukocyte classes only. Erythroblasts (NRBC): {counts['erythroblast']} "
        f"({nrbc} per 100 WBC). Platelets: {counts['platelet']}. Counts are the model's labels.",
        SMALL,
    ))

    story.append(Paragraph(f"Flagged cells ({len(data.flagged) + data.thumbnails_left_out})", H2))
    if not data.flagged:
        story.append(Paragraph("No cell in this batch was flagged for review.", BODY))
    else:
        thumb = 1.7 * cm
        frows = [["Cell", "#", "File", "Label", "Confidence", "Why flagged", "Reviewer"]]
        for cell in data.flagged:
            p = cell.prediction
            image = Image(io.BytesIO(cell.thumbnail_png), width=thumb, height=thumb) if cell.thumbnail_png else Paragraph("not stored", SMALL)
            frows.append([
                image,
                str(cell.index),
                Paragraph(_esc(cell.filename or "-"), SMALL),
                Paragraph(_esc(pretty(p.label)), BODY),
                f"{100.0 * p.confidence:.1f}%",
                Paragraph(_esc(", ".join(pretty(r) for r in p.review_reasons) or "-"), SMALL),
                Paragraph(_esc(pretty(p.reviewed_label)) if p.reviewed_label else "-", SMALL),
            ])
        ftable = Table(
            frows,
            colWidths=[thumb + 0.3 * cm, 1.0 * cm, 3.6 * cm, 3.0 * cm, 2.0 * cm, 3.2 * cm, 2.4 * cm],
            repeatRows=1,
            hAlign="LEFT",
        )
        ftable.setStyle(TableStyle([
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
            ("FONT", (0, 1), (-1, -1), "Helvetica", 8.5),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK),
            ("LINEBELOW", (0, 1), (-1, -1), 0.3, GRID),
            ("TOPPADDING", (0, 0), (-1, -1), 2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ]))
        story.append(ftable)
        if data.thumbnails_left_out:
            story.append(Paragraph(f"... and {data.thumbnails_left_out} more flagged cells (see the history list).", SMALL))

    failed = [i for i in data.items if i.status == history_pb2.BATCH_ITEM_STATUS_FAILED]
    if failed:
        story.append(Paragraph(f"Items that could not be classified ({len(failed)})", H2))
        erows = [["#", "File", "Reason"]] + [
            [str(i.index), Paragraph(_esc(i.filename or "-"), SMALL), Paragraph(_esc(i.error), SMALL)] for i in failed
        ]
        etable = Table(erows, colWidths=[1.2 * cm, 5.5 * cm, CONTENT_W - 6.7 * cm], repeatRows=1, hAlign="LEFT")
        etable.setStyle(TableStyle([
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
            ("FONT", (0, 1), (-1, -1), "Helvetica", 8.5),
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]))
        story.append(etable)
    return _build(story, f"HemoVision batch {b.id}")


__all__ = ["FOOTER", "BatchReportData", "FlaggedCell", "RenderedPdf", "batch_report", "differential_rows", "prediction_report"]
