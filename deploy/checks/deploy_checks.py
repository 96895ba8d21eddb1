"""Offline checks of HemoVision's deployment files (run by scripts/validate_deploy.sh).

    python deploy/checks/deploy_checks.py compose docker-compose.yml
    python deploy/checks/deploy_checks.py tf-serving deploy/tf-serving
    python deploy/checks/deploy_checks.py k8s RENDERED.yaml --overlay base|dev|prod
    python deploy/checks/deploy_checks.py dockerfile Dockerfile

Schema validity is checked elsewhere (check-jsonschema for compose, kubernetes-validate
--strict for Kubernetes); these are the checks a schema cannot make: references that
must resolve (depends_on, Secrets, ConfigMaps, PVCs, volumes, Service selectors, peer
addresses), health probes naming the right gRPC service, pinned images, non-root
containers, the start-up order, the tf-serving flags and configs, and that the peers,
ports, health names and network policies agree with the service topology
(libs/contracts/src/hemovision_contracts/topology.py). Every failure is printed; the exit
status is 1 when there is any.

    expected.py   what the files must say (the topology, loaded by path, and deployment facts)
    compose_checks.py, k8s_checks.py, tf_serving_checks.py, dockerfile_checks.py: one per kind of file
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compose_checks import check_compose
from dockerfile_checks import check_dockerfile
from k8s_checks import check_k8s
from tf_serving_checks import check_tf_serving


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("compose").add_argument("file", type=Path)
    sub.add_parser("tf-serving").add_argument("folder", type=Path)
    sub.add_parser("dockerfile").add_argument("file", type=Path)
    k = sub.add_parser("k8s")
    k.add_argument("file", type=Path)
    k.add_argument("--overlay", required=True, choices=["base", "dev", "prod"])
    args = parser.parse_args(argv)
    if args.what == "compose":
        return check_compose(args.file)
    if args.what == "tf-serving":
        return check_tf_serving(args.folder)
    if args.what == "dockerfile":
        return check_dockerfile(args.file)
    return check_k8s(args.file, args.overlay)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
