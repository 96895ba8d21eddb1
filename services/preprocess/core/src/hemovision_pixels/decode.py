"""Bytes -> HxWx3 uint8 RGB, with the checks an upload endpoint needs.

The format is decided by content (magic bytes, then Pillow/pydicom), never by a
file name. Sizes are checked before any pixel is decoded: the byte size first,
then the pixel count from the header. Anything wrong raises ImageRejected, whose
`reason` is a short machine code a service maps to a status.
"""

from __future__ import annotations

import io
import re
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# A few times the largest legitimate input (whole-field microscope frames of ~12 MP).
DEFAULT_MAX_PIXELS = 40_000_000

# Pillow's own bomb guard uses this global: warn above it, raise above twice it.
# Tighten it (never loosen a stricter setting made by the host application); the
# per-call max_pixels check below rejects everything the warning would flag.
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > DEFAULT_MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

# Openers Pillow may try; a JPEG with extra frames comes back as format "MPO".
OPENERS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")


class ImageRejected(ValueError):
    """The upload is not an image we accept. `reason` is one of
    hemovision_contracts.image_formats.REJECTION_REASONS (the front end maps it to HTTP);
    str(exc) is a sentence a person can act on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.message))


U8Image = npt.NDArray[np.uint8]

# A DICOM preamble is free-form, which is how DICOM/PE or DICOM/TIFF polyglots are built.
_FOREIGN_MAGIC = (b"MZ", b"II*\x00", b"MM\x00*", b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"PK\x03\x04", b"\x7fELF")


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> U8Image:
    """Decode JPEG, PNG (8/16-bit, palette), BMP, TIFF, WebP or single-frame DICOM
    into a C-contiguous HxWx3 uint8 RGB array. EXIF orientation is applied;
    grey, alpha (composited on white), CMYK, palette and 16-bit inputs become RGB."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise ImageRejected("empty", "The upload is empty (0 bytes).")
    if len(data) > max_bytes:
        raise ImageRejected(
            "too_large", f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes."
        )
    if len(data) >= 132 and data[128:132] == b"DICM":
        return _decode_dicom(data, max_pixels)
    return _decode_pillow(data, max_pixels)


def _too_many(w: int, h: int, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        "too_many_pixels",
        f"The image declares {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}.",
    )


def _decode_pillow(data: bytes, max_pixels: int) -> U8Image:
    limit = max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    try:
        # Image.open parses the header only; pixels are decoded by load() below.
        im = Image.open(io.BytesIO(data), formats=OPENERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fired while reading the header; it names the pixel count.
        m = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(m.group(1)):,} pixels" if m else "more pixels than allowed"
        raise ImageRejected("too_many_pixels", f"The image declares {declared}; the limit is {limit:,}.") from None
    except UnidentifiedImageError:
        claimed = _claimed_format(data)
        if claimed is not None:
            # It starts like a format we accept, but no header could be read: a damaged or cut-short
            # file (say so), not a foreign one ("not a recognised image" misled the sender).
            raise ImageRejected(
                "corrupt", f"The file starts like a {claimed} image but its header cannot be read "
                "(it is cut short or damaged)."
            ) from None
        try:
            with Image.open(io.BytesIO(data)) as other:
                fmt = other.format
        except Exception:
            fmt = None
        if fmt:
            raise ImageRejected(
                "unsupported_type",
                f"{fmt} images are not accepted; send JPEG, PNG, BMP, TIFF, WebP or DICOM.",
            ) from None
        raise ImageRejected(
            "not_an_image", "The file is not a recognised image (JPEG, PNG, BMP, TIFF, WebP or DICOM)."
        ) from None
    except Exception as exc:  # header parsers raise a zoo of types on garbage
        raise ImageRejected("corrupt", f"The image header could not be read ({type(exc).__name__}).") from None
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageRejected("empty", f"The image declares a size of {w}x{h}.")
        if w * h > limit:
            raise _too_many(w, h, limit)
        try:
            # TIFF counts frames by walking its IFD chain, which can fail on garbage.
            frames = int(getattr(im, "n_frames", 1))
        except Exception as exc:
            raise ImageRejected("corrupt", f"The {im.format} file structure is corrupt ({type(exc).__name__}).") from None
        if frames > 1 and im.format != "MPO":  # MPO: a JPEG plus stereo/preview frames
            raise ImageRejected(
                "multi_frame", f"The {im.format} file holds {frames} frames; send a single image."
            )
        try:
            _check_trailing(data, im.format or "")
            im.load()
            rgb = _to_rgb(ImageOps.exif_transpose(im))
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many(w, h, limit) from None
        except OSError as exc:
            if "truncated" in str(exc) or "broken data stream" in str(exc):
                raise ImageRejected("truncated", "The image file is truncated (it ends before the picture does).") from None
            raise ImageRejected("corrupt", f"The {im.format} image data is corrupt ({exc}).") from None
        except MemoryError:
            raise _too_many(w, h, limit) from None
        except Exception as exc:
            raise ImageRejected("corrupt", f"The {im.format} image data is corrupt ({type(exc).__name__}).") from None
    return rgb


def _claimed_format(data: bytes) -> str | None:
    """The accepted format whose signature the bytes start with (Pillow's own signature checks), or None."""
    Image.init()
    for fmt in OPENERS:
        entry = Image.OPEN.get(fmt)
        if entry is not None and entry[1] is not None and entry[1](data[:16]):
            return fmt
    return None


def _check_trailing(data: bytes, fmt: str) -> None:
    """Reject bytes after the image's own end marker: that is where polyglots (an
    image that is also a ZIP, script or executable) keep their second payload."""
    polyglot = ImageRejected(
        "polyglot", f"The {fmt} file carries extra data after the end of the image; send a plain image file."
    )
    if fmt == "PNG":
        # Walk the chunk list (not a search for "IEND", which a payload could contain).
        pos = 8
        while True:
            if pos + 8 > len(data):
                raise ImageRejected("truncated", "The PNG file is truncated (it ends before its IEND chunk).")
            length = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            pos += 12 + length
            if kind == b"IEND":
                break
        if pos > len(data):
            raise ImageRejected("truncated", "The PNG file is truncated.")
        if pos < len(data):
            raise polyglot
    elif fmt in ("JPEG", "MPO"):
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            # No EOI at the end: either cut short or something appended after it.
            if b"\xff\xd9" in data[-65536:] and data.rfind(b"\xff\xd9") > len(data) // 2:
                raise polyglot
            raise ImageRejected("truncated", "The JPEG file is truncated (no end-of-image marker).")
    elif fmt == "WEBP":
        declared = struct.unpack("<I", data[4:8])[0] + 8
        declared += declared & 1  # RIFF pads odd chunk sizes
        if len(data) < declared - 1:
            raise ImageRejected("truncated", "The WebP file is truncated.")
        if len(data) > declared:
            raise polyglot
    elif fmt == "BMP":
        declared = struct.unpack("<I", data[2:6])[0]
        if 0 < declared < len(data):
            raise polyglot


def _to_rgb(im: Image.Image) -> U8Image:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(im).astype(np.uint16)
        return _grey16_to_rgb(arr, 16)
    if mode == "I":
        arr32 = np.asarray(im)
        if arr32.size and (arr32.min() < 0 or arr32.max() > 65535):
            raise ImageRejected("unsupported_type", "32-bit integer images are not accepted.")
        return _grey16_to_rgb(arr32.astype(np.uint16), 16)
    if mode == "F":
        raise ImageRejected("unsupported_type", "Floating-point images are not accepted.")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        # Transparent areas become white, the colour of an empty smear field.
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        im = background
    elif im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _grey16_to_rgb(arr: npt.NDArray[np.uint16], bits: int) -> U8Image:
    grey = (arr.astype(np.uint32) * 255 + ((1 << bits) - 1) // 2) // ((1 << bits) - 1)
    return np.ascontiguousarray(np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2))


def _decode_dicom(data: bytes, max_pixels: int) -> U8Image:
    import pydicom
    from pydicom.errors import InvalidDicomError

    preamble = data[:128]
    if any(preamble) and preamble.startswith(_FOREIGN_MAGIC):
        raise ImageRejected(
            "polyglot", "The DICOM preamble holds another file format; send a plain DICOM file."
        )
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except (InvalidDicomError, EOFError) as exc:
        raise ImageRejected("corrupt", f"The DICOM file could not be parsed ({exc}).") from None
    except Exception as exc:
        raise ImageRejected("corrupt", f"The DICOM file could not be parsed ({type(exc).__name__}).") from None
    try:
        if "PixelData" not in ds:
            raise ImageRejected("not_an_image", "The DICOM file holds no image (no Pixel Data).")
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ImageRejected(
                "multi_frame", f"The DICOM file holds {frames} frames; send a single-frame image."
            )
        rows, cols = int(ds.Rows), int(ds.Columns)
        if rows <= 0 or cols <= 0:
            raise ImageRejected("empty", f"The DICOM image declares a size of {cols}x{rows}.")
        if rows * cols > max_pixels:
            raise _too_many(cols, rows, max_pixels)
        samples = int(getattr(ds, "SamplesPerPixel", 1))
        photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
        arr = ds.pixel_array
    except ImageRejected:
        raise
    except Exception as exc:
        raise ImageRejected(
            "unsupported_type", f"The DICOM pixel data could not be decoded ({type(exc).__name__}: {exc})."
        ) from None
    if arr.ndim != (3 if samples == 3 else 2):
        raise ImageRejected("unsupported_type", f"Unexpected DICOM pixel array shape {arr.shape}.")
    if samples == 3:
        # pydicom >= 3 already returns RGB for YBR data (pixel_array's as_rgb=True); converting again
        # turned JPEG-compressed DICOM cells green-grey (a test decodes one against its source).
        return np.ascontiguousarray(_to_u8(arr, int(getattr(ds, "BitsStored", 8))))
    if samples != 1:
        raise ImageRejected("unsupported_type", f"DICOM images with {samples} samples per pixel are not accepted.")
    grey = _to_u8(arr, int(getattr(ds, "BitsStored", 8)))
    if photometric == "MONOCHROME1":  # 0 is white in MONOCHROME1
        grey = 255 - grey
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _to_u8(arr: np.ndarray, bits_stored: int) -> U8Image:
    """Map stored values to 0..255: 8-bit data as is, deeper data by its value range."""
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.unsignedinteger) and 8 < bits_stored <= 16:
        lo, hi = 0.0, float((1 << bits_stored) - 1)
    else:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip(np.rint((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def thumbnail_jpeg(image: np.ndarray, size: int = 96, quality: int = 85) -> bytes:
    """A small JPEG preview (longest side `size`) of an HxWx3 uint8 RGB image."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("thumbnail_jpeg expects an HxWx3 uint8 array")
    if size < 1:
        raise ValueError("size must be >= 1")
    im = Image.fromarray(np.ascontiguousarray(image))
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
