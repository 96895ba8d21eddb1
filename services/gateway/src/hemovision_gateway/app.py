"""create_app(settings, clients=None): the FastAPI application."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hemovision_gateway.batches.processing import OnBehalfOfTokens
from hemovision_gateway.clients import Clients
from hemovision_gateway.context import GatewayContext
from hemovision_gateway.errors import COMMON_ERROR_RESPONSES, install_error_handlers
from hemovision_gateway.limits import BodyLimitMiddleware
from hemovision_gateway.pipeline import Coalescing
from hemovision_gateway.routes import accounts, adaptations, admin, batches, health, models, predictions, ui
from hemovision_gateway.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """Classify single peripheral-blood-cell images into the eight PBC classes, explain
them (Grad-CAM), keep an organization-scoped history, review, batches, reports and models.

Authenticate with `Authorization: Bearer <access token>` (from `/api/v1/auth/login`) or
`Authorization: Bearer hv_...` (an API key). Errors are `{"error": {"code", "message"}}`.
For research use only."""


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their files served from here, not from a CDN."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse

    files = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/static-docs", StaticFiles(directory=files), name="static-docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="HemoVision API",
                                   swagger_js_url="/static-docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static-docs/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg",
                                   oauth2_redirect_url="/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title="HemoVision API",
                              redoc_js_url="/static-docs/redoc.standalone.js",
                              redoc_favicon_url="/static/favicon.svg", with_google_fonts=False)


def create_app(settings: Settings | None = None, clients: Clients | None = None, *, verifier: Any = None,
               redis: aioredis.Redis | None = None) -> FastAPI:
    """Builds the app. Without `clients`, one channel per peer is opened at startup and closed at
    shutdown; without `verifier`, tokens are verified with keys fetched from auth."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own_clients = clients is None
        own_redis = redis is None
        c = clients or Clients.connect(settings)
        r = redis or aioredis.Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
        v = verifier
        own_verifier = v is None
        if v is None:
            from hemovision_tokens import AuthKeyProvider, TokenVerifier

            v = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=None, redis=r)
        app.state.ctx = GatewayContext(settings=settings, clients=c, redis=r, verifier=v,
                                       coalescing=Coalescing.create(c, settings))
        app.state.obo_tokens = OnBehalfOfTokens()
        app.state.background = set()
        app.state.celery = None
        if not settings.batch_inline:
            from hemovision_gateway.batches.worker import make_celery

            app.state.celery = make_celery(settings)
            if settings.batch_sweep_interval_s > 0 and settings.broker_url.startswith(("redis://", "rediss://")):
                from hemovision_gateway.batches.sweeper import run_forever

                sweeper = asyncio.create_task(run_forever(settings, app.state.celery))
                app.state.background.add(sweeper)
                sweeper.add_done_callback(app.state.background.discard)
        try:
            yield
        finally:
            for task in list(app.state.background):
                task.cancel()
            if own_verifier:
                close = getattr(v.key_provider, "close", None)
                if close:
                    await close()
            if own_clients:
                await c.close()
            if own_redis:
                await r.aclose()

    app = FastAPI(title="HemoVision API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  openapi_tags=[{"name": n} for n in ("accounts", "predictions", "batches", "models", "adaptation",
                                                      "admin", "health")])
    install_error_handlers(app)
    install_docs(app)

    def limit_for(path: str) -> int:
        if path.startswith("/api/v1/batches"):
            return settings.max_batch_bytes + 1024 * 1024
        if path.startswith("/api/v1/predictions"):
            return settings.max_image_bytes + 256 * 1024  # the image plus form fields
        return 1024 * 1024

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    for module in (accounts, predictions, batches, models, adaptations, admin):
        app.include_router(module.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(health.router)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(directory=ui.STATIC_DIR), name="static")
    return app
