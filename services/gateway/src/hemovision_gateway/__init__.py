"""HemoVision gateway: REST /api/v1, the browser UI, authentication and orchestration."""

from hemovision_gateway.app import create_app
from hemovision_gateway.settings import Settings


def static_dir_files() -> list[str]:
    """The files of the browser UI (served under /static)."""
    from hemovision_gateway.routes.ui import STATIC_DIR

    return sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file())


__all__ = ["Settings", "create_app", "static_dir_files"]
