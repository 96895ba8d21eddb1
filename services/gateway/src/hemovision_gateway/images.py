"""Edge checks on uploaded images (size, type by magic bytes) and heatmap rendering.

The gateway decides 413 / 415 / early 422 itself so obviously bad uploads never
reach the pipeline; everything deeper (truncation, pixel bombs, DICOM frames) is
judged by the preprocess service, whose reasons errors.py maps.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from hemovision_gateway.errors import ApiError

# Formats the preprocess service accepts, by leading bytes.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (128, b"DICM", "DICOM"),
)
# Recognisable files we do not accept (-> 415 with a precise message).
_FOREIGN: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)

ACCEPTED = "JPEG, PNG, BMP, TIFF, WebP or DICOM"


def sniff_format(data: bytes) -> str | None:
    """The image format by content, or None."""
    for offset, magic, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def check_image_bytes(data: bytes, *, max_bytes: int, filename: str | None = None) -> str:
    """Raises the right 413 / 415 / 422 for an upload; returns the sniffed format."""
    if len(data) == 0:
        raise ApiError(422, "empty", "the uploaded file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ApiError(413, "too_large", f"the file is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    fmt = sniff_format(data)
    if fmt is None:
        for magic, name in _FOREIGN:
            if data.startswith(magic):
                raise ApiError(415, "unsupported_type", f"{name} files are not accepted; send {ACCEPTED}")
        raise ApiError(415, "not_an_image", f"the file is not a recognised image ({ACCEPTED})")
    return fmt


def _colormap(values: np.ndarray) -> np.ndarray:
    """A 'jet'-like colour map: [0,1] floats -> uint8 RGB, without matplotlib."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255.0 + 0.5).astype(np.uint8)


# The rendered heatmap is a palette PNG: pixel value = heat quantised to 0..255, the palette the
# colour map, the tRNS table the alpha (55..255, growing with the heat). It looks the same as an
# RGBA rendering, encodes ~8x faster and ~half the size, and keeps the heat readable (the index).
_PALETTE = _colormap(np.linspace(0.0, 1.0, 256, dtype=np.float32)).tobytes()
_ALPHA = bytes(int(v) for v in np.linspace(0.0, 1.0, 256) * 200 + 55)


def heatmap_png(heatmap: np.ndarray, size: int | None = None) -> bytes:
    """Renders a Grad-CAM heatmap [h, w] in [0,1] as a palette PNG with alpha (see above),
    resized to `size` x `size` when given, so the UI can lay it over the cell image."""
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim == 3:
        hm = hm[0] if hm.shape[0] == 1 else hm[..., 0]
    if hm.ndim != 2 or hm.size == 0:
        raise ValueError(f"heatmap must be 2-D, got shape {hm.shape}")
    hm = np.nan_to_num(hm, nan=0.0, posinf=1.0, neginf=0.0)
    lo, hi = float(hm.min()), float(hm.max())
    if hi > 1.0 or lo < 0.0:
        hm = (hm - lo) / (hi - lo) if hi > lo else np.zeros_like(hm)
    img = Image.fromarray(np.ascontiguousarray(np.clip(hm, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "L")
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)  # resize the heat, then colour it
    img = Image.frombytes("P", img.size, img.tobytes())
    img.putpalette(_PALETTE)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False, compress_level=1, transparency=_ALPHA)
    return out.getvalue()


def tensor_to_array(tensor) -> np.ndarray:
    """common.v1.Tensor -> numpy array."""
    from hemovision.common.v1 import common_pb2

    dtype = np.uint8 if tensor.dtype == common_pb2.DTYPE_UINT8 else np.float32
    arr = np.frombuffer(tensor.data, dtype=np.dtype(dtype).newbyteorder("<"))
    shape = tuple(int(d) for d in tensor.shape)
    return arr.reshape(shape) if shape else arr
