"""Why a cell needs a human look: every review reason an answer can carry, and which of
them mean the calibrated confidence does not hold for that cell.

Inference gives low_confidence and out_of_distribution (inference.proto ReviewReason);
the pixel pipeline gives cell_not_found, cell_size_unusual and stain_unusual (preprocess.proto
PreprocessResponse.review_reasons, hemovision_pixels.REVIEW_REASONS).
"""

from __future__ import annotations

from collections.abc import Iterable

# reason -> what a lab user reads (UI, PDF, docs/user_guide.md)
REVIEW_REASONS: dict[str, str] = {
    "low_confidence": "the model's calibrated confidence is below the review threshold",
    "out_of_distribution": "the image is unlike the cells the model learned from",
    "cell_not_found": "no white cell was found in the image; it was classified as framed",
    "cell_size_unusual": "the cell's size in the image is far from any the model learned",
    "stain_unusual": "the stain colours the nucleus unlike any slide the model learned from",
}

# The model was calibrated on cells like its training data; for these it was not, so its
# confidence is no probability of being right.
OUT_OF_DISTRIBUTION_REASONS: frozenset[str] = frozenset({"out_of_distribution", "cell_not_found",
                                                         "cell_size_unusual", "stain_unusual"})


def confidence_holds(reasons: Iterable[str]) -> bool:
    """False when any reason says the calibrated confidence does not apply to this cell."""
    return not OUT_OF_DISTRIBUTION_REASONS.intersection(reasons)
