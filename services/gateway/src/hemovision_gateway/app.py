"""create_app(settings, clients=None): the FastAPI application."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from hemovision_gateway.batches.processing import OnBehalfOfTokens
from hemovision_telemetry import HttpTracingMiddleware
from hemovision_telemetry.tracing import exporting
from hemovision_telemetry.metrics import HttpMetricsMiddleware, metrics_enabled
from hemovision_gateway.clients import Clients
from hemovision_gateway.context import GatewayContext
from hemovision_gateway.errors import COMMON_ERROR_RESPONSES, install_error_handlers
from hemovision_gateway.limits import BodyLimitMiddleware
from hemovision_gateway.openapi_links import add_links, operation_id
from hemovision_gateway.pipeline import Coalescing
from hemovision_gateway.query_params import refuse_nul
from hemovision_gateway.routes import accounts, adaptations, admin, batches, drift, health, models, predictions, rollouts, ui
from hemovision_gateway.security import RequestOriginMiddleware, SecurityHeadersMiddleware
from hemovision_gateway.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """Classify single peripheral-blood-cell images into the eight PBC classes, explain
them (Grad-CAM), keep an organization-scoped history, review, batches, reports and models.

Authenticate with `Authorization: Bearer <access token>` (from `/api/v1/auth/login`) or
`Authorization: Bearer hv_...` (an API key). Errors are `{"error": {"code", "message"}}`.
For research use only."""


SWAGGER_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>HemoVision API</title><link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static-docs/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="/static-docs/swagger-ui-bundle.js"></script>
<script src="/static-docs/swagger-init.js"></script></body></html>
"""


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their files served from here, not from a CDN, and no
    inline script: Swagger UI starts from static/swagger-init.js (security.DOCS_CSP)."""
    import html

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html
    from fastapi.responses import FileResponse, HTMLResponse

    from hemovision_gateway.routes.ui import STATIC_DIR

    @app.get("/static-docs/swagger-init.js", include_in_schema=False)
    async def swagger_init() -> FileResponse:
        return FileResponse(STATIC_DIR / "swagger-init.js", media_type="text/javascript")

    files = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/static-docs", StaticFiles(directory=files), name="static-docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(SWAGGER_HTML.format(openapi_url=html.escape(app.openapi_url or "/openapi.json")))

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
        if redis is None:
            from hemovision_tokens import redis_pool

            # A pool that waits (bounded) when every connection is busy: a burst beyond the pool size
            # queues for milliseconds instead of failing as if Redis were down (docs/reliability.md).
            r = redis_pool.connect(settings.redis_url, max_connections=settings.redis_max_connections,
                                   pool_timeout_s=settings.redis_pool_timeout_s, socket_timeout=5.0,
                                   socket_connect_timeout=2.0)
        else:
            r = redis
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
                  # FastAPI's own request span always; its per-stage spans only when exported (~75 µs)
                  telemetry={"operation_spans": exporting()},
                  generate_unique_id_function=operation_id,  # operationId = the route function's name
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
    # Added last = runs first: the real client and TLS are known before anything else, and every
    # answer (413s from the body limit included) gets the security headers.
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestOriginMiddleware, trusted_proxies=settings.trusted_proxies)
    if metrics_enabled():
        app.add_middleware(HttpMetricsMiddleware)  # every answer counted, 413s and 429s included
    app.add_middleware(HttpTracingMiddleware)  # outermost: traceresponse / X-Trace-Id (the span is FastAPI's own)
    api = {"responses": COMMON_ERROR_RESPONSES, "dependencies": [Depends(refuse_nul)]}
    for module in (accounts, predictions, batches, models, rollouts, adaptations, admin, drift):
        app.include_router(module.router, **api)
    app.include_router(accounts.admin_router, **api)
    app.include_router(health.router)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(directory=ui.STATIC_DIR), name="static")
    install_links(app)
    return app


def install_links(app: FastAPI) -> None:
    """The OpenAPI document gets its Link Objects (openapi_links.LINKS) when first built; a link to
    a missing operation or parameter fails there, not in a client."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            try:
                app.openapi_schema = add_links(build())
            except Exception:
                app.openapi_schema = None  # build() cached the link-less document: never serve it
                raise
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
