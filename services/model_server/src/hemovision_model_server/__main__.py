"""`python -m hemovision_model_server` (console script hemovision-model-server): the embedded
TF-Serving-compatible model server, gRPC 8500 and REST 8501 (HV_MODEL_SERVER_* settings)."""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    from hemovision_grpc_server import run
    from hemovision_model_server.server import create_model_server
    from hemovision_model_server.settings import ModelServerSettings

    run("model-server", ModelServerSettings(), create_model_server)


if __name__ == "__main__":
    main()
