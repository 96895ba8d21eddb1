"""`python -m hemovision_reports [serve]` (console script hemovision-reports): the gRPC
server on HV_REPORTS_PORT (default 50055) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import sys

from hemovision_telemetry import configure_logging, configure_tracing

from hemovision_reports.settings import Settings


async def _serve(settings: Settings) -> None:
    from hemovision_grpc_server import serve

    from hemovision_reports.server import create_server

    server = await create_server(settings)
    await serve(server.running, grace=settings.grace_seconds, on_shutdown=[server.close])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-reports", description="HemoVision PDF reports service")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(argv)
    settings = Settings()
    configure_logging("reports", settings.log_level)
    configure_tracing("reports")
    asyncio.run(_serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
