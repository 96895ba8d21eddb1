"""Offline checks of HemoVision's deployment files (run by scripts/validate_deploy.sh).

    python deploy/checks/deploy_checks.py compose docker-compose.yml
    python deploy/checks/deploy_checks.py tf-serving deploy/tf-serving
    python deploy/checks/deploy_checks.py k8s RENDERED.yaml --overlay base|dev|prod
    python deploy/checks/deploy_checks.py dockerfile Dockerfile

Schema validity is checked elsewhere (check-jsonschema for compose, kubernetes-validate
--strict for Kubernetes); these are the checks a schema cannot make: references that
must resolve (depends_on, Secrets, ConfigMaps, PVCs, volumes, Service selectors, peer
addresses), health probes naming the right gRPC service, pinned images, non-root
containers, the start-up order, the tf-serving flags and configs. Every failure is
printed; the exit status is 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# service -> (port, proto service name); the names are read from proto/ below.
PORTS = {
    "auth": 50051,
    "preprocess": 50052,
    "inference": 50053,
    "history": 50054,
    "reports": 50055,
    "training": 50056,
}
GATEWAY_PORT = 8000
MODEL_SERVER_GRPC = 8500
MODEL_SERVER_REST = 8501
APP_SERVICES = [*PORTS, "gateway"]
WORKERS = ["gateway-worker", "training-worker"]
TF_SERVING_FLAGS = [
    "--model_config_file=",
    "--enable_batching",
    "--batching_parameters_file=",
    "--file_system_poll_wait_seconds=1",
]
MIGRATE_STEPS = [
    "hemovision_auth migrate",
    "hemovision_history migrate",
    "hemovision_training migrate",
    "hemovision_training register-existing",
]
# Secrets the Kubernetes pods read; dev renders placeholders, base/prod expect them to exist.
EXTERNAL_SECRETS = {
    "hemovision-database",
    "hemovision-redis",
    "hemovision-auth",
    "hemovision-service-credential",
    "hemovision-blobstore",
}


class Report:
    def __init__(self, what: str) -> None:
        self.what = what
        self.errors: list[str] = []
        self.checked = 0

    def check(self, ok: bool, message: str) -> bool:
        self.checked += 1
        if not ok:
            self.errors.append(message)
        return ok

    def finish(self) -> int:
        for e in self.errors:
            print(f"  FAIL [{self.what}] {e}")
        status = "ok" if not self.errors else f"{len(self.errors)} failure(s)"
        print(f"{self.what}: {self.checked} checks, {status}")
        return 1 if self.errors else 0


def proto_service_names() -> dict[str, str]:
    """{'auth': 'hemovision.auth.v1.AuthService', ...} from proto/hemovision/<svc>/v1/<svc>.proto."""
    names = {}
    for svc in PORTS:
        text = (ROOT / "proto" / "hemovision" / svc / "v1" / f"{svc}.proto").read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
        service = re.search(r"^service\s+(\w+)", text, re.M).group(1)
        names[svc] = f"{package}.{service}"
    return names


def tf_serving_base_path() -> str:
    """base_path of the hemovision model in deploy/tf-serving/models.config."""
    text = (ROOT / "deploy" / "tf-serving" / "models.config").read_text()
    m = re.search(r'name:\s*"hemovision"\s*base_path:\s*"([^"]+)"', text)
    return m.group(1) if m else ""


def image_pinned(image: str) -> bool:
    """A tag other than latest, or a digest."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest") and "${" not in last


# ----------------------------------------------------------------------------- compose


_INTERP = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env: dict[str, str]):
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $VAR and $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("plain"):
            return env.get(m.group("plain"), "")
        expr = m.group("braced")
        for op in (":-", "-", ":?", "?"):
            if op in expr:
                name, default = expr.split(op, 1)
                present = name in env and (env[name] != "" or not op.startswith(":"))
                if op.endswith("?"):
                    if not present:
                        raise ValueError(f"${{{expr}}}: required variable {name} is unset")
                    return env[name]
                return env[name] if present else default
        return env.get(expr, "")

    return _INTERP.sub(sub, value)


def load_compose(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())  # resolves the YAML anchors and `<<` merges
    env = {k: v for k, v in os.environ.items() if k.startswith(("HV_", "POSTGRES_", "HEMOVISION_"))}
    return interpolate(raw, env)


def compose_depends(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def command_text(cmd) -> str:
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd or "")


def check_compose(path: Path) -> int:
    r = Report(f"compose {path.name}")
    data = load_compose(path)

    # the typed model of the compose spec (after merges and interpolation, as compose sees it)
    try:
        import compose_spec

        compose_spec.PyCompose.from_json(json.dumps(data)).to_spec()
        r.check(True, "")
    except ImportError:
        print("  (compose_spec not installed: typed model check skipped)")
    except Exception as exc:  # noqa: BLE001 - report whatever the parser says
        r.check(False, f"compose_spec rejects the file: {exc}")

    services = data.get("services", {})
    names = proto_service_names()
    required = ["postgres", "redis", "tf-serving", "migrate", *APP_SERVICES, *WORKERS]
    for s in required:
        r.check(s in services, f"service {s!r} missing")
    if r.errors:
        return r.finish()

    r.check(services["postgres"]["image"].startswith("postgres:15"), "postgres must be PostgreSQL 15")
    r.check(services["redis"]["image"].startswith("redis:7"), "redis must be Redis 7")
    r.check(services["tf-serving"]["image"].startswith("tensorflow/serving:"), "tf-serving image")

    for name, svc in services.items():
        image = svc.get("image", "")
        r.check(bool(image) and image_pinned(image), f"{name}: image {image!r} not pinned by tag/digest")
        if name != "migrate":
            r.check("healthcheck" in svc and "test" in svc["healthcheck"], f"{name}: no healthcheck")
        for dep, cond in compose_depends(svc).items():
            r.check(dep in services, f"{name}: depends_on unknown service {dep!r}")
            if dep not in services:
                continue
            if dep == "migrate":
                r.check(cond == "service_completed_successfully",
                        f"{name}: depends on migrate with {cond}, want service_completed_successfully")
            else:
                r.check(cond == "service_healthy", f"{name}: depends on {dep} with {cond}, want service_healthy")
                r.check("healthcheck" in services[dep], f"{name}: waits for {dep} healthy but {dep} has no healthcheck")

    # acyclic, and every HemoVision process starts after the migrations succeeded
    def closure(name: str, seen: tuple[str, ...] = ()) -> set[str]:
        if name in seen:
            r.check(False, f"depends_on cycle: {' -> '.join((*seen, name))}")
            return set()
        out: set[str] = set()
        for dep in compose_depends(services[name]):
            if dep in services:
                out |= {dep, *closure(dep, (*seen, name))}
        return out

    for name in [*APP_SERVICES, *WORKERS]:
        r.check("migrate" in closure(name), f"{name}: does not (transitively) wait for migrate")
    r.check({"postgres"} <= closure("migrate"), "migrate must wait for postgres")

    # migrations: all four steps, in order
    mig = command_text(services["migrate"].get("command"))
    positions = [mig.find(step) for step in MIGRATE_STEPS]
    r.check(all(p >= 0 for p in positions) and positions == sorted(positions),
            f"migrate command must run, in order: {MIGRATE_STEPS}")
    r.check(services["migrate"].get("restart") in ("no", None), "migrate must not restart")

    # app servers: the command picks the service, the healthcheck asks gRPC health for it
    for svc, port in PORTS.items():
        s = services[svc]
        r.check(command_text(s.get("command")) == f"python -m hemovision_{svc} serve",
                f"{svc}: command should be `python -m hemovision_{svc} serve`")
        test = command_text(s["healthcheck"]["test"])
        r.check(f"127.0.0.1:{port}" in test and names[svc] in test,
                f"{svc}: healthcheck must ask gRPC health for {names[svc]} on {port}: {test!r}")
    gw = services["gateway"]
    r.check(command_text(gw.get("command")) == "python -m hemovision_gateway serve", "gateway command")
    published = [str(p) for p in gw.get("ports", [])]
    r.check(any(p.endswith(f":{GATEWAY_PORT}") for p in published), "gateway must publish 8000")
    r.check(all(not services[s].get("ports") for s in services if s != "gateway"),
            "only the gateway is published")
    r.check("hemovision_gateway.worker" in command_text(services["gateway-worker"]["command"])
            and "-Q batches" in command_text(services["gateway-worker"]["command"]),
            "gateway-worker: celery -A hemovision_gateway.worker worker -Q batches")
    r.check(command_text(services["training-worker"]["command"]) == "python -m hemovision_training worker",
            "training-worker: python -m hemovision_training worker")

    # peers: every HV_*_ADDR names a compose service on its port
    env = {}
    for name in [*APP_SERVICES, *WORKERS, "migrate"]:
        e = services[name].get("environment", {})
        r.check(isinstance(e, dict), f"{name}: environment should be a mapping")
        env.update(e if isinstance(e, dict) else {})
    expected_port = {**PORTS, "gateway": GATEWAY_PORT, "tf-serving": MODEL_SERVER_GRPC}
    for key, value in env.items():
        if not key.endswith("_ADDR"):
            continue
        host, _, port = str(value).rpartition(":")
        r.check(host in services, f"{key}={value}: no service {host!r}")
        if host in expected_port:
            r.check(port == str(expected_port[host]), f"{key}={value}: {host} listens on {expected_port[host]}")
    for svc in PORTS:
        r.check(env.get(f"HV_{svc.upper()}_HOST") == "0.0.0.0", f"HV_{svc.upper()}_HOST must be 0.0.0.0")
    r.check(env.get("HV_INFERENCE_MODEL_SERVER_ADDR") == f"tf-serving:{MODEL_SERVER_GRPC}",
            "inference must use tf-serving:8500")
    r.check(env.get("HV_MODEL_BASE") == "/models", "HV_MODEL_BASE must be /models (same path as tf-serving)")
    r.check(env.get("HV_INFERENCE_MODEL_SERVER_BASE_PATH") == tf_serving_base_path(),
            "HV_INFERENCE_MODEL_SERVER_BASE_PATH must be models.config's base_path")

    # tf-serving: flags, configs, model base
    tfs = services["tf-serving"]
    args = command_text([*(tfs.get("entrypoint") or []), *(tfs.get("command") or [])])
    for flag in TF_SERVING_FLAGS:
        r.check(flag in args, f"tf-serving: missing {flag}")
    mounts = [str(v) for v in tfs.get("volumes", [])]
    r.check(any(m.startswith("./models:/models") for m in mounts), "tf-serving must mount ./models at /models")
    r.check(any(m.startswith("./deploy/tf-serving:") for m in mounts), "tf-serving must mount deploy/tf-serving")
    for flag in ("--model_config_file=", "--batching_parameters_file="):
        m = re.search(re.escape(flag) + r"(\S+)", args)
        if m:
            host_file = ROOT / "deploy" / "tf-serving" / Path(m.group(1)).name
            r.check(host_file.is_file(), f"tf-serving: {flag}{m.group(1)} has no file {host_file}")
    for name in ("inference", "training", "migrate"):
        vols = [str(v) for v in services[name].get("volumes", [])]
        r.check("./models:/models:ro" in vols, f"{name}: must mount ./models:/models read-only")
    r.check("./models:/models" in [str(v) for v in services["training-worker"].get("volumes", [])],
            "training-worker: must mount ./models:/models read-write")
    data = [[v for v in map(str, services[n].get("volumes", [])) if ":/data" in v] for n in ("training", "training-worker")]
    r.check(data[0] == data[1] and len(data[0]) == 1,
            "training and training-worker must mount the same training data at /data (a job's data_dir)")
    return r.finish()


# -------------------------------------------------------------------------- tf-serving


def batching_parameters_class():
    """BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto),
    built from its field list: the tensorflow-serving-api wheel does not ship this message."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    f = descriptor_pb2.FieldDescriptorProto
    fields = [
        ("max_batch_size", 1, ".google.protobuf.Int64Value", None),
        ("batch_timeout_micros", 2, ".google.protobuf.Int64Value", None),
        ("max_enqueued_batches", 3, ".google.protobuf.Int64Value", None),
        ("num_batch_threads", 4, ".google.protobuf.Int64Value", None),
        ("thread_pool_name", 5, ".google.protobuf.StringValue", None),
        ("allowed_batch_sizes", 6, None, f.TYPE_INT64),
        ("pad_variable_length_inputs", 7, None, f.TYPE_BOOL),
    ]
    file = descriptor_pb2.FileDescriptorProto(
        name="hv_check_batching.proto", package="hvcheck", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    msg = file.message_type.add(name="BatchingParameters")
    for name, number, type_name, scalar in fields:
        field = msg.field.add(name=name, number=number)
        if name == "allowed_batch_sizes":
            field.label = f.LABEL_REPEATED
        else:
            field.label = f.LABEL_OPTIONAL
        if type_name:
            field.type = f.TYPE_MESSAGE
            field.type_name = type_name
        else:
            field.type = scalar
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("hvcheck.BatchingParameters"))


def check_tf_serving(folder: Path) -> int:
    r = Report(f"tf-serving {folder}")
    from google.protobuf import text_format

    try:
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as exc:
        r.check(False, f"tensorflow_serving.config not importable ({exc}); install tensorflow-serving-api --no-deps")
        return r.finish()

    try:
        cfg = text_format.Parse((folder / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        r.check(False, f"models.config: {exc}")
        return r.finish()
    models = {c.name: c for c in cfg.model_config_list.config}
    if r.check("hemovision" in models, "models.config must configure the `hemovision` model"):
        m = models["hemovision"]
        r.check(m.base_path == "/models/hemovision", f"base_path {m.base_path!r}, want /models/hemovision")
        r.check(m.model_platform == "tensorflow", "model_platform must be tensorflow")
        r.check(m.HasField("model_version_policy"), "a model_version_policy is required")

    try:
        batching = text_format.Parse((folder / "batching.config").read_text(), batching_parameters_class()())
    except text_format.ParseError as exc:
        r.check(False, f"batching.config: {exc}")
        return r.finish()
    r.check(batching.max_batch_size.value > 0, "max_batch_size must be set")
    r.check(batching.batch_timeout_micros.value > 0, "batch_timeout_micros must be set")
    sizes = list(batching.allowed_batch_sizes)
    if sizes:
        r.check(sizes == sorted(set(sizes)), "allowed_batch_sizes must increase")
        r.check(sizes[-1] == batching.max_batch_size.value, "the last allowed_batch_size must equal max_batch_size")
    return r.finish()


# ------------------------------------------------------------------------ Dockerfile


def check_dockerfile(path: Path) -> int:
    r = Report(f"dockerfile {path.name}")
    text = path.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    for image, _stage in stages:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if resolved in {s for _, s in stages}:
            continue  # FROM an earlier stage
        r.check(image_pinned(resolved), f"base image {resolved!r} not pinned by tag/digest")
    stage_names = [s for _, s in stages]
    r.check("builder" in stage_names and stage_names[-1] == "runtime", "stages builder ... runtime (last)")
    r.check("uv sync --frozen --all-packages" in text, "builder must `uv sync --frozen --all-packages`")
    r.check(re.search(r"apt-get install[^\n]*(g\+\+|cmake)", text) is not None, "builder must install g++/cmake")
    runtime = text[text.rfind("AS runtime"):]
    r.check("g++" not in runtime and "cmake" not in runtime, "runtime stage must not carry compilers")
    r.check(re.search(r"^USER\s+(?!root|0\b)\S+", runtime, re.M) is not None, "runtime must run as a non-root USER")
    dockerignore = (path.parent / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "models"):
        r.check(entry in dockerignore, f".dockerignore should exclude {entry}")
    return r.finish()


# -------------------------------------------------------------------------- Kubernetes


def containers_of(pod_spec: dict) -> list[dict]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check_k8s(path: Path, overlay: str) -> int:
    r = Report(f"k8s {overlay}")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    names = proto_service_names()

    def objs(kind: str) -> dict[str, dict]:
        return by_kind.get(kind, {})

    namespaces = list(objs("Namespace"))
    r.check(len(namespaces) == 1, f"exactly one Namespace expected, got {namespaces}")
    ns = namespaces[0] if namespaces else None
    for d in docs:
        if d["kind"] != "Namespace":
            r.check(d["metadata"].get("namespace") == ns, f"{d['kind']}/{d['metadata']['name']} not in {ns}")

    deployments = objs("Deployment")
    for name in [*APP_SERVICES, *WORKERS]:
        r.check(name in deployments, f"Deployment {name} missing")
    r.check("hemovision-migrate" in objs("Job"), "Job hemovision-migrate missing")

    secrets_available = set(objs("Secret"))
    if overlay == "prod":
        r.check(not secrets_available, "prod must not render Secrets (placeholders would overwrite real ones)")
    if overlay == "dev":
        r.check(EXTERNAL_SECRETS <= secrets_available, "dev must render every placeholder Secret")
    if overlay in ("base", "prod"):
        secrets_available |= EXTERNAL_SECRETS

    pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in objs("PodDisruptionBudget").values()]
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"]: h for h in objs("HorizontalPodAutoscaler").values()}
    config = objs("ConfigMap").get("hemovision-config", {}).get("data", {})
    r.check(bool(config), "ConfigMap hemovision-config missing")

    workloads = [(f"Deployment/{n}", d["spec"]["template"]) for n, d in deployments.items()]
    workloads += [(f"Job/{n}", j["spec"]["template"]) for n, j in objs("Job").items()]
    for label, template in workloads:
        spec = template["spec"]
        pod_sc = spec.get("securityContext", {})
        r.check(pod_sc.get("runAsNonRoot") is True, f"{label}: pod securityContext.runAsNonRoot")
        r.check(pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: seccomp RuntimeDefault")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                r.check(claim in objs("PersistentVolumeClaim"), f"{label}: PVC {claim} not rendered")
            if "configMap" in v:
                r.check(v["configMap"]["name"] in objs("ConfigMap"), f"{label}: ConfigMap {v['configMap']['name']}")
        sa = spec.get("serviceAccountName")
        r.check(sa in objs("ServiceAccount"), f"{label}: ServiceAccount {sa} not rendered")
        for c in containers_of(spec):
            where = f"{label}[{c['name']}]"
            r.check(image_pinned(c["image"]), f"{where}: image {c['image']} not pinned")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for key in ("cpu", "memory"):
                    r.check(key in res.get(part, {}), f"{where}: resources.{part}.{key} missing")
            sc = c.get("securityContext", {})
            r.check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation must be false")
            r.check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem must be true")
            r.check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: capabilities must drop ALL")
            for m in c.get("volumeMounts", []):
                r.check(m["name"] in volumes, f"{where}: volumeMount {m['name']} has no volume")
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    r.check(ref["configMapRef"]["name"] in objs("ConfigMap"), f"{where}: ConfigMap ref")
                if "secretRef" in ref and not ref["secretRef"].get("optional"):
                    r.check(ref["secretRef"]["name"] in secrets_available,
                            f"{where}: Secret {ref['secretRef']['name']} neither rendered nor documented")

    # app services: command, gRPC probes naming the proto service, Service, PDB
    for name, d in deployments.items():
        template = d["spec"]["template"]
        pod_labels = template["metadata"]["labels"]
        r.check(labels_match(d["spec"]["selector"]["matchLabels"], pod_labels), f"{name}: selector/labels")
        r.check(any(labels_match(sel, pod_labels) for sel in pdb_selectors), f"{name}: no PodDisruptionBudget")
        if name in hpa_targets:
            r.check("replicas" not in d["spec"], f"{name}: HPA-managed, so spec.replicas must be left out")
        main = template["spec"]["containers"][0]
        if name in PORTS:
            port = PORTS[name]
            r.check(main["command"] == ["python", "-m", f"hemovision_{name}", "serve"], f"{name}: command")
            r.check({"name": "grpc", "containerPort": port, "protocol": "TCP"} in main.get("ports", []),
                    f"{name}: container port grpc {port}")
            for probe in ("readinessProbe", "livenessProbe"):
                g = main.get(probe, {}).get("grpc")
                r.check(g == {"port": port, "service": names[name]},
                        f"{name}: {probe} must be grpc {{port: {port}, service: {names[name]}}}, got {g}")
    # Services select a Deployment's pods and target a named container port
    for name, s in objs("Service").items():
        sel = s["spec"].get("selector", {})
        targets = [d for d in deployments.values() if labels_match(sel, d["spec"]["template"]["metadata"]["labels"])]
        r.check(len(targets) == 1, f"Service/{name}: selects {len(targets)} Deployments")
        for p in s["spec"]["ports"]:
            ports = {cp.get("name") for t in targets for c in containers_of(t["spec"]["template"]["spec"])
                     for cp in c.get("ports", [])}
            r.check(p.get("targetPort") in ports, f"Service/{name}: targetPort {p.get('targetPort')} not a port name")
    for svc in APP_SERVICES:
        r.check(svc in objs("Service"), f"Service {svc} missing")

    # peers in the ConfigMap resolve to Services on the right ports
    service_ports = {n: {p["port"] for p in s["spec"]["ports"]} for n, s in objs("Service").items()}
    for key, value in config.items():
        if key.endswith("_ADDR"):
            balanced = value.startswith("dns:///")  # gRPC round-robin over a headless Service's pods
            host, _, port = value.removeprefix("dns:///").rpartition(":")
            if balanced:
                svc = objs("Service").get(host, {})
                r.check(svc.get("spec", {}).get("clusterIP") == "None",
                        f"{key}={value}: dns:/// balancing needs Service {host} to be headless (clusterIP: None)")
            if host == "127.0.0.1":
                r.check(key == "HV_INFERENCE_MODEL_SERVER_ADDR" and port == str(MODEL_SERVER_GRPC),
                        f"{key}={value}: only the model server sidecar is on localhost")
            else:
                r.check(host in service_ports and int(port) in service_ports[host],
                        f"{key}={value}: no Service {host} with port {port}")
    for svc in APP_SERVICES:
        r.check(config.get(f"HV_{svc.upper()}_HOST") == "0.0.0.0", f"HV_{svc.upper()}_HOST must be 0.0.0.0")
    r.check(config.get("HV_MODEL_BASE") == "/models", "HV_MODEL_BASE must be /models")
    r.check(config.get("HV_INFERENCE_MODEL_SERVER_BASE_PATH") == tf_serving_base_path(),
            "HV_INFERENCE_MODEL_SERVER_BASE_PATH must be models.config's base_path")

    # inference: pod of inference + tensorflow/serving sidecar, model base read-only
    inf = deployments.get("inference")
    if inf:
        spec = inf["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in containers_of(spec)}
        tfs = containers.get("tf-serving")
        if r.check(tfs is not None, "inference pod must carry a tf-serving container"):
            r.check(tfs["image"].startswith("tensorflow/serving:"), "tf-serving: image")
            sidecar = tfs in spec.get("initContainers", []) and tfs.get("restartPolicy") == "Always"
            r.check(sidecar or tfs in spec.get("containers", []), "tf-serving must be a (native) sidecar")
            flags = " ".join([*tfs.get("command", []), *tfs.get("args", [])])
            for flag in TF_SERVING_FLAGS:
                r.check(flag in flags, f"tf-serving: missing {flag}")
            r.check("readinessProbe" in tfs, "tf-serving: readinessProbe")
            mounts = {m["mountPath"]: m for m in tfs.get("volumeMounts", [])}
            r.check(mounts.get("/models", {}).get("readOnly") is True, "tf-serving: /models read-only")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        models = volumes.get("models", {}).get("persistentVolumeClaim", {})
        r.check(models.get("claimName") == "hemovision-models" and models.get("readOnly") is True,
                "inference: model base PVC mounted read-only")
    tw = deployments.get("training-worker")
    if tw:
        vols = {v["name"]: v for v in tw["spec"]["template"]["spec"]["volumes"]}
        claim = vols.get("models", {}).get("persistentVolumeClaim", {})
        r.check(claim.get("claimName") == "hemovision-models" and not claim.get("readOnly"),
                "training-worker: model base PVC mounted read-write")
    pvc = objs("PersistentVolumeClaim").get("hemovision-models")
    if r.check(pvc is not None, "PVC hemovision-models missing"):
        r.check("ReadWriteMany" in pvc["spec"]["accessModes"], "hemovision-models must be ReadWriteMany")

    # tf-serving ConfigMap = the files docker-compose mounts
    tfcm = objs("ConfigMap").get("hemovision-tf-serving", {}).get("data", {})
    for f in ("models.config", "batching.config"):
        r.check(tfcm.get(f) == (ROOT / "deploy" / "tf-serving" / f).read_text(),
                f"ConfigMap hemovision-tf-serving[{f}] differs from deploy/tf-serving/{f}")

    # autoscaling
    for target in ("inference", "gateway"):
        h = hpa_targets.get(target)
        if r.check(h is not None, f"HorizontalPodAutoscaler for {target} missing"):
            r.check(h["apiVersion"] == "autoscaling/v2", f"HPA {target}: autoscaling/v2")
            r.check(h["spec"]["scaleTargetRef"]["kind"] == "Deployment", f"HPA {target}: targets a Deployment")
            cpu = [m for m in h["spec"].get("metrics", []) if m.get("resource", {}).get("name") == "cpu"]
            r.check(bool(cpu), f"HPA {target}: scales on CPU")
            r.check(h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"], f"HPA {target}: min <= max")

    # migrations
    job = objs("Job").get("hemovision-migrate")
    if job:
        cmd = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
        positions = [cmd.find(step) for step in MIGRATE_STEPS]
        r.check(all(p >= 0 for p in positions) and positions == sorted(positions), "migrate Job: all four steps")

    # network policies: default deny, every server reachable only by the allowed flows
    policies = objs("NetworkPolicy")
    deny = [p for p in policies.values()
            if p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    r.check(bool(deny), "a default-deny NetworkPolicy (Ingress + Egress) is required")
    for name in APP_SERVICES:
        pod_labels = deployments.get(name, {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        allowed = [p for p in policies.values() if "Ingress" in p["spec"].get("policyTypes", [])
                   and p["spec"].get("ingress") and labels_match(p["spec"]["podSelector"].get("matchLabels"), pod_labels)
                   and p["spec"]["podSelector"].get("matchLabels")]
        r.check(bool(allowed), f"{name}: no NetworkPolicy allows ingress to it")
    r.check(any(p["spec"].get("podSelector") == {} and any(
        any(port.get("port") == 53 for port in e.get("ports", [])) for e in p["spec"].get("egress", []))
        for p in policies.values()), "DNS egress must be allowed")
    return r.finish()


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
