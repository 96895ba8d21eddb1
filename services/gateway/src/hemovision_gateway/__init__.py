"""HemoVision gateway: REST /api/v1, the browser UI, authentication and orchestration."""

from hemovision_gateway.app import create_app
from hemovision_gateway.settings import Settings

__all__ = ["Settings", "create_app"]
