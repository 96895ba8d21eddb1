"""Test data for the reports tests: synthetic cell images and Grad-CAM heatmaps (Pillow/numpy),
valid predictions, callers with real tokens."""

from __future__ import annotations

import io
import uuid

import numpy as np
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from hemovision_contracts import CLASS_NAMES
from hemovision_testkit.tokens import TokenFactory
from hemovision_tokens import bearer_metadata
from PIL import Image, ImageDraw, ImageFilter


TOKENS = TokenFactory()


def caller(organization_id: str | None = None, role: str = "lab_user") -> tuple:
    org = organization_id or str(uuid.uuid4())
    token = TOKENS.issue(user_id=str(uuid.uuid4()), organization_id=org, role=role)
    return org, bearer_metadata(token)


def cell_png(size: int = 128, seed: int = 0) -> bytes:
    """A stained-smear-looking cell: pink background, pale cytoplasm, purple lobed nucleus."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (236, 200, 208))
    draw = ImageDraw.Draw(image)
    c = size / 2
    draw.ellipse([c - 40, c - 38, c + 40, c + 40], fill=(222, 184, 214))
    for dx, dy in ((-14, -6), (6, -14), (14, 8), (-4, 14)):
        r = 13 + int(rng.integers(0, 4))
        draw.ellipse([c + dx - r, c + dy - r, c + dx + r, c + dy + r], fill=(118, 62, 150))
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def heatmap_png(size: int = 16, cx: float = 0.55, cy: float = 0.45, mode: str = "L") -> bytes:
    """A small Grad-CAM-like heatmap (one warm blob). mode "L": grey-scale heat; "P": what the
    gateway stores (index = heat, a jet-like palette, alpha in tRNS); "RGBA": the gateway's older
    rendering (jet-like colours, alpha growing with the heat)."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    heat = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.05)
    q = (heat / heat.max() * 255).astype(np.uint8)
    out = io.BytesIO()
    if mode == "L":
        Image.fromarray(q, "L").save(out, format="PNG")
        return out.getvalue()
    v = np.linspace(0, 1, 256)
    jet = np.stack([np.clip(1.5 - np.abs(4 * v - k), 0, 1) for k in (3, 2, 1)], axis=-1)
    palette = (jet * 255).astype(np.uint8)
    alpha = (v * 200 + 55).astype(np.uint8)
    if mode == "P":
        img = Image.frombytes("P", (size, size), q.tobytes())
        img.putpalette(palette.tobytes())
        img.save(out, format="PNG", transparency=alpha.tobytes())
    else:
        Image.fromarray(np.dstack([palette[q], alpha[q]]), "RGBA").save(out, format="PNG")
    return out.getvalue()


def prediction(label: str = "neutrophil", confidence: float = 0.874, *, needs_review: bool = False,
               batch_id: str = "", sample_id: str = "SMP-0042") -> history_pb2.Prediction:
    rest = (1.0 - confidence) / (len(CLASS_NAMES) - 1)
    probs = {c: (confidence if c == label else rest) for c in CLASS_NAMES}
    return history_pb2.Prediction(
        label=label,
        confidence=confidence,
        probabilities=probs,
        needs_review=needs_review,
        review_reasons=["low_confidence"] if needs_review else [],
        model=common_pb2.ModelRef(name="hemovision", version=3),
        timings_ms={"inference": 8.0},
        filename="cell-0042.png",
        sample_id=sample_id,
        slide_id="SL-7",
        temperature=1.42,
        ood_score=0.12,
        batch_id=batch_id,
    )
