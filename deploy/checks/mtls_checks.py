"""Mutual TLS in the rendered Kubernetes manifests (deploy/k8s/components/mtls, decision 44),
held to the service topology: every gRPC server and client of hemovision_contracts.topology has
a cert-manager Certificate from the CA Issuer, mounts its Secret and sets HV_TLS_* to its files;
each certificate names every host its clients dial (the peer addresses in hemovision-config, and
127.0.0.1 for the exec probes and the tf-serving sidecar); no kubelet `grpc:` probe is left (it
cannot present a client certificate); the tensorflow/serving sidecar serves mutual TLS with an
SSLConfig written before it starts. A render without mTLS must set no HV_TLS_* at all.

kubernetes-validate has no schema for cert-manager's CRDs (it warns and skips them), so the
fields of Certificate and Issuer used here are checked against cert-manager.io/v1 by hand.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from expected import (
    HEALTH_NAMES,
    HEALTH_PROBE_COMMAND,
    MTLS_OVERLAYS,
    MTLS_WORKLOADS,
    PORTS,
    SERVED_BY,
    SERVERS,
    TLS_ENV,
    topology,
)
from report import Report

CERT_MANAGER = "cert-manager.io/v1"
# cert-manager.io/v1 Certificate spec fields and the enums used (its CRD, v1.x)
CERTIFICATE_FIELDS = {
    "additionalOutputFormats", "commonName", "dnsNames", "duration", "emailAddresses",
    "encodeUsagesInRequest", "ipAddresses", "isCA", "issuerRef", "keystores", "literalSubject",
    "nameConstraints", "otherNames", "privateKey", "renewBefore", "renewBeforePercentage",
    "revisionHistoryLimit", "secretName", "secretTemplate", "subject", "uris", "usages",
}
KEY_USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
}
PRIVATE_KEY_FIELDS = {"algorithm": {"RSA", "ECDSA", "Ed25519"}, "encoding": {"PKCS1", "PKCS8"},
                      "rotationPolicy": {"Never", "Always"}, "size": None}
ISSUER_TYPES = {"selfSigned", "ca", "acme", "vault", "venafi"}
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def duration_s(text: str) -> float:
    return sum(float(n) * _UNIT_S[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", text))


def _containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def dialled_hosts(config: dict) -> dict[str, set[str]]:
    """Per workload that serves gRPC: the hosts its clients dial, from the peer addresses of
    hemovision-config (`auth:50051`, `dns:///inference:50053`, `127.0.0.1:8500`) and 127.0.0.1
    (the exec probes on the pod itself)."""
    hosts: dict[str, set[str]] = {name: {"127.0.0.1"} for name in PORTS}
    for server in SERVERS.values():
        for peer in server.all_peers:
            value = str(config.get(topology.addr_env(server.name, peer), ""))
            host = value.removeprefix("dns:///").rpartition(":")[0]
            if host and peer in SERVED_BY:
                hosts.setdefault(SERVED_BY[peer], set()).add(host)
    return hosts


def names_host(cert: dict, host: str) -> bool:
    spec = cert.get("spec", {})
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host in spec.get("dnsNames", [])
    return host in spec.get("ipAddresses", [])


def check_cert_manager_objects(r: Report, certificates: dict, issuers: dict, namespace: str | None) -> None:
    """The fields cert-manager.io/v1 defines, issuers that resolve, a CA bootstrapped by a
    self-signed Issuer, server + client usages, and long DNS names in the rendered namespace."""
    for name, issuer in issuers.items():
        kinds = set(issuer.get("spec", {})) & ISSUER_TYPES
        r.check(len(kinds) == 1 and set(issuer["spec"]) == kinds, f"Issuer/{name}: exactly one of {sorted(ISSUER_TYPES)}")
    secrets = {}
    for name, cert in certificates.items():
        spec = cert.get("spec", {})
        where = f"Certificate/{name}"
        r.check(set(spec) <= CERTIFICATE_FIELDS, f"{where}: unknown fields {sorted(set(spec) - CERTIFICATE_FIELDS)}")
        secret = spec.get("secretName")
        r.check(bool(secret) and secret not in secrets, f"{where}: secretName missing or shared with {secrets.get(secret)}")
        secrets[secret] = name
        r.check(set(spec.get("usages", [])) <= KEY_USAGES, f"{where}: usages {spec.get('usages')} not cert-manager's")
        for key, value in spec.get("privateKey", {}).items():
            allowed = PRIVATE_KEY_FIELDS.get(key, set())
            r.check(key in PRIVATE_KEY_FIELDS and (allowed is None or value in allowed), f"{where}: privateKey.{key}={value}")
        for key in ("duration", "renewBefore"):
            if key in spec:
                r.check(bool(GO_DURATION.match(str(spec[key]))), f"{where}: {key} {spec[key]!r} is not a Go duration")
        if "duration" in spec and "renewBefore" in spec:
            r.check(duration_s(spec["renewBefore"]) < duration_s(spec["duration"]), f"{where}: renewBefore >= duration")
        ref = spec.get("issuerRef", {})
        issuer = issuers.get(ref.get("name")) if ref.get("kind", "Issuer") == "Issuer" else None
        r.check(ref.get("group", "cert-manager.io") == "cert-manager.io" and issuer is not None,
                f"{where}: issuerRef {ref} is not a rendered cert-manager Issuer")
        if spec.get("isCA"):
            r.check(issuer is not None and "selfSigned" in issuer["spec"], f"{where}: a CA bootstrapped by a selfSigned Issuer")
            continue
        if issuer is not None:
            ca_secret = issuer["spec"].get("ca", {}).get("secretName")
            ca_cert = next((c for c in certificates.values() if c["spec"].get("secretName") == ca_secret), None)
            r.check(ca_cert is not None and ca_cert["spec"].get("isCA") is True,
                    f"{where}: issued by {ref.get('name')}, which must be a CA Issuer whose Secret a rendered CA Certificate makes")
        r.check({"server auth", "client auth"} <= set(spec.get("usages", [])), f"{where}: usages need server auth and client auth")
        for dns in spec.get("dnsNames", []):
            parts = dns.split(".")
            if len(parts) > 1 and parts[0] != "localhost":
                r.check(parts[1] == namespace and ".".join(parts[2:]) in ("svc", "svc.cluster.local"),
                        f"{where}: {dns} is not <service>.{namespace}.svc[.cluster.local] (the rendered namespace)")


def _workloads(objs) -> list[tuple[str, dict]]:
    """(label, pod spec) of every Deployment, Job and CronJob."""
    workloads = [(f"Deployment/{n}", d["spec"]["template"]["spec"]) for n, d in objs("Deployment").items()]
    workloads += [(f"Job/{n}", j["spec"]["template"]["spec"]) for n, j in objs("Job").items()]
    workloads += [(f"CronJob/{n}", c["spec"]["jobTemplate"]["spec"]["template"]["spec"])
                  for n, c in objs("CronJob").items()]
    return workloads


def mtls_rendered(objs) -> bool:
    """Whether the render turns mutual TLS on: a cert-manager Certificate, or any HV_TLS_* set."""
    return any(c.get("apiVersion") == CERT_MANAGER for c in objs("Certificate").values()) or any(
        set(_env(c)) & set(TLS_ENV) for _, spec in _workloads(objs) for c in _containers(spec))


def check_mtls(r: Report, overlay: str, objs, namespace: str | None, config: dict) -> None:
    deployments = objs("Deployment")
    certificates = {n: c for n, c in objs("Certificate").items() if c.get("apiVersion") == CERT_MANAGER}
    issuers = {n: i for n, i in objs("Issuer").items() if i.get("apiVersion") == CERT_MANAGER}
    workloads = _workloads(objs)
    enabled = mtls_rendered(objs)
    if overlay in MTLS_OVERLAYS:
        r.check(enabled, f"{overlay} must render mutual TLS (deploy/k8s/components/mtls)")
    if not enabled:
        return
    check_cert_manager_objects(r, certificates, issuers, namespace)
    by_secret = {c["spec"].get("secretName"): c for c in certificates.values()}

    # Any container that sets HV_TLS_* sets all three, to the files of a mounted certificate Secret.
    cert_of: dict[str, dict] = {}  # workload label -> the Certificate its main container uses
    for label, spec in workloads:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in _containers(spec):
            env = _env(c)
            given = set(env) & set(TLS_ENV)
            if not given:
                continue
            where = f"{label}[{c['name']}]"
            if not r.check(given == set(TLS_ENV), f"{where}: sets {sorted(given)}: all of {sorted(TLS_ENV)} or none"):
                continue
            dirs = {posixpath.dirname(env[k]) for k in TLS_ENV}
            files = {k: posixpath.basename(env[k]) for k in TLS_ENV}
            r.check(files == TLS_ENV, f"{where}: HV_TLS_* must name {TLS_ENV} of a cert-manager Secret, got {files}")
            mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] in dirs), None)
            if not r.check(len(dirs) == 1 and mount is not None, f"{where}: HV_TLS_* files are not in one mounted volume"):
                continue
            r.check(mount.get("readOnly") is True and "subPath" not in mount,
                    f"{where}: the certificate mount must be read-only, without subPath (renewals must reach it)")
            secret = volumes.get(mount["name"], {}).get("secret", {}).get("secretName")
            cert = by_secret.get(secret)
            if r.check(cert is not None, f"{where}: mounts Secret {secret}, which no rendered Certificate makes"):
                cert_of.setdefault(label, cert)

    # Every gRPC server and client of the topology (and every Deployment) has its own certificate.
    for name in MTLS_WORKLOADS:
        r.check(name in deployments, f"{name}: in the topology (a gRPC server or client) but no Deployment")
    identities: dict[str, str] = {}
    for name, d in deployments.items():
        label = f"Deployment/{name}"
        main = d["spec"]["template"]["spec"]["containers"][0]
        r.check(set(_env(main)) >= set(TLS_ENV), f"{label}: mutual TLS is on, but {main['name']} sets no HV_TLS_*"
                f"{'' if name in MTLS_WORKLOADS else ' (and it is no gRPC server or client of the topology: add it there)'}")
        cert = cert_of.get(label)
        if cert is None:
            r.check(False, f"{label}: no certificate mounted (deploy/k8s/components/mtls/certificates.yaml)")
            continue
        r.check(names_host(cert, name), f"{label}: its certificate {cert['metadata']['name']} must name it ({name})")
        other = identities.setdefault(cert["metadata"]["name"], name)
        r.check(other == name, f"{label}: shares certificate {cert['metadata']['name']} with {other}: one identity each")

    # Each server's certificate names every host its clients dial.
    for server, hosts in dialled_hosts(config).items():
        cert = cert_of.get(f"Deployment/{server}")
        if cert is None:
            continue
        for host in sorted(hosts):
            r.check(names_host(cert, host), f"{server}: clients dial {host}, which certificate "
                    f"{cert['metadata']['name']} does not name (dnsNames / ipAddresses)")

    # No kubelet grpc: probe (it cannot present a client certificate); servers probe themselves.
    for label, spec in workloads:
        for c in _containers(spec):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                r.check("grpc" not in c.get(probe, {}),
                        f"{label}[{c['name']}]: {probe} is grpc:, which cannot speak mutual TLS: exec {HEALTH_PROBE_COMMAND}")
    for name, port in PORTS.items():
        main = deployments.get(name, {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0]
        for probe, service in (("startupProbe", HEALTH_NAMES[name]), ("readinessProbe", HEALTH_NAMES[name]),
                               ("livenessProbe", topology.LIVENESS_HEALTH_SERVICE)):
            want = [HEALTH_PROBE_COMMAND, f"127.0.0.1:{port}", service]
            got = main.get(probe, {}).get("exec", {}).get("command")
            r.check(got == want, f"{name}: {probe} must be exec {want}, got {got}")
            r.check(main.get(probe, {}).get("timeoutSeconds", 1) >= 3,
                    f"{name}: {probe} timeoutSeconds must leave a Python process and a TLS handshake 3 s or more")

    # inference's tensorflow/serving sidecar: --ssl_config_file, written before it starts from
    # inference's certificate (which names 127.0.0.1, the address inference dials it at).
    inf = deployments.get("inference")
    if inf is None:
        return
    spec = inf["spec"]["template"]["spec"]
    inits = spec.get("initContainers", [])
    index = next((i for i, c in enumerate(inits) if c["name"] == "tf-serving"), None)
    if not r.check(index is not None, "inference: no tf-serving sidecar to serve mutual TLS"):
        return
    tfs = inits[index]
    flags = [*tfs.get("command", []), *tfs.get("args", [])]
    path = next((f.split("=", 1)[1] for f in flags if f.startswith("--ssl_config_file=")), None)
    if not r.check(path is not None, "tf-serving: inference dials it over mutual TLS: --ssl_config_file= missing"):
        return
    folder = posixpath.dirname(path)
    volume = next((m["name"] for m in tfs.get("volumeMounts", []) if m["mountPath"] == folder), None)
    r.check(volume is not None, f"tf-serving: {folder} (of --ssl_config_file) is not mounted")
    writers = [c for c in inits[:index] if "restartPolicy" not in c
               and any(m["name"] == volume and m["mountPath"] == folder for m in c.get("volumeMounts", []))]
    if r.check(len(writers) == 1, f"tf-serving: one init container before it must write {path}"):
        script = " ".join([*writers[0].get("command", []), *writers[0].get("args", [])])
        for field in ("server_key", "server_cert", "custom_ca", "client_verify: true", path):
            r.check(field in script, f"{writers[0]['name']}: the SSLConfig it writes lacks {field}")
        secrets = {v["name"]: v.get("secret", {}).get("secretName") for v in spec.get("volumes", [])}
        mounted = {secrets.get(m["name"]) for m in writers[0].get("volumeMounts", [])}
        inference_cert = cert_of.get("Deployment/inference")
        r.check(inference_cert is not None and inference_cert["spec"]["secretName"] in mounted,
                f"{writers[0]['name']}: must read inference's certificate (the sidecar serves as inference)")
