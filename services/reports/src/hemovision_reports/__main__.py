"""`python -m hemovision_reports [serve]` (console script hemovision-reports): the gRPC
server on HV_REPORTS_PORT (default 50055) until SIGTERM."""

from __future__ import annotations

import argparse
import sys

from hemovision_grpc_server import run

from hemovision_reports.server import create_server
from hemovision_reports.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-reports", description="HemoVision PDF reports service")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(argv)
    run("reports", Settings(), create_server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
