import importlib

import pytest

from hemovision_contracts.topology import (
    HEMOVISION_GRPC_SERVICES,
    SERVERS,
    WORKERS,
    addr_env,
    addr_setting,
    callers_of,
    default_addr,
    env_prefix,
    worker_metrics_port_env,
)


@pytest.mark.parametrize("name", HEMOVISION_GRPC_SERVICES)
def test_health_name_is_the_proto_service(name):
    module = importlib.import_module(f"hemovision.{name}.v1.{name}_pb2")
    assert SERVERS[name].health_service in {s.full_name for s in module.DESCRIPTOR.services_by_name.values()}


def test_peers_are_servers_and_ports_unique():
    for server in SERVERS.values():
        assert set(server.all_peers) <= set(SERVERS) - {server.name}
        assert not set(server.peers) & set(server.background_peers)
    ports = ([s.port for s in SERVERS.values()] + [s.metrics_port for s in SERVERS.values()]
             + [w.metrics_port for w in WORKERS.values()])
    assert len(ports) == len(set(ports))


def test_workers_read_a_servers_settings():
    for worker in WORKERS.values():
        assert worker.settings_of in SERVERS and worker.name not in SERVERS
    assert worker_metrics_port_env("gateway-worker") == "HV_GATEWAY_WORKER_METRICS_PORT"
    assert worker_metrics_port_env("training-worker") == "HV_TRAINING_WORKER_METRICS_PORT"


def test_background_peers_break_the_start_cycle():
    # auth's audit forwarder calls history, and history verifies tokens with auth: only the
    # blocking edge orders the start, the background one still gets an address and a policy
    assert "auth" in SERVERS["history"].peers and "history" in SERVERS["auth"].background_peers
    assert "auth" in callers_of("history")


def test_names_derived_as_the_settings_read_them():
    assert env_prefix("model-server") == "HV_MODEL_SERVER_"
    assert addr_setting("model-server") == "model_server_addr"
    assert addr_env("inference", "preprocess") == "HV_INFERENCE_PREPROCESS_ADDR"
    assert default_addr("preprocess") == "127.0.0.1:50052"
    assert set(callers_of("preprocess")) == {"inference"}  # the short route: only inference prepares images
