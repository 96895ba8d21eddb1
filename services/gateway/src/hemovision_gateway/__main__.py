"""`python -m hemovision_gateway` (console script hemovision-gateway): serve the HTTP API.

    hemovision-gateway [serve]      the HTTP server (uvicorn) on HV_GATEWAY_HOST:HV_GATEWAY_PORT
    hemovision-gateway worker       the Celery batch worker (queue `batches`)
"""

from __future__ import annotations

import argparse
import sys

from hemovision_gateway.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-gateway")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "worker"])
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (worker only)")
    args = parser.parse_args(argv)
    settings = Settings()
    from hemovision_telemetry import configure_logging, configure_tracing

    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway")
    if args.command == "worker":
        from hemovision_gateway.batches.worker import app

        app.worker_main(["worker", "-Q", "batches", "--concurrency", str(args.concurrency),
                         "--loglevel", settings.log_level, "-n", "batches@%h"])
        return 0
    import uvicorn

    from hemovision_gateway.app import create_app
    from hemovision_gateway.metrics import queue_depths
    from hemovision_telemetry.metrics import serve_metrics

    metrics = serve_metrics(settings.metrics_port, host=settings.host)
    queue_depths(settings.broker_url)  # hemovision_queue_depth, read at every scrape
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, http="httptools",
                    timeout_graceful_shutdown=10, proxy_headers=False)
    finally:
        if metrics is not None:
            metrics.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
