"""Which image formats HemoVision accepts, told by their leading bytes: decided once, at the edge
(the gateway's 415s) and wherever a format is reported (the preprocess service)."""

from __future__ import annotations

# Formats the preprocess service accepts, by leading bytes.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (128, b"DICM", "DICOM"),
)
# Recognisable files we do not accept (the gateway answers 415 with a precise message).
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


def foreign_format(data: bytes) -> str | None:
    """The name of a recognisable format we do not accept, or None."""
    return next((name for magic, name in _FOREIGN if data.startswith(magic)), None)


# Why the pixel pipeline rejects an image (PreprocessError.reason), with what each means.
REJECTION_REASONS: dict[str, str] = {
    "empty": "no bytes, or an image of zero width or height",
    "too_large": "more bytes than the upload limit",
    "too_many_pixels": "more pixels than the decoder's limit (decompression bombs)",
    "not_an_image": "not a recognised image format, or a DICOM file without pixel data",
    "unsupported_type": "a known format we do not accept (GIF, PDF, float or 32-bit pixels, ...)",
    "multi_frame": "an animation, a multi-page TIFF or a multi-frame DICOM",
    "truncated": "the file ends before the picture does",
    "corrupt": "the file's structure or image data cannot be read",
    "polyglot": "the bytes are valid as more than one format",
}
