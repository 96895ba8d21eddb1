"""Facts every HemoVision service shares and none owns, defined once."""

from .models import ORGANIZATION_VERSION_CHANNEL, organization_version_event, parse_organization_version_event
from .review import OUT_OF_DISTRIBUTION_REASONS, REVIEW_REASONS, confidence_holds

__all__ = ["ORGANIZATION_VERSION_CHANNEL", "OUT_OF_DISTRIBUTION_REASONS", "REVIEW_REASONS", "confidence_holds",
           "organization_version_event", "parse_organization_version_event"]
