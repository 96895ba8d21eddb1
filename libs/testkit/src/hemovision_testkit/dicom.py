"""Colour DICOM files of a cell, as microscope software writes them (tests of the decoder and of
REST uploads build them here, once)."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np

Encoding = Literal["rgb", "ybr_full", "jpeg"]

# VL Whole Slide Microscopy Image Storage
MICROSCOPY_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def colour_dicom(rgb: np.ndarray, *, encoding: Encoding) -> bytes:
    """A single-frame colour DICOM of `rgb` (H x W x 3 uint8): uncompressed RGB, uncompressed
    YBR_FULL (the same pixels converted to YCbCr), or JPEG baseline (YBR_FULL_422)."""
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.pixels.processing import convert_color_space
    from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MICROSCOPY_SOP_CLASS)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if encoding == "jpeg" else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if encoding == "jpeg":
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, format="JPEG", quality=95)
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate([out.getvalue()])
        ds["PixelData"].VR = "OB"
    elif encoding == "ybr_full":
        ds.PhotometricInterpretation = "YBR_FULL"
        ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").tobytes()
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = rgb.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
