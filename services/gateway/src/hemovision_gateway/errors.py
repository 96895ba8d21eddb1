"""The one place where failures become HTTP answers.

Every error body is `{"error": {"code": "<snake_case>", "message": "<human>", "trace_id": "<32 hex>"}}`
(trace_id: the request's trace, also in the `X-Trace-Id` / `traceresponse` headers).
gRPC status codes from the services map to HTTP through GRPC_TO_HTTP; an image's rejection
reason (preprocess's PreprocessError, passed on per image by inference.AnalyzeImages) maps
through PREPROCESS_REASON_TO_HTTP.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hemovision_grpc_server import ServiceError
from hemovision_telemetry import current_trace_id
from hemovision_telemetry.tracing import TRACE_SCOPE_KEY

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"], description="stable snake_case machine code")
    message: str = Field(examples=["prediction 0b6a… not found"], description="for a person")
    trace_id: str | None = Field(None, examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
                                 description="the request's trace id (also in the X-Trace-Id header): quote it "
                                             "when reporting a problem")


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: ErrorDetail


def _err(description: str) -> dict:
    return {"model": ErrorBody, "description": description}


# Documented on every route (OpenAPI); the same body for all of them.
COMMON_ERROR_RESPONSES: dict[int | str, dict] = {
    400: _err("the body cannot be parsed (not JSON, or a broken multipart form)"),
    401: _err("missing, invalid, expired or revoked token / API key"),
    403: _err("the caller's role does not allow this"),
    404: _err("not found (also another organization's id)"),
    409: _err("conflicts with the current state (already exists, failed precondition); any service call can "
              "answer it through GRPC_TO_HTTP"),
    422: _err("the request failed validation"),
    429: _err("rate limited; see Retry-After"),
    503: _err("a service this request needs is unavailable; see Retry-After"),
}


@dataclass(frozen=True)
class HttpStatus:
    status: int
    code: str
    retry_after: int | None = None


# gRPC status -> HTTP status, error code, Retry-After. The single mapping table.
GRPC_TO_HTTP: dict[grpc.StatusCode, HttpStatus] = {
    grpc.StatusCode.INVALID_ARGUMENT: HttpStatus(422, "invalid_argument"),
    grpc.StatusCode.OUT_OF_RANGE: HttpStatus(422, "out_of_range"),
    grpc.StatusCode.NOT_FOUND: HttpStatus(404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: HttpStatus(409, "already_exists"),
    grpc.StatusCode.FAILED_PRECONDITION: HttpStatus(409, "failed_precondition"),
    grpc.StatusCode.ABORTED: HttpStatus(409, "aborted"),
    grpc.StatusCode.UNAUTHENTICATED: HttpStatus(401, "unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: HttpStatus(403, "permission_denied"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpStatus(429, "resource_exhausted", retry_after=5),
    grpc.StatusCode.UNAVAILABLE: HttpStatus(503, "service_unavailable", retry_after=5),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpStatus(504, "deadline_exceeded"),
    grpc.StatusCode.CANCELLED: HttpStatus(503, "cancelled", retry_after=1),
    grpc.StatusCode.UNIMPLEMENTED: HttpStatus(501, "not_implemented"),
    grpc.StatusCode.INTERNAL: HttpStatus(502, "upstream_error"),
    grpc.StatusCode.UNKNOWN: HttpStatus(502, "upstream_error"),
    grpc.StatusCode.DATA_LOSS: HttpStatus(502, "upstream_error"),
}

# The pixel pipeline's rejection reasons (hemovision_contracts.image_formats.REJECTION_REASONS,
# tests check the table covers them all) -> HTTP status.
PREPROCESS_REASON_TO_HTTP: dict[str, int] = {
    "empty": 422,
    "truncated": 422,
    "corrupt": 422,
    "polyglot": 422,
    "multi_frame": 422,
    "too_many_pixels": 413,
    "too_large": 413,
    "not_an_image": 415,
    "unsupported_type": 415,
}

class ApiError(Exception):
    """An HTTP error with a stable machine code and a message a person understands."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str, trace_id: str | None = None) -> dict:
    """The error body; `trace_id` defaults to the active request's (left out only where tracing is
    not configured at all: tests of the bare app)."""
    trace_id = trace_id or current_trace_id()
    detail = {"code": code, "message": message}
    if trace_id:
        detail["trace_id"] = trace_id
    return {"error": detail}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


RETRY_AFTER_METADATA = "retry-after"  # trailing metadata (whole seconds) a service may send with RESOURCE_EXHAUSTED
MAX_RETRY_AFTER_S = 24 * 3600


def retry_after_from(exc: grpc.aio.AioRpcError) -> int | None:
    """The `retry-after` seconds a service put in the call's trailing metadata (auth's sign-in
    lockout does), or None when absent or not a sane whole number."""
    try:
        trailing = exc.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - a call that never reached the server has none
        return None
    for key, value in trailing:
        if key.lower() == RETRY_AFTER_METADATA:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            try:
                seconds = int(float(text.strip()))
            except ValueError:
                return None
            return min(max(seconds, 1), MAX_RETRY_AFTER_S)
    return None


def api_error_from_grpc(exc: grpc.aio.AioRpcError) -> ApiError:
    """Maps a failed downstream call. Messages of 5xx-class codes are not leaked. A `retry-after`
    in the trailing metadata (e.g. a sign-in lockout) becomes the Retry-After header."""
    mapped = GRPC_TO_HTTP.get(exc.code(), HttpStatus(502, "upstream_error"))
    details = exc.details() or ""
    if mapped.status >= 500 and mapped.status not in (503, 504):
        message = "an internal service failed; try again later"
    elif mapped.status == 503:
        message = details or "a service this request needs is unavailable; try again shortly"
    elif mapped.status == 504:
        message = "a service this request needs did not answer in time"
    else:
        message = details or mapped.code.replace("_", " ")
    retry_after = (retry_after_from(exc) if mapped.status in (429, 503) else None) or mapped.retry_after
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return ApiError(mapped.status, mapped.code, message, headers=headers)


def api_error_from_service_error(exc: ServiceError) -> ApiError:
    mapped = GRPC_TO_HTTP.get(exc.code, HttpStatus(500, "internal_error"))
    headers = {"Retry-After": str(mapped.retry_after)} if mapped.retry_after else None
    return ApiError(mapped.status, mapped.code, exc.message, headers=headers)


def api_error_from_preprocess_item(error) -> ApiError:
    """One image's PreprocessError (an AnalyzeImages result's `error`: preprocess rejected the image
    and inference passed the reason on), mapped by its reason to 413 / 415 / 422."""
    if error.reason == "invalid_request":
        return ApiError(422, "invalid_argument", error.message or "invalid request")
    return ApiError(PREPROCESS_REASON_TO_HTTP.get(error.reason, 422), error.reason or "invalid_image",
                    error.message or "the image could not be read")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _grpc_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        err = api_error_from_grpc(exc)
        if err.status >= 500:
            log.warning(
                "downstream call failed",
                extra={"path": request.url.path, "grpc_code": exc.code().name, "details": exc.details()},
            )
        return error_response(err.status, err.code, err.message, err.headers)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        err = api_error_from_service_error(exc)
        return error_response(err.status, err.code, err.message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header"))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return error_response(422, "validation_error", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 403: "permission_denied",
                 413: "payload_too_large", 415: "unsupported_media_type", 400: "bad_request"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette's Allow names only the first route that matched the path; RFC 9110 wants
            # every method the resource supports, e.g. GET and DELETE on one prediction
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this outside every middleware, the request's span already ended: its
        # trace headers wait in the scope (hemovision_telemetry.HttpTracingMiddleware).
        trace_headers = request.scope.get(TRACE_SCOPE_KEY) or {}
        log.exception("unhandled error", extra={"path": request.url.path,
                                                "trace_id": trace_headers.get("x-trace-id")})
        return JSONResponse(error_body("internal_error", "internal error", trace_headers.get("x-trace-id")),
                            status_code=500, headers=trace_headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI contract gives this request's path (HEAD with GET, as Starlette
    serves it). Read from the schema, not the router: FastAPI's included routers are internal."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {m.upper() for m in operations if m in ("get", "put", "post", "delete", "patch", "options")}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
