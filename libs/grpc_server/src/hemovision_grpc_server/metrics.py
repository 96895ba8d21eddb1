"""RED metrics for every RPC a HemoVision server handles (series defined in hemovision_telemetry)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import ServerInterceptor

from hemovision_grpc_server.interceptors import rewrap_handler
from hemovision_telemetry.metrics import GRPC_HANDLED, GRPC_IN_FLIGHT, GRPC_SECONDS


def _split(method: str) -> tuple[str, str]:
    """'/hemovision.auth.v1.AuthService/Login' -> ('hemovision.auth.v1.AuthService', 'Login')."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def _code(context: grpc.aio.ServicerContext, failed: bool) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(ServerInterceptor):
    """Counts every RPC by final status code and times it; outermost, so it sees the status the
    ErrorInterceptor chose. Health checks are counted too (they are RPCs a probe depends on)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split(handler_call_details.method)
        in_flight = GRPC_IN_FLIGHT.labels(service)
        seconds = GRPC_SECONDS.labels(service, method)

        def record(context: grpc.aio.ServicerContext, start: float, failed: bool) -> None:
            in_flight.dec()
            seconds.observe(time.perf_counter() - start)
            GRPC_HANDLED.labels(service, method, _code(context, failed)).inc()

        def wrap_unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                start, failed = time.perf_counter(), True
                in_flight.inc()
                try:
                    result = await fn(request_or_iterator, context)
                    failed = False
                    return result
                finally:
                    record(context, start, failed)

            return wrapped

        def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
            async def wrapped(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                start, failed = time.perf_counter(), True
                in_flight.inc()
                try:
                    async for item in fn(request_or_iterator, context):
                        yield item
                    failed = False
                finally:
                    record(context, start, failed)

            return wrapped

        return rewrap_handler(handler, wrap_unary, wrap_stream)
