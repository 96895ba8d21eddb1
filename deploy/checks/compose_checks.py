"""docker-compose.yml: the graph, healthchecks, commands, peers (against the topology), tf-serving."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from expected import (
    APP_SERVICES,
    GATEWAY_PORT,
    HEALTH_NAMES,
    IMAGES,
    MIGRATE_STEPS,
    PORTS,
    ROOT,
    SERVERS,
    TF_SERVING_FLAGS,
    WORKERS,
    WORKLOAD_IMAGES,
    check_peers,
    image_name,
    image_pinned,
    image_tag,
    peer_host,
    tf_serving_base_path,
)
from db_role_checks import check_compose_db_roles
from report import Report

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

    # one image per service: hemovision-<target>:${HEMOVISION_TAG:-IMAGE_TAG}, built from its
    # Dockerfile target by exactly one service (the others of that image reuse it)
    raw = yaml.safe_load(path.read_text()).get("services", {})
    built: dict[str, list[str]] = {}
    for name in [*APP_SERVICES, *WORKERS, "migrate"]:
        target = WORKLOAD_IMAGES.get(name)
        if not r.check(target in IMAGES, f"{name}: no image assigned (expected.WORKLOAD_IMAGES)"):
            continue
        want = f"{image_name(target)}:${{HEMOVISION_TAG:-{image_tag()}}}"
        r.check(raw[name].get("image") == want, f"{name}: image must be {want!r}, got {raw[name].get('image')!r}")
        build = services[name].get("build")
        if build:
            r.check(build.get("target") == target, f"{name}: builds target {build.get('target')!r}, want {target!r}")
            r.check(build.get("context") == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile",
                    f"{name}: build context . and the repository's Dockerfile")
            built.setdefault(target, []).append(name)
    for target in IMAGES:
        r.check(len(built.get(target, [])) == 1,
                f"image {image_name(target)}: built by {built.get(target, [])}, want exactly one service")

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
    check_compose_db_roles(r, services, mig)  # auth, history, training serve as their runtime roles

    # app servers: the command picks the service, the healthcheck asks gRPC health for it
    for svc, port in PORTS.items():
        s = services[svc]
        r.check(command_text(s.get("command")) == f"python -m hemovision_{svc} serve",
                f"{svc}: command should be `python -m hemovision_{svc} serve`")
        test = command_text(s["healthcheck"]["test"])
        r.check(f"127.0.0.1:{port}" in test and HEALTH_NAMES[svc] in test,
                f"{svc}: healthcheck must ask gRPC health for {HEALTH_NAMES[svc]} on {port}: {test!r}")
    gw = services["gateway"]
    r.check(command_text(gw.get("command")) == "python -m hemovision_gateway serve", "gateway command")
    published = [str(p) for p in gw.get("ports", [])]
    r.check(any(p.endswith(f":{GATEWAY_PORT}") for p in published), "gateway must publish 8000")
    r.check(all(not services[s].get("ports") for s in services if s != "gateway"),
            "only the gateway is published")
    r.check("hemovision_gateway.batches.worker" in command_text(services["gateway-worker"]["command"])
            and "-Q batches" in command_text(services["gateway-worker"]["command"]),
            "gateway-worker: celery -A hemovision_gateway.batches.worker worker -Q batches")
    r.check(command_text(services["training-worker"]["command"]) == "python -m hemovision_training worker",
            "training-worker: python -m hemovision_training worker")

    # peers: every edge of the topology, on the peer's port, and each server waits for its peers
    env = {}
    for name in [*APP_SERVICES, *WORKERS, "migrate"]:
        e = services[name].get("environment", {})
        r.check(isinstance(e, dict), f"{name}: environment should be a mapping")
        env.update(e if isinstance(e, dict) else {})
    check_peers(r, env, model_server_host="tf-serving")
    for key, value in env.items():
        if key.endswith("_ADDR"):
            host = str(value).rpartition(":")[0]
            r.check(host in services, f"{key}={value}: no service {host!r}")
    for svc in APP_SERVICES:
        for peer in SERVERS[svc].peers:
            dep = peer_host(peer, "tf-serving")
            r.check(compose_depends(services[svc]).get(dep) == "service_healthy",
                    f"{svc} calls {peer}: it must depend on {dep} being service_healthy")
    for svc in PORTS:
        r.check(env.get(f"HV_{svc.upper()}_HOST") == "0.0.0.0", f"HV_{svc.upper()}_HOST must be 0.0.0.0")
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
