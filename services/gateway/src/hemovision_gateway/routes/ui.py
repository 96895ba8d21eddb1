"""The browser UI: one static page app (plain JS + CSS, no CDN, no build step)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from hemovision_contracts import CLASS_NAMES

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)

# Entry points the SPA handles itself; e-mail links land on the last three.
UI_PATHS = ["/", "/app", "/verify-email", "/reset-password", "/accept-invitation", "/accept-invite"]


def _index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


for _path in UI_PATHS:
    router.add_api_route(_path, _index, methods=["GET"], include_in_schema=False)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/ui/classes.js", include_in_schema=False)
async def class_names_script() -> Response:
    """The platform's label set for the UI's class filter, from its one definition."""
    return Response(f"window.HV_CLASS_NAMES = {json.dumps(list(CLASS_NAMES))};\n",
                    media_type="text/javascript", headers={"Cache-Control": "no-cache"})
