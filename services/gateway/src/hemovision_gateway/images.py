"""Edge checks on uploaded images (size, type by magic bytes).

The gateway decides 413 / 415 / early 422 itself so obviously bad uploads never
reach the pipeline; everything deeper (truncation, pixel bombs, DICOM frames) is
judged by the preprocess service behind inference.AnalyzeImages, whose reasons errors.py maps.
"""

from __future__ import annotations

from hemovision_contracts.image_formats import ACCEPTED, foreign_format, sniff_format
from hemovision_gateway.errors import ApiError

__all__ = ["ACCEPTED", "check_image_bytes", "sniff_format"]


def check_image_bytes(data: bytes, *, max_bytes: int, filename: str | None = None) -> str:
    """Raises the right 413 / 415 / 422 for an upload; returns the sniffed format."""
    if len(data) == 0:
        raise ApiError(422, "empty", "the uploaded file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ApiError(413, "too_large", f"the file is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    fmt = sniff_format(data)
    if fmt is None:
        foreign = foreign_format(data)
        if foreign is not None:
            raise ApiError(415, "unsupported_type", f"{foreign} files are not accepted; send {ACCEPTED}")
        raise ApiError(415, "not_an_image", f"the file is not a recognised image ({ACCEPTED})")
    return fmt
