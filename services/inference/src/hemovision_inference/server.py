"""create_server(settings, ...) -> InferenceServer (a hemovision_grpc_server.Server), for tests (port 0)
and for `serve` (hemovision_grpc_server.run)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import hemovision_grpc_server
from hemovision.inference.v1 import inference_pb2_grpc
from hemovision_inference.analysis import ImageAnalyzer
from hemovision_inference.model_client import ModelServerClient
from hemovision_inference.preprocess_client import PreprocessClient
from hemovision_inference.registry import RegistryClient
from hemovision_inference.rollout import RolloutRecorder
from hemovision_inference.service import InferenceService, ModelRouter
from hemovision_inference.servicer import InferenceServicer
from hemovision_inference.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "hemovision.inference.v1.InferenceService"


class InferenceServer(hemovision_grpc_server.Server[InferenceService]):
    """The running server, its InferenceService (`service`) and its parts (router, model-server
    client, registry, preprocess client, verifier); stop() also stops the version reconciler and
    closes the channels."""

    def __init__(
        self,
        running: hemovision_grpc_server.RunningServer,
        *,
        service: InferenceService,
        router: ModelRouter,
        model_server: ModelServerClient,
        registry: RegistryClient | None,
        preprocess: PreprocessClient | None,
        verifier: object | None,
    ) -> None:
        # close() runs these newest first: the router (and its reconciler) before the channels it uses
        closers = [
            getattr(verifier, "close", None),
            registry.close if registry is not None else None,
            preprocess.close if preprocess is not None else None,
            model_server.close,
            router.stop,
            service.shadow.close,
        ]
        super().__init__(running, service=service, closers=[c for c in closers if c is not None])
        self.router = router
        self.model_server = model_server
        self.registry = registry
        self.preprocess = preprocess
        self.verifier = verifier


async def create_server(
    settings: Settings,
    *,
    verifier=None,
    registry: RegistryClient | None | bool = True,
) -> InferenceServer:
    """Starts the InferenceService (NOT_SERVING until a model is AVAILABLE and warm).

    `verifier`: a hemovision_tokens.TokenVerifier; None builds one from settings (auth
    at settings.auth_addr, revocation in settings.redis_url) unless settings.require_auth
    is false. `registry=False` runs without the training registry (highest AVAILABLE version).
    """
    interceptors = []
    if verifier is None and settings.require_auth:
        from hemovision_tokens import AuthKeyProvider, TokenVerifier

        verifier = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=settings.redis_url)
    if verifier is not None:
        from hemovision_tokens import TokenInterceptor

        interceptors.append(TokenInterceptor(verifier, public_methods=set()))
    model_server = ModelServerClient(
        settings.model_server_addr,
        predict_timeout_s=settings.predict_timeout_s,
        control_timeout_s=settings.control_timeout_s,
        base_path=settings.model_server_base_path,
    )
    registry_client = (
        RegistryClient(settings.training_addr, timeout_s=settings.control_timeout_s) if registry is True else (registry or None)
    )
    running: hemovision_grpc_server.RunningServer | None = None

    async def on_ready(ready: bool) -> None:
        # the router reports readiness only after router.start(), when `running` is set
        if running is not None:
            await running.set_serving(ready)  # stays NOT_SERVING once stopping

    router = ModelRouter(
        model_name=settings.model_name,
        model_server=model_server,
        registry=registry_client,
        model_base=Path(settings.model_base),
        drain_seconds=settings.drain_seconds,
        reconcile_interval_s=settings.reconcile_interval_s,
        load_timeout_s=settings.load_timeout_s,
        on_ready=on_ready,
        max_org_versions=settings.max_org_versions,
        org_idle_s=settings.org_idle_s,
        org_load_timeout_s=settings.org_load_timeout_s,
    )
    input_reference = None
    if settings.input_check:
        from hemovision_inference.input_check import InputReference

        input_reference = InputReference.load()
    recorder = RolloutRecorder(settings.redis_url or None, flush_s=settings.rollout_stats_flush_s)
    service = InferenceService(
        router=router,
        model_server=model_server,
        model_name=settings.model_name,
        max_images=settings.max_images,
        input_reference=input_reference,
        recorder=recorder,
        shadow_max_inflight=settings.shadow_max_inflight,
    )
    preprocess = (PreprocessClient(settings.preprocess_addr, timeout_s=settings.preprocess_timeout_s)
                  if settings.preprocess_addr else None)
    analyzer = ImageAnalyzer(service, preprocess, max_images=settings.max_images) if preprocess else None
    running = await hemovision_grpc_server.create_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(
            InferenceServicer(service, analyzer), s),
        interceptors=interceptors,
        serving=False,
    )
    router.start()
    server = InferenceServer(running, service=service, router=router, model_server=model_server,
                             registry=registry_client, preprocess=preprocess, verifier=verifier)
    if router.orgs is not None and settings.redis_url:
        server.start_task(follow_organization_versions(settings.redis_url, router.orgs, router),
                          name="organization-version-events")
    if settings.redis_url:
        server.start_task(recorder.run(), name="rollout-statistics")
    return server


async def follow_organization_versions(redis_url: str, orgs, router=None, *, retry_s: float = 5.0) -> None:
    """Pre-loads each organization version the training service announces as activated, and
    reconciles at once when a rollout starts or ends (router.nudge()). Best effort: a missed event
    only means that organization's next request waits for the load, or the rollout is seen at the
    next registry poll."""
    import redis.asyncio as aioredis

    from hemovision_contracts import ORGANIZATION_VERSION_CHANNEL, parse_organization_version_event
    from hemovision_contracts.rollouts import ROLLOUT_CHANNEL

    client = aioredis.Redis.from_url(redis_url)
    logged = False
    try:
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(ORGANIZATION_VERSION_CHANNEL, ROLLOUT_CHANNEL)
                    logged = False
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        channel = message.get("channel")
                        if channel in (ROLLOUT_CHANNEL, ROLLOUT_CHANNEL.encode()):
                            if router is not None:
                                router.nudge()
                            continue
                        try:
                            org, version = parse_organization_version_event(message["data"])
                        except ValueError as exc:
                            log.warning("ignored a malformed organization-version event", extra={"error": str(exc)})
                            continue
                        orgs.preload(org, version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: try again; requests still load on demand
                if not logged:
                    log.warning("organization-version events unavailable; versions load on first request",
                                extra={"error": str(exc)[:300]})
                    logged = True
                await asyncio.sleep(retry_s)
    finally:
        await client.aclose()
