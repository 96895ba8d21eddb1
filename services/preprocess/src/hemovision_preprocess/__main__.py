"""`python -m hemovision_preprocess serve`: the preprocess gRPC service."""

from __future__ import annotations

import argparse
import asyncio

from hemovision_grpc_server import serve
from hemovision_preprocess.server import create_server
from hemovision_preprocess.settings import Settings
from hemovision_telemetry import configure_logging, configure_tracing


async def _serve(settings: Settings) -> None:
    verifier = None
    if settings.require_token:
        from hemovision_tokens import AuthKeyProvider, TokenVerifier

        verifier = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=settings.redis_url)
    running = await create_server(settings, verifier=verifier)
    await serve(running, grace=settings.grace_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(prog="hemovision-preprocess")
    parser.add_argument("command", choices=["serve"], nargs="?", default="serve")
    parser.parse_args()
    settings = Settings()
    configure_logging("preprocess", settings.log_level)
    configure_tracing("preprocess")
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
