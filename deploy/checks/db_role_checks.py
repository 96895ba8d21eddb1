"""Database roles in every deployment (docs/decisions.md 55, docs/history.md "Append-only"): auth,
history and training (server and worker) sign in as their own restricted runtime roles, history's
retention purge's audit deletions as the retention role, and only the migrate step as the schema
owner."""

from __future__ import annotations

from urllib.parse import urlsplit

from report import Report

# The services' tables.py name the roles (their migrations create them); these checks run without
# the workspace, so they are repeated here. service -> (runtime role, its Kubernetes Secret)
RUNTIME_ROLES = {
    "auth": ("hemovision_auth_app", "hemovision-auth-database"),
    "history": ("hemovision_history_app", "hemovision-history-database"),
    "training": ("hemovision_training_app", "hemovision-training-database"),
}
# Workloads (compose services, Kubernetes Deployments / CronJobs) -> the service whose role they use.
WORKLOAD_SERVICE = {"auth": "auth", "history": "history", "history-retention": "history",
                    "training": "training", "training-worker": "training"}
RETENTION_ROLE = "hemovision_audit_retention"
RETENTION_SECRET = "hemovision-audit-retention"
RETENTION_WORKLOAD = "history-retention"
OWNER_SECRET = "hemovision-database"
MIGRATE = "migrate"
MIGRATE_JOB = "hemovision-migrate"


def user_of(url: object) -> str:
    return urlsplit(str(url or "")).username or ""


def url_env(service: str) -> str:
    return f"HV_{service.upper()}_DATABASE_URL"


def _database_urls(env: object) -> dict[str, str]:
    return {k: str(v) for k, v in env.items() if k.endswith("DATABASE_URL")} if isinstance(env, dict) else {}


def check_compose_db_roles(r: Report, services: dict, migrate_command: str) -> None:
    migrate = services.get(MIGRATE, {}).get("environment") or {}
    owner = user_of(migrate.get("HV_DATABASE_URL"))
    runtime = {role for role, _ in RUNTIME_ROLES.values()}
    r.check(owner not in ("", *runtime, RETENTION_ROLE), "migrate: HV_DATABASE_URL must be the schema owner's")
    for service, (role, _) in RUNTIME_ROLES.items():
        r.check(migrate.get(f"HV_{service.upper()}_MIGRATE_DATABASE_URL") == migrate.get("HV_DATABASE_URL"),
                f"migrate: HV_{service.upper()}_MIGRATE_DATABASE_URL must be the owner's HV_DATABASE_URL")
        r.check(user_of(migrate.get(url_env(service))) == role,
                f"migrate: {url_env(service)} signs in as {role} (role-passwords takes its password from it)")
        step = migrate_command.find(f"hemovision_{service} migrate")
        roles = migrate_command.find(f"hemovision_{service} role-passwords")
        r.check(0 <= step < roles, f"migrate: `hemovision_{service} role-passwords` after `hemovision_{service} migrate`")
    r.check(user_of(migrate.get("HV_HISTORY_RETENTION_DATABASE_URL")) == RETENTION_ROLE,
            "migrate: HV_HISTORY_RETENTION_DATABASE_URL signs in as the retention role (its password)")
    for name, svc in services.items():
        urls = _database_urls(svc.get("environment"))
        if name == MIGRATE:
            continue
        r.check(not any(user_of(v) == owner for v in urls.values()),
                f"{name}: only the migrate service holds the schema owner's URL: {sorted(urls)}")
        if name != RETENTION_WORKLOAD:
            r.check(not any(user_of(v) == RETENTION_ROLE for v in urls.values()),
                    f"{name}: only the migrate step and the purge hold the retention role's URL")
        service = WORKLOAD_SERVICE.get(name)
        if service is None:
            r.check(not urls, f"{name}: no database URL (it owns no schema): {sorted(urls)}")
            continue
        role = RUNTIME_ROLES[service][0]
        allowed = {role, RETENTION_ROLE} if name == RETENTION_WORKLOAD else {role}
        r.check(user_of(urls.get(url_env(service))) == role, f"{name}: {url_env(service)} must sign in as {role}")
        r.check(all(user_of(v) in allowed for v in urls.values()),
                f"{name}: every database URL in its environment must be {role}'s: {sorted(urls)}")
    purge = services.get(RETENTION_WORKLOAD, {})
    r.check("hemovision_history purge" in " ".join(map(str, purge.get("command") or [])),
            "history-retention: runs `python -m hemovision_history purge` (the scheduled retention purge)")
    r.check(user_of((purge.get("environment") or {}).get("HV_HISTORY_RETENTION_DATABASE_URL")) == RETENTION_ROLE,
            "history-retention: audit deletions through the retention role's URL")


def _secret_refs(pod_spec: dict) -> dict[str, bool]:
    """Secret name -> optional, of every container's envFrom and env valueFrom."""
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    refs = {ref["secretRef"]["name"]: bool(ref["secretRef"].get("optional"))
            for c in containers for ref in c.get("envFrom", []) if "secretRef" in ref}
    for c in containers:
        for var in c.get("env", []):
            key_ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if key_ref:
                refs.setdefault(key_ref["name"], bool(key_ref.get("optional")))
    return refs


def check_k8s_db_roles(r: Report, objs) -> None:
    pods = {f"Deployment/{n}": d["spec"]["template"]["spec"] for n, d in objs("Deployment").items()}
    pods |= {f"StatefulSet/{n}": d["spec"]["template"]["spec"] for n, d in objs("StatefulSet").items()}
    pods |= {f"CronJob/{n}": c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for n, c in objs("CronJob").items()}
    pods |= {f"Job/{n}": j["spec"]["template"]["spec"] for n, j in objs("Job").items() if n != MIGRATE_JOB}
    runtime_secrets = {secret: service for service, (_, secret) in RUNTIME_ROLES.items()}
    for label, spec in pods.items():
        refs = _secret_refs(spec)
        r.check(OWNER_SECRET not in refs, f"{label}: never the schema owner's Secret {OWNER_SECRET} (only the migrate Job)")
        service = WORKLOAD_SERVICE.get(label.split("/", 1)[1])
        if service is not None:
            secret = RUNTIME_ROLES[service][1]
            r.check(refs.get(secret) is False, f"{label}: envFrom {secret} (the runtime role {RUNTIME_ROLES[service][0]})")
        others = {s for s in refs if s in runtime_secrets and runtime_secrets[s] != service}
        r.check(not others, f"{label}: another service's database Secret {sorted(others)}")
        if label != f"CronJob/{RETENTION_WORKLOAD}":
            r.check(RETENTION_SECRET not in refs, f"{label}: only the retention CronJob holds {RETENTION_SECRET}")
        # a database URL comes from its Secret only: never a literal `env: value` (it would carry
        # a role and its password past these checks)
        literal = sorted(e["name"] for c in [*spec.get("initContainers", []), *spec.get("containers", [])]
                         for e in c.get("env", []) if e["name"].endswith("DATABASE_URL") and "value" in e)
        r.check(not literal, f"{label}: database URL(s) {literal} set as literal values, not from their Secret")
    for name, cm in objs("ConfigMap").items():
        in_config = sorted(k for k in (cm.get("data") or {}) if k.endswith("DATABASE_URL"))
        r.check(not in_config, f"ConfigMap/{name}: holds database URL(s) {in_config}; they belong in Secrets")
    purge = objs("CronJob").get(RETENTION_WORKLOAD)
    if purge:
        refs = _secret_refs(purge["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        r.check(refs.get(RETENTION_SECRET) is False, f"CronJob/{RETENTION_WORKLOAD}: envFrom {RETENTION_SECRET}")
    job = objs("Job").get(MIGRATE_JOB)
    if job:
        refs = _secret_refs(job["spec"]["template"]["spec"])
        held = sorted(set(runtime_secrets) & set(refs))
        r.check(OWNER_SECRET in refs and not held,
                f"Job/{MIGRATE_JOB}: migrates as the owner ({OWNER_SECRET}), without the runtime Secrets {held}")
    secrets = objs("Secret")
    expected = [(secret, url_env(service), role) for service, (role, secret) in RUNTIME_ROLES.items()]
    for name, key, role in [*expected, (RETENTION_SECRET, "HV_HISTORY_RETENTION_DATABASE_URL", RETENTION_ROLE)]:
        if name in secrets:
            r.check(user_of(secrets[name].get("stringData", {}).get(key)) == role,
                    f"Secret/{name}: {key} must sign in as {role}")
