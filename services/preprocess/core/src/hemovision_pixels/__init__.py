"""HemoVision pixels: image decoding/validation and the C++ preprocessing chain.

    from hemovision_pixels import PreprocessSpec, preprocess, preprocess_batch, decode_image, ImageRejected
"""

from .decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageRejected, decode_image, thumbnail_jpeg
from .pipeline import (
    REVIEW_REASONS,
    PipelineInfo,
    model_image,
    preprocess,
    preprocess_batch,
    preprocess_with_info,
    review_reasons,
)
from .spec import (
    ClaheSpec,
    GreyWorldStain,
    LocateSpec,
    PreprocessSpec,
    ReinhardStain,
    StainCheckSpec,
    WhiteBalanceSpec,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ClaheSpec",
    "GreyWorldStain",
    "ImageRejected",
    "LocateSpec",
    "PipelineInfo",
    "REVIEW_REASONS",
    "PreprocessSpec",
    "ReinhardStain",
    "StainCheckSpec",
    "WhiteBalanceSpec",
    "decode_image",
    "model_image",
    "preprocess",
    "preprocess_batch",
    "preprocess_with_info",
    "review_reasons",
    "thumbnail_jpeg",
]
