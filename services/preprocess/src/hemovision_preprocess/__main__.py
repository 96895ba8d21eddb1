"""`python -m hemovision_preprocess serve`: the preprocess gRPC service."""

from __future__ import annotations

import argparse

from hemovision_grpc_server import run
from hemovision_preprocess.server import create_server
from hemovision_preprocess.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="hemovision-preprocess")
    parser.add_argument("command", choices=["serve"], nargs="?", default="serve")
    parser.parse_args()
    run("preprocess", Settings(), create_server)


if __name__ == "__main__":
    main()
