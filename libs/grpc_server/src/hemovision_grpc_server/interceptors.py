"""One place that turns exceptions into gRPC statuses.

A ServiceError becomes its own code and message. A grpc.aio.AioRpcError from a
downstream call keeps its code (UNAVAILABLE stays UNAVAILABLE, so callers can
retry) with the downstream message. Anything else becomes INTERNAL "internal
error", logged with its traceback and never leaked to the caller.

The same door refuses a request whose text holds a NUL character (text_fields.py)
before the servicer sees it: INVALID_ARGUMENT, naming the field.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc.aio import AioRpcError, ServerInterceptor
from opentelemetry import context as otel_context
from opentelemetry import trace

from hemovision_grpc_server.errors import ServiceError
from hemovision_grpc_server.text_fields import nul_field

log = logging.getLogger(__name__)

_PASSTHROUGH = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(exc, ServiceError):
        await context.abort(exc.code, exc.message)
    if isinstance(exc, AioRpcError) and exc.code() in _PASSTHROUGH:
        await context.abort(exc.code(), exc.details() or exc.code().name.lower())
    log.exception("unhandled error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


async def _refuse_nul(request: Any, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, Message) and (field := nul_field(request)):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{field} contains a NUL character (U+0000), which text cannot hold")


def _detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises this to end the RPC; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError) if hasattr(grpc.aio, "AbortError") else False


Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _enter_trace(metadata: Any, method: str) -> object:
    """Makes the caller's W3C trace context (its `traceparent`) current, ids only; without one a
    new trace starts here. Returns the token for opentelemetry.context.detach()."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            m = _TRACEPARENT.fullmatch(value)
            if m and m[1] != "0" * 32 and m[2] != "0" * 16:
                parent = trace.NonRecordingSpan(trace.SpanContext(
                    int(m[1], 16), int(m[2], 16), is_remote=True, trace_flags=trace.TraceFlags(int(m[3], 16))))
                return otel_context.attach(trace.set_span_in_context(parent))
            break
    span = trace.get_tracer("hemovision_grpc_server").start_span(method, kind=trace.SpanKind.SERVER)
    return otel_context.attach(trace.set_span_in_context(span))


def rewrap_handler(handler: grpc.RpcMethodHandler, wrap_unary: Wrapper, wrap_stream: Wrapper) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behaviour is wrapped: `wrap_unary` for unary-response
    kinds, `wrap_stream` for streaming-response kinds. Shared by every interceptor
    that needs to run code around a servicer method."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap_unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer
        )
    return handler


class ErrorInterceptor(ServerInterceptor):
    """Maps exceptions raised by servicers to statuses, for all four RPC kinds.

    With `trace_context` (create_server sets it when no spans are exported) it also continues the
    caller's trace while the servicer runs, ids only, so log lines and onward calls carry the
    caller's trace id; OpenTelemetry's aio server interceptor does that (and records a span) when
    spans are exported, and costs ~0.1 ms of CPU per call even when nothing is recorded."""

    def __init__(self, *, trace_context: bool = False) -> None:
        self.trace_context = trace_context

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        traced = self.trace_context and not method.startswith(("/grpc.health.", "/grpc.reflection."))
        metadata = handler_call_details.invocation_metadata

        def wrap_unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                token = _enter_trace(metadata, method) if traced else None
                try:
                    await _refuse_nul(request_or_iterator, context)
                    return await fn(request_or_iterator, context)
                except Exception as exc:  # noqa: BLE001 - this is the one mapping point
                    if _is_abort(exc):
                        raise
                    await _abort_for(exc, context, method)
                finally:
                    if token is not None:
                        _detach(token)

            return wrapped

        def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
            async def wrapped(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                token = _enter_trace(metadata, method) if traced else None
                try:
                    await _refuse_nul(request_or_iterator, context)
                    result = fn(request_or_iterator, context)
                    if inspect.isawaitable(result):
                        # A streaming handler that writes with context.write() (grpc_health's Watch).
                        await result
                        return
                    async for item in result:
                        yield item
                except Exception as exc:  # noqa: BLE001
                    if _is_abort(exc):
                        raise
                    await _abort_for(exc, context, method)
                finally:
                    if token is not None:
                        _detach(token)

            return wrapped

        return rewrap_handler(handler, wrap_unary, wrap_stream)

