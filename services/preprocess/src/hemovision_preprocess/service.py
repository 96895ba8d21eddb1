"""Bytes -> model-ready tensor, with everything a caller needs to store and audit it."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hemovision_contracts.image_formats import sniff_format
from hemovision_imaging import encode_png
from hemovision_pixels import (
    ImageRejected,
    PreprocessSpec,
    decode_image,
    model_image,
    preprocess_with_info,
    review_reasons,
    thumbnail_jpeg,
)
from hemovision_pixels.ops import square_resize
from hemovision_preprocess.errors import ImageInvalid, SpecInvalid
from hemovision_preprocess.settings import Settings


@dataclass(frozen=True)
class PreparedImage:
    """The result for one image."""

    tensor: np.ndarray  # float32 [1, S, S, 3]
    original_width: int
    original_height: int
    sha256: str
    format: str
    thumbnail_jpeg: bytes
    model_image_png: bytes
    decode_ms: float
    pixels_ms: float
    review_reasons: tuple[str, ...] = ()  # from the spec's standardisation steps (v2)
    cell_found: bool = False
    cell_zoom: float = 1.0


class PreprocessCore:
    """Decode, validate and run the C++ chain; CPU work runs in threads (the C++ releases the GIL)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.max_concurrency)

    @staticmethod
    def parse_spec(spec: dict[str, Any]) -> PreprocessSpec:
        try:
            return PreprocessSpec.from_dict(spec)
        except (ValueError, TypeError, KeyError) as exc:
            raise SpecInvalid(f"invalid preprocessing spec: {exc}") from None

    async def prepare(
        self, data: bytes, spec: PreprocessSpec, *, want_thumbnail: bool, want_model_image: bool
    ) -> PreparedImage:
        async with self._slots:
            return await asyncio.to_thread(self._prepare_sync, data, spec, want_thumbnail, want_model_image)

    async def prepare_many(
        self, items: list[tuple[bytes, PreprocessSpec, bool, bool]]
    ) -> list[PreparedImage | ImageInvalid]:
        """prepare() for (data, spec, want_thumbnail, want_model_image) items, in order, on one
        worker thread; a rejected image gives its ImageInvalid in its place. (Splitting a group
        over two threads measured no gain on 2 cores: docs/serving.md.)"""

        def run() -> list[PreparedImage | ImageInvalid]:
            out: list[PreparedImage | ImageInvalid] = []
            for data, spec, want_thumbnail, want_model_image in items:
                try:
                    out.append(self._prepare_sync(data, spec, want_thumbnail, want_model_image))
                except ImageInvalid as exc:
                    out.append(exc)
            return out

        async with self._slots:
            return await asyncio.to_thread(run)

    def _prepare_sync(
        self, data: bytes, spec: PreprocessSpec, want_thumbnail: bool, want_model_image: bool
    ) -> PreparedImage:
        t0 = time.perf_counter()
        try:
            image = decode_image(
                data, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
            )
        except ImageRejected as exc:
            raise ImageInvalid(exc.reason, exc.message) from None
        t1 = time.perf_counter()
        single, info = preprocess_with_info(image, spec)
        tensor = single[np.newaxis]
        t2 = time.perf_counter()
        thumb = thumbnail_jpeg(image, self.settings.thumbnail_size) if want_thumbnail else b""
        model_png = b""
        if want_model_image:
            # v1: the cropped + resized image (as stored since v1); v2: the standardised image the
            # model saw (re-framed, white-balanced), which is what adaptation fine-tunes on.
            small = square_resize(image, spec.input_size, spec.crop) if spec.version == 1 else model_image(single, spec)
            model_png = encode_png(small)  # on the upload path: not Pillow's encoder (docs/decisions.md #36)
        return PreparedImage(
            tensor=tensor,
            original_width=int(image.shape[1]),
            original_height=int(image.shape[0]),
            sha256=hashlib.sha256(data).hexdigest(),
            format=sniff_format(data) or "UNKNOWN",
            thumbnail_jpeg=thumb,
            model_image_png=model_png,
            decode_ms=(t1 - t0) * 1000,
            pixels_ms=(t2 - t1) * 1000,
            review_reasons=tuple(review_reasons(info, spec)),
            cell_found=info.cell_found,
            cell_zoom=info.zoom,
        )
