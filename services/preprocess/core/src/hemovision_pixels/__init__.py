"""HemoVision pixels: image decoding/validation and the C++ preprocessing chain.

    from hemovision_pixels import PreprocessSpec, preprocess, preprocess_batch, decode_image, ImageRejected
"""

from .decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageRejected, decode_image, thumbnail_jpeg
from .pipeline import preprocess, preprocess_batch
from .spec import ClaheSpec, GreyWorldStain, PreprocessSpec, ReinhardStain

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ClaheSpec",
    "GreyWorldStain",
    "ImageRejected",
    "PreprocessSpec",
    "ReinhardStain",
    "decode_image",
    "preprocess",
    "preprocess_batch",
    "thumbnail_jpeg",
]
