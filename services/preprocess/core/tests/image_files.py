"""Builders for test inputs in every format, mode and failure shape decode_image meets."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None = None) -> bytes:
    """A PNG written by hand, so the header may declare anything (e.g. 10^5 x 10^5)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    if rows is None:
        rows = b"\x00" * 64  # far too little data for a large declared size
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


def png16_rgb(arr16: np.ndarray) -> bytes:
    """48-bit RGB PNG from an HxWx3 uint16 array (Pillow cannot write these)."""
    h, w, _ = arr16.shape
    rows = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    return raw_png(w, h, 16, 2, rows)


def dicom(arr: np.ndarray, photometric: str, *, frames: int = 1, bits: int = 8, preamble: bytes = b"\x00" * 128) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = preamble
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = arr.shape[-3 if arr.ndim == 4 or (arr.ndim == 3 and photometric == "RGB") else -2], arr.shape[-2 if arr.ndim == 4 or (arr.ndim == 3 and photometric == "RGB") else -1]
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def mode_image(mode: str, h: int, w: int, seed: int = 0) -> Image.Image:
    """A random image in a given Pillow mode."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), np.uint16))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return rgb.convert(mode)


# (mode, formats that can store it)
MODES_FORMATS = {
    "RGB": ["PNG", "JPEG", "BMP", "TIFF", "WEBP"],
    "L": ["PNG", "JPEG", "BMP", "TIFF", "WEBP"],
    "LA": ["PNG", "TIFF"],
    "RGBA": ["PNG", "TIFF", "WEBP"],
    "CMYK": ["JPEG", "TIFF"],
    "P": ["PNG", "BMP", "TIFF"],
    "1": ["PNG", "BMP", "TIFF"],
    "I;16": ["PNG", "TIFF"],
}
