"""The one lifecycle of every HemoVision server: Server (what every service's create_server returns),
serve() (until SIGTERM, then drain and close) and run() (the `serve` command of every service).

    async def create_server(settings, **deps) -> Server[AuthService]   # services/<svc>/server.py; tests: port 0
    run("auth", Settings(), create_server)                              # services/<svc>/__main__.py: `serve`
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

from hemovision_grpc_server.server import RunningServer
from hemovision_grpc_server.settings import GrpcServiceSettings
from hemovision_grpc_server.tls import TlsError

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[object] | object]
S = TypeVar("S", bound=GrpcServiceSettings)
T = TypeVar("T")


class Server(Generic[T]):
    """A started gRPC server (`running`), the service layer behind it (`service`: AuthService, ...;
    tests reach into it) and what the server owns beside it: background tasks and close hooks
    (pools, channels, verifiers). A service with more parts to show subclasses it (inference:
    `.router`; the model server: its REST port).

    stop(grace): health NOT_SERVING (readiness callbacks cannot flip it back), in-flight RPCs get
    `grace` seconds, then close(): tasks cancelled, close hooks run newest first."""

    def __init__(
        self,
        running: RunningServer,
        *,
        service: T | None = None,
        closers: Iterable[Closer] = (),
        tasks: Iterable[asyncio.Task] = (),
    ) -> None:
        self.running = running
        self.service = service
        self._closers: list[Closer] = list(closers)
        self._tasks: list[asyncio.Task] = list(tasks)

    @property
    def port(self) -> int:
        return self.running.port

    def on_close(self, closer: Closer) -> None:
        """Adds a hook that close() runs (after the hooks added later: newest first, like an ExitStack)."""
        self._closers.append(closer)

    def start_task(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task:
        """A background task that lives as long as the service; close() cancels it first."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def close(self) -> None:
        """Cancels the background tasks, then runs the close hooks newest first. A hook that fails
        is logged and the others still run. Safe to call twice (the second call does nothing)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - shutdown releases everything it can
                log.exception("close hook failed", extra={"hook": getattr(closer, "__qualname__", repr(closer))})

    async def stop(self, grace: float = 0.0) -> None:
        """Graceful stop: NOT_SERVING, `grace` seconds for in-flight RPCs, then close()."""
        await self.running.stop(grace)
        await self.close()


async def serve(server: Server, *, grace: float) -> None:
    """Runs `server` until SIGTERM/SIGINT (or until its server ends), then stops it gracefully:
    health NOT_SERVING first (load balancers drain), `grace` seconds for in-flight RPCs, then its
    close hooks."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving", extra={"port": server.port, "services": server.running.service_names})
    waiter = asyncio.create_task(server.running.server.wait_for_termination())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down", extra={"grace_seconds": grace})
        await server.stop(grace)
    finally:
        waiter.cancel()
        stopper.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")


def _metrics_port(name: str, settings: GrpcServiceSettings) -> int:
    """The port the settings ask for, else the topology's; a server the topology gives none
    (or whose metrics live elsewhere, as the model server's on its REST port) serves none."""
    if settings.metrics_port is not None:
        return settings.metrics_port
    from hemovision_contracts.topology import SERVERS

    server = SERVERS.get(name)
    return server.metrics_port if server is not None and server.health_service.startswith("hemovision.") else -1


def run(name: str, settings: S, create: Callable[[S], Awaitable[Server]]) -> None:
    """The `serve` command of every service: JSON logs and tracing under `name`, then
    `create(settings)` and serve() it until SIGTERM with `settings.grace_seconds`. Unusable TLS
    settings (HV_TLS_*) end it at once with exit status 2 and one line that names the setting."""
    from hemovision_telemetry import configure_logging, configure_tracing
    from hemovision_telemetry.metrics import serve_metrics

    configure_logging(name, settings.log_level)
    configure_tracing(name)

    async def main() -> None:
        metrics = serve_metrics(_metrics_port(name, settings), host=settings.host)
        try:
            await serve(await create(settings), grace=settings.grace_seconds)
        finally:
            if metrics is not None:
                metrics.close()

    try:
        asyncio.run(main())
    except TlsError as exc:
        log.error("cannot start: %s", exc)
        print(f"{name}: cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
