#!/usr/bin/env python3
"""Container health check for the HemoVision gRPC services (docker-compose).

    hv-grpc-health ADDRESS [SERVICE]

Asks grpc.health.v1.Health/Check on ADDRESS (host:port) for SERVICE ("" = the
whole server) and exits 0 only when the answer is SERVING; 1 otherwise (NOT_SERVING,
UNKNOWN, SERVICE_UNKNOWN, connection refused, deadline exceeded). Over mutual TLS when
HV_TLS_CERT_FILE / HV_TLS_KEY_FILE / HV_TLS_CA_FILE are set (the container's own certificate),
exit 1 with the reason when they are unusable. Kubernetes uses native `grpc:` probes instead,
except with mutual TLS on, which those probes cannot speak (docs/deployment.md "Mutual TLS").
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 3:
        print("usage: hv-grpc-health ADDRESS [SERVICE]", file=sys.stderr)
        return 2
    address = argv[1]
    service = argv[2] if len(argv) == 3 else ""

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from hemovision_grpc_server import TlsError, create_blocking_channel

    try:
        channel = create_blocking_channel(address)
    except TlsError as exc:
        print(f"{address} {service!r}: {exc}", file=sys.stderr)
        return 1
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=3.0
            )
        except grpc.RpcError as exc:
            print(f"{address} {service!r}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"{address} {service!r}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
