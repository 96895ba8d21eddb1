"""The dev stack's plan follows the service topology, and every service's settings read it."""

import importlib
import subprocess
import sys

import pytest

from hemovision_contracts.topology import (
    SERVERS,
    WORKERS,
    addr_env,
    addr_setting,
    default_addr,
    env_prefix,
    worker_metrics_port_env,
)
from hemovision_devstack.plan import StackConfig, build_env, build_plan, start_order

SETTINGS = {  # server -> its settings class
    "gateway": "hemovision_gateway.settings:Settings",
    "auth": "hemovision_auth.settings:Settings",
    "preprocess": "hemovision_preprocess.settings:Settings",
    "inference": "hemovision_inference.settings:Settings",
    "history": "hemovision_history.settings:Settings",
    "reports": "hemovision_reports.settings:Settings",
    "training": "hemovision_training.settings:Settings",
    "model-server": "hemovision_model_server.settings:ModelServerSettings",
}


@pytest.fixture
def cfg(tmp_path):
    return StackConfig(root=tmp_path, var_dir=tmp_path / "var", port_offset=100)


def test_every_port_and_peer_address_is_set_with_the_offset(cfg):
    env = build_env(cfg)
    for server in SERVERS.values():
        assert env[env_prefix(server.name) + "PORT"] == str(server.port + 100)
        for peer in server.peers:
            assert env[addr_env(server.name, peer)] == f"127.0.0.1:{SERVERS[peer].port + 100}"
    assert env["HV_INFERENCE_PREPROCESS_ADDR"] == "127.0.0.1:50152"
    for worker in WORKERS.values():
        assert env[worker_metrics_port_env(worker.name)] == str(worker.metrics_port + 100)
    assert env["HV_GATEWAY_WORKER_METRICS_PORT"] == "9207"


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_each_workers_settings_read_its_metrics_port(worker, monkeypatch):
    server = WORKERS[worker].settings_of
    module, _, name = SETTINGS[server].partition(":")
    settings = getattr(importlib.import_module(module), name)
    assert settings.model_fields["worker_metrics_port"].default == WORKERS[worker].metrics_port
    monkeypatch.setenv(worker_metrics_port_env(worker), "19999")
    assert settings().worker_metrics_port == 19999


def test_each_server_starts_after_its_peers_and_is_health_checked(cfg):
    assert sorted(start_order()) == sorted(SERVERS)
    for name in start_order():
        assert all(start_order().index(peer) < start_order().index(name) for peer in SERVERS[name].peers)
    _, procs = build_plan(cfg)
    by_name = {p.name: p for p in procs}
    assert by_name["inference"].health == ("grpc", "127.0.0.1:50153", "hemovision.inference.v1.InferenceService")
    assert by_name["gateway"].health == ("http", "http://127.0.0.1:8100/readyz")
    assert {"batch-worker", "training-worker"} <= set(by_name)


@pytest.mark.parametrize("server", sorted(SETTINGS))
def test_settings_defaults_are_the_topology(server):
    module, _, name = SETTINGS[server].partition(":")
    settings = getattr(importlib.import_module(module), name)
    prefix = settings.model_config["env_prefix"]
    assert prefix == env_prefix(server)
    fields = settings.model_fields
    assert fields["port"].default == SERVERS[server].port
    for peer in SERVERS[server].peers:
        assert fields[addr_setting(peer)].default == default_addr(peer), f"{server}: {addr_setting(peer)}"


def test_hemovision_command_has_up_and_down(tmp_path):
    """`hemovision` (the gateway's CLI) finds up/down through the hemovision.commands entry point."""
    from hemovision_gateway.cli import build_parser

    args = build_parser().parse_args(["down", "--var-dir", str(tmp_path)])
    assert args.func(args) == 0  # nothing running: says so
    help_text = subprocess.run([sys.executable, "-m", "hemovision_devstack", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "up" in help_text and "down" in help_text


def test_make_up_honours_the_settings_readme_lists(tmp_path, monkeypatch):
    """HV_MODEL_BASE, HV_VAR_DIR and a server's HV_<SVC>_PORT reach the stack (the offset still
    shifts them), and every peer address follows a moved port."""
    import argparse

    from hemovision_devstack.cli import add_arguments, config_from_args

    monkeypatch.setenv("HV_MODEL_BASE", str(tmp_path / "my-models"))
    monkeypatch.setenv("HV_VAR_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HV_PREPROCESS_PORT", "51052")
    monkeypatch.setenv("HV_GATEWAY_PORT", "not-a-port")  # ignored, not a crash
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--port-offset", "5"]))
    env = build_env(cfg)
    assert env["HV_MODEL_BASE"] == str((tmp_path / "my-models").resolve())
    assert env["HV_VAR_DIR"] == str((tmp_path / "state").resolve())
    assert env["HV_PREPROCESS_PORT"] == "51057"
    assert env["HV_INFERENCE_PREPROCESS_ADDR"] == "127.0.0.1:51057"
    assert env["HV_GATEWAY_PORT"] == str(SERVERS["gateway"].port + 5)
    cli = config_from_args(parser.parse_args(["--model-base", str(tmp_path / "flag")]))
    assert cli.models == (tmp_path / "flag").resolve()  # the flag wins over the environment


def test_tls_gives_every_process_its_own_certificate_of_one_local_ca(tmp_path, monkeypatch):
    """`hemovision up --tls` / HV_TLS=1: a CA under var/secrets/tls and per process a certificate
    for its name, localhost and 127.0.0.1 (the addresses the stack dials); off by default."""
    import argparse

    from cryptography import x509

    from hemovision_devstack.cli import add_arguments, config_from_args
    from hemovision_devstack.plan import TLS_CLIENT
    from hemovision_devstack.supervisor import Stack

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    monkeypatch.delenv("HV_TLS", raising=False)
    assert not config_from_args(parser.parse_args(["--var-dir", str(tmp_path / "off")])).tls
    _, procs = build_plan(StackConfig(root=tmp_path, var_dir=tmp_path / "off"))
    assert not any("HV_TLS_CERT_FILE" in p.env for p in procs)
    assert not (tmp_path / "off" / "secrets" / "tls").exists()

    monkeypatch.setenv("HV_TLS", "1")
    cfg = config_from_args(parser.parse_args(["--var-dir", str(tmp_path / "var")]))
    assert cfg.tls and not config_from_args(parser.parse_args(["--no-tls"])).tls
    _, procs = build_plan(cfg)
    tls_dir = (tmp_path / "var" / "secrets" / "tls").resolve()
    ca = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    for proc in procs:
        assert proc.env["HV_TLS_CERT_FILE"] == str(tls_dir / f"{proc.name}.pem")
        assert proc.env["HV_TLS_KEY_FILE"] == str(tls_dir / f"{proc.name}.key")
        assert proc.env["HV_TLS_CA_FILE"] == str(tls_dir / "ca.pem")
        cert = x509.load_pem_x509_certificate((tls_dir / f"{proc.name}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [proc.name, "localhost"]
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert {p.name for p in procs} >= {"gateway", "model-server", "inference", "batch-worker", "training-worker"}
    stack = Stack(cfg)  # the one-off steps and the supervisor's health checks: the `cli` certificate
    assert stack.env["HV_TLS_CERT_FILE"] == str(tls_dir / f"{TLS_CLIENT}.pem")
    assert stack.client_tls is not None and stack.client_tls.cert_file == tls_dir / f"{TLS_CLIENT}.pem"
