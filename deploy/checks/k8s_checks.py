"""Rendered Kubernetes manifests: references, security, probes, peers and network policies
(against the topology), autoscaling, migrations, secrets per overlay, mutual TLS (mtls_checks)."""

from __future__ import annotations

from pathlib import Path

import yaml

from expected import (
    APP_SERVICES,
    EXTERNAL_SECRETS,
    HEALTH_NAMES,
    IMAGES,
    MIGRATE_STEPS,
    MODEL_SERVER_GRPC,
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
    split_image,
    tf_serving_base_path,
    topology,
)
from mtls_checks import check_mtls, mtls_rendered
from db_role_checks import check_k8s_db_roles
from report import Report


def containers_of(pod_spec: dict) -> list[dict]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def pod_names(selector: dict) -> set[str]:
    """The app.kubernetes.io/name values a podSelector picks (matchLabels or an `In` expression)."""
    names = {selector.get("matchLabels", {}).get("app.kubernetes.io/name")} - {None}
    for expr in selector.get("matchExpressions", []):
        if expr.get("key") == "app.kubernetes.io/name" and expr.get("operator") == "In":
            names |= set(expr.get("values", []))
    return names


def check_k8s(path: Path, overlay: str) -> int:
    r = Report(f"k8s {overlay}")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

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

    # one image per service: each HemoVision container runs its workload's image, tagged IMAGE_TAG
    # (or pinned by digest); the tf-serving sidecar is the only other image
    cronjobs = [(f"CronJob/{n}", c["spec"]["jobTemplate"]["spec"]["template"]) for n, c in objs("CronJob").items()]
    used_images = set()
    for label, template in [*workloads, *cronjobs]:
        for c in containers_of(template["spec"]):
            name, tag = split_image(c["image"])
            if c["image"].startswith("tensorflow/serving:"):
                continue
            target = WORKLOAD_IMAGES.get(label.split("/", 1)[1])
            if r.check(target is not None, f"{label}: no image assigned (expected.WORKLOAD_IMAGES)"):
                r.check(name == image_name(target), f"{label}[{c['name']}]: image {c['image']}, want {image_name(target)}")
                r.check(tag == image_tag() or tag.startswith("sha256:"),
                        f"{label}[{c['name']}]: image tag {tag!r}, want the Makefile's IMAGE_TAG {image_tag()}")
                used_images.add(target)
    r.check(used_images == set(IMAGES), f"images used {sorted(used_images)}, want every one of {sorted(IMAGES)}")
    # Prometheus: each server's and worker's pod says where its /metrics is — the topology's port,
    # which one of its containers opens (docs/operations.md)
    metrics_ports = {n: s.metrics_port for n, s in SERVERS.items() if n != "model-server"}
    metrics_ports |= {n: w.metrics_port for n, w in topology.WORKERS.items()}
    for name, port in metrics_ports.items():
        template = deployments.get(name, {}).get("spec", {}).get("template", {})
        notes = template.get("metadata", {}).get("annotations", {})
        r.check(notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/port") == str(port),
                f"Deployment/{name}: prometheus.io/scrape \"true\" and prometheus.io/port {port} (the topology's)")
        opened = {p.get("containerPort") for c in containers_of(template.get("spec", {})) for p in c.get("ports", [])}
        r.check(port in opened, f"Deployment/{name}: no container opens its metrics port {port}")
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

    # mutual TLS (deploy/k8s/components/mtls): certificates for the topology's servers and clients
    mtls = mtls_rendered(objs)
    check_mtls(r, overlay, objs, ns, config)

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
            # readiness: the model-aware name (NOT_SERVING while it cannot serve); liveness: the
            # process works (a dependency that is down must never get a pod restarted). Under
            # mutual TLS they are exec hv-grpc-health probes with the same names (check_mtls).
            probes = (("readinessProbe", HEALTH_NAMES[name]), ("livenessProbe", topology.LIVENESS_HEALTH_SERVICE))
            for probe, service in () if mtls else probes:
                g = main.get(probe, {}).get("grpc")
                r.check(g == {"port": port, "service": service},
                        f"{name}: {probe} must be grpc {{port: {port}, service: {service}}}, got {g}")
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
    check_peers(r, config, model_server_host="127.0.0.1")
    for svc in APP_SERVICES:
        r.check(config.get(f"HV_{svc.upper()}_HOST") == "0.0.0.0", f"HV_{svc.upper()}_HOST must be 0.0.0.0")
        r.check(config.get(f"HV_{svc.upper()}_PORT") == str(SERVERS[svc].port),
                f"HV_{svc.upper()}_PORT must be the topology's {SERVERS[svc].port}")
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
    check_k8s_db_roles(r, objs)  # only the migrate Job signs in as the owner

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
        let_in = {caller for p in allowed for rule in p["spec"]["ingress"] for source in rule.get("from", [])
                  for caller in pod_names(source.get("podSelector", {}))}
        open_to_all = any(not rule.get("from") for p in allowed for rule in p["spec"]["ingress"])
        for caller in topology.callers_of(name):
            r.check(open_to_all or caller in let_in, f"{caller} calls {name}: no NetworkPolicy lets it in")
    r.check(any(p["spec"].get("podSelector") == {} and any(
        any(port.get("port") == 53 for port in e.get("ports", [])) for e in p["spec"].get("egress", []))
        for p in policies.values()), "DNS egress must be allowed")
    return r.finish()
