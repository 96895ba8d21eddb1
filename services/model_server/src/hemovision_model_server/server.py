"""create_model_server(settings) -> RunningModelServer (a hemovision_grpc_server.Server): gRPC (8500) and
REST (8501) in one event loop, for tests (port 0) and for `python -m hemovision_model_server`
(hemovision_grpc_server.run)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import uvicorn
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

import hemovision_grpc_server
from hemovision_model_server.batching import BatchingOptions, BatchScheduler
from hemovision_model_server.grpc_api import ModelServicer, PredictionServicer
from hemovision_model_server.manager import ModelEntry, ModelManager, VersionPolicy
from hemovision_model_server.metrics import ModelServerMetrics
from hemovision_model_server.predict import Predictor
from hemovision_model_server.rest_api import create_rest_app
from hemovision_model_server.settings import ModelServerSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = ["tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"]


def configure_tensorflow(settings: ModelServerSettings) -> None:
    """Small TF thread pools for 2 cores (must run before TF executes its first op)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
    except RuntimeError:
        pass  # already initialised (several servers in one test process)


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # hemovision_grpc_server.serve() owns SIGTERM/SIGINT
        yield


class RunningModelServer(hemovision_grpc_server.Server):
    """The gRPC server (`running`), the REST server beside it (`rest_port`, None when disabled) and
    the model manager and batcher; stop() drains gRPC, then stops REST, the manager, the batcher."""

    def __init__(
        self,
        running: hemovision_grpc_server.RunningServer,
        *,
        manager: ModelManager,
        batcher: BatchScheduler,
        metrics: ModelServerMetrics,
    ) -> None:
        super().__init__(running, closers=[batcher.close, manager.stop])  # newest first: manager, batcher
        self.rest_port: int | None = None
        self.manager = manager
        self.batcher = batcher
        self.metrics = metrics

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    async def start_rest(self, app, *, host: str, port: int) -> None:
        """Starts the REST server on host:port (0 = a free port) in this event loop; close() stops it
        before the manager and the batcher."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, http="httptools")
        rest = _Uvicorn(config)
        task = asyncio.create_task(rest.serve(sockets=[sock]), name="model-server-rest")
        self.rest_port = sock.getsockname()[1]

        async def stop_rest() -> None:
            rest.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=5)

        self.on_close(stop_rest)
        while not rest.started and not task.done():
            await asyncio.sleep(0.01)


async def create_model_server(settings: ModelServerSettings) -> RunningModelServer:
    configure_tensorflow(settings)
    metrics = ModelServerMetrics()
    model_base = Path(settings.model_base)
    batcher = BatchScheduler(
        BatchingOptions(
            max_batch_size=settings.max_batch_size,
            batch_timeout_micros=settings.batch_timeout_micros,
            num_batch_threads=settings.num_batch_threads,
            max_enqueued_batches=settings.max_enqueued_batches,
            allowed_batch_sizes=settings.batch_sizes() if settings.enable_batching else (),
            dispatch_when_idle=settings.dispatch_when_idle,
        ),
        enabled=settings.enable_batching,
        on_batch=lambda servable, sig, rows, waited: (
            metrics.batch_size.labels(servable.name, str(servable.version), sig).observe(rows),
            metrics.queue_latency.labels(servable.name, sig).observe(waited),
        ),
    )
    policy = VersionPolicy("all") if settings.version_policy == "all" else VersionPolicy("latest", settings.num_versions)
    manager = ModelManager(
        models=[ModelEntry(settings.model_name, model_base / settings.model_name, policy)],
        batcher=batcher,
        metrics=metrics,
        poll_interval_s=settings.poll_interval_s,
        drain_seconds=settings.drain_seconds,
        retry_initial_s=settings.load_retry_initial_s,
        retry_max_s=settings.load_retry_max_s,
        memory_factor=settings.memory_factor,
        memory_reserve_mb=settings.memory_reserve_mb,
        warmup=settings.warmup,
        warmup_batch_sizes=settings.batch_sizes() if settings.enable_batching else (),
        load_nice=settings.load_nice,
    )
    predictor = Predictor(manager, batcher, metrics)

    def register(server) -> None:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(predictor), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager, model_base), server)

    running = await hemovision_grpc_server.create_server(
        settings, service_names=SERVICE_NAMES, register=register, serving=False
    )
    result = RunningModelServer(running, manager=manager, batcher=batcher, metrics=metrics)

    serving_now = {"value": False}

    def on_change() -> None:
        ready = manager.any_available()
        if ready != serving_now["value"]:
            serving_now["value"] = ready
            asyncio.get_running_loop().create_task(running.set_serving(ready))

    manager.on_change.append(on_change)

    if settings.rest_port >= 0:
        app = create_rest_app(predictor, metrics.registry)
        await result.start_rest(app, host=settings.host, port=settings.rest_port)
    await manager.start()
    log.info(
        "model server started",
        extra={"grpc_port": running.port, "rest_port": result.rest_port, "model_base": str(model_base)},
    )
    return result
