"""History's database roles in every deployment (docs/history.md "Append-only"): the server and
the retention purge sign in as the restricted runtime role, audit deletions as the retention role,
and only the migrate step as the schema owner."""

from __future__ import annotations

from urllib.parse import urlsplit

from report import Report

# hemovision_history.tables names them (migration 0002 creates them); these checks run without
# the workspace, so they are repeated here.
APP_ROLE = "hemovision_history_app"
RETENTION_ROLE = "hemovision_audit_retention"
RUNTIME_SECRET = "hemovision-history-database"
RETENTION_SECRET = "hemovision-audit-retention"
OWNER_SECRET = "hemovision-database"


def user_of(url: object) -> str:
    return urlsplit(str(url or "")).username or ""


def check_compose_history_roles(r: Report, services: dict, migrate_command: str) -> None:
    history = services.get("history", {}).get("environment") or {}
    urls = {k: v for k, v in history.items() if k.endswith("DATABASE_URL")}
    r.check(user_of(history.get("HV_HISTORY_DATABASE_URL")) == APP_ROLE,
            f"history: HV_HISTORY_DATABASE_URL must sign in as {APP_ROLE}")
    r.check(all(user_of(v) == APP_ROLE for v in urls.values()),
            f"history: every database URL in its environment must be {APP_ROLE}'s (not the owner's): {sorted(urls)}")
    migrate = services.get("migrate", {}).get("environment") or {}
    r.check(migrate.get("HV_HISTORY_MIGRATE_DATABASE_URL") == migrate.get("HV_DATABASE_URL")
            and user_of(migrate.get("HV_DATABASE_URL")) not in ("", APP_ROLE, RETENTION_ROLE),
            "migrate: HV_HISTORY_MIGRATE_DATABASE_URL must be the owner's HV_DATABASE_URL")
    r.check(user_of(migrate.get("HV_HISTORY_DATABASE_URL")) == APP_ROLE
            and user_of(migrate.get("HV_HISTORY_RETENTION_DATABASE_URL")) == RETENTION_ROLE,
            "migrate: the runtime and retention roles' URLs (their passwords come from them)")
    step, roles = migrate_command.find("hemovision_history migrate"), migrate_command.find("hemovision_history role-passwords")
    r.check(0 <= step < roles, "migrate: `hemovision_history role-passwords` after `hemovision_history migrate`")
    for name, service in services.items():
        env = service.get("environment") or {}
        if name not in ("migrate", "history-retention") and isinstance(env, dict):
            r.check(not any(user_of(v) == RETENTION_ROLE for k, v in env.items() if k.endswith("DATABASE_URL")),
                    f"{name}: only the migrate step and the purge hold the retention role's URL")
    purge = services.get("history-retention", {})
    env = purge.get("environment") or {}
    r.check("hemovision_history purge" in " ".join(map(str, purge.get("command") or [])),
            "history-retention: runs `python -m hemovision_history purge` (the scheduled retention purge)")
    r.check(user_of(env.get("HV_HISTORY_DATABASE_URL")) == APP_ROLE
            and all(user_of(v) in (APP_ROLE, RETENTION_ROLE) for k, v in env.items() if k.endswith("DATABASE_URL"))
            and user_of(env.get("HV_HISTORY_RETENTION_DATABASE_URL")) == RETENTION_ROLE,
            "history-retention: the runtime role's URL, audit deletions through the retention role's, never the owner's")


def _secret_refs(pod_spec: dict) -> dict[str, bool]:
    """Secret name -> optional, of every container's envFrom."""
    return {ref["secretRef"]["name"]: bool(ref["secretRef"].get("optional"))
            for c in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
            for ref in c.get("envFrom", []) if "secretRef" in ref}


def check_k8s_history_roles(r: Report, objs) -> None:
    history = objs("Deployment").get("history")
    if history:
        refs = _secret_refs(history["spec"]["template"]["spec"])
        r.check(refs.get(RUNTIME_SECRET) is False and OWNER_SECRET not in refs,
                f"Deployment/history: envFrom {RUNTIME_SECRET} (the runtime role), never {OWNER_SECRET}")
    purge = objs("CronJob").get("history-retention")
    if purge:
        refs = _secret_refs(purge["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        r.check(refs.get(RUNTIME_SECRET) is False and refs.get(RETENTION_SECRET) is False and OWNER_SECRET not in refs,
                f"CronJob/history-retention: envFrom {RUNTIME_SECRET} and {RETENTION_SECRET}, never {OWNER_SECRET}")
    job = objs("Job").get("hemovision-migrate")
    if job:
        refs = _secret_refs(job["spec"]["template"]["spec"])
        r.check(OWNER_SECRET in refs and RUNTIME_SECRET not in refs,
                f"Job/hemovision-migrate: migrates as the owner ({OWNER_SECRET}), without {RUNTIME_SECRET}")
    secrets = objs("Secret")
    for name, key, role in ((RUNTIME_SECRET, "HV_HISTORY_DATABASE_URL", APP_ROLE),
                            (RETENTION_SECRET, "HV_HISTORY_RETENTION_DATABASE_URL", RETENTION_ROLE)):
        if name in secrets:
            r.check(user_of(secrets[name].get("stringData", {}).get(key)) == role,
                    f"Secret/{name}: {key} must sign in as {role}")
