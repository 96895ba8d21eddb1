"""`python -m hemovision_inference [serve]` (console script hemovision-inference): the
InferenceService (gRPC, port 50053). The model server it calls is hemovision_model_server
(or tensorflow/serving when deployed)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command != "serve":
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the TF Serving client protos import TensorFlow
    from hemovision_grpc_server import run
    from hemovision_inference.server import create_server
    from hemovision_inference.settings import Settings

    run("inference", Settings(), create_server)


if __name__ == "__main__":
    main()
