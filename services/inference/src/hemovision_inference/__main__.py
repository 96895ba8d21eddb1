"""`python -m hemovision_inference [serve|model-server]` (console script hemovision-inference).

serve         the InferenceService (gRPC, port 50053)
model-server  the embedded TF-Serving-compatible model server (gRPC 8500, REST 8501)
"""

from __future__ import annotations

import asyncio
import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hemovision_telemetry import configure_logging, configure_tracing

    if command == "model-server":
        from hemovision_inference.model_server.server import serve_model_server
        from hemovision_inference.model_server.settings import ModelServerSettings

        settings = ModelServerSettings()
        configure_logging("model-server", settings.log_level)
        configure_tracing("model-server")
        asyncio.run(serve_model_server(settings))
    elif command == "serve":
        from hemovision_inference.server import serve
        from hemovision_inference.settings import Settings

        settings = Settings()
        configure_logging("inference", settings.log_level)
        configure_tracing("inference")
        asyncio.run(serve(settings))
    else:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
