"""PNG writing for the small images of every upload: the model-input image and the heatmap.

Pillow's PNG encoder picks a filter per row by trying all five (adaptive filtering): right for
big photographs, but slow for one 64 x 64 cell, and two PNGs are written per upload. Here every
row gets the "Up" filter (difference to the row above, one numpy subtraction: what suits smooth
microscope images and heatmaps) and zlib level 1: faster, files a little bigger (the figures:
docs/decisions.md #36).
The output is a plain PNG (IHDR, optional PLTE + tRNS, one IDAT, IEND) any decoder reads.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP = 2  # PNG filter type "Up"
_COLOUR_TYPE = {(2, False): 0, (3, False): 2, (2, True): 3}  # (ndim, palette) -> grey, RGB, indexed


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, *, palette: bytes | None = None, transparency: bytes | None = None,
               level: int = 1) -> bytes:
    """uint8 [H, W] (grey, or palette indices when `palette` = 3 x n RGB bytes) or [H, W, 3] RGB
    -> PNG bytes. `transparency`: the tRNS chunk (one alpha byte per palette entry)."""
    a = np.ascontiguousarray(pixels)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or 0 in a.shape[:2]:
        raise ValueError(f"expected uint8 [H, W] or [H, W, 3], got {a.dtype} {list(a.shape)}")
    colour_type = _COLOUR_TYPE.get((a.ndim, palette is not None))
    if colour_type is None:
        raise ValueError("a palette goes with a 2-D array of indices")
    h, w = a.shape[:2]
    rows = a.reshape(h, -1)
    up = rows.copy()
    np.subtract(rows[1:], rows[:-1], out=up[1:])  # uint8 wraps around: PNG's arithmetic modulo 256
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = _UP
    raw[:, 1:] = up
    out = [_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))]
    if palette is not None:
        out.append(_chunk(b"PLTE", palette))
        if transparency is not None:
            out.append(_chunk(b"tRNS", transparency))
    out.append(_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
