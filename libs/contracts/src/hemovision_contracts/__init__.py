"""Facts every HemoVision service shares and none owns, defined once."""

from .review import OUT_OF_DISTRIBUTION_REASONS, REVIEW_REASONS, confidence_holds

__all__ = ["OUT_OF_DISTRIBUTION_REASONS", "REVIEW_REASONS", "confidence_holds"]
