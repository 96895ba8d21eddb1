"""deploy/checks/db_role_checks.py catches a workload that would sign in to PostgreSQL as another
role than its own (docs/decisions.md 55): the real docker-compose.yml and Kubernetes base pass,
and copies with one workload given the schema owner's URL or Secret (or another service's) fail."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "checks"))

from compose_checks import command_text, load_compose  # noqa: E402
from db_role_checks import check_compose_db_roles, check_k8s_db_roles  # noqa: E402
from report import Report  # noqa: E402

K8S_FILES = [*sorted((ROOT / "deploy" / "k8s" / "base").glob("*.yaml")),
             ROOT / "deploy" / "k8s" / "components" / "placeholder-secrets" / "secrets.yaml"]


def _compose_errors(services: dict) -> list[str]:
    r = Report("compose")
    check_compose_db_roles(r, services, command_text(services["migrate"].get("command")))
    return r.errors


def _k8s_errors(docs: list[dict]) -> list[str]:
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    r = Report("k8s")
    check_k8s_db_roles(r, lambda kind: by_kind.get(kind, {}))
    return r.errors


@pytest.fixture(scope="module")
def compose_services() -> dict:
    return load_compose(ROOT / "docker-compose.yml")["services"]


@pytest.fixture(scope="module")
def k8s_docs() -> list[dict]:
    return [d for f in K8S_FILES for d in yaml.safe_load_all(f.read_text()) if d and "kind" in d and "metadata" in d]


def test_the_real_files_pass(compose_services, k8s_docs):
    assert _compose_errors(compose_services) == []
    assert _k8s_errors(k8s_docs) == []


@pytest.mark.parametrize(("service", "key", "value_of", "complaint"), [
    ("auth", "HV_DATABASE_URL", "owner", "auth: only the migrate service holds the schema owner's URL"),
    ("training-worker", "HV_TRAINING_DATABASE_URL", "owner", "training-worker: only the migrate service"),
    ("training", "HV_TRAINING_DATABASE_URL", "auth", "training: HV_TRAINING_DATABASE_URL must sign in as"),
    ("gateway", "HV_DATABASE_URL", "auth", "gateway: no database URL"),
    ("auth", "HV_AUTH_DATABASE_URL", "retention", "auth: only the migrate step and the purge"),
])
def test_compose_check_catches(compose_services, service, key, value_of, complaint):
    migrate = compose_services["migrate"]["environment"]
    value = {"owner": migrate["HV_DATABASE_URL"], "auth": migrate["HV_AUTH_DATABASE_URL"],
             "retention": migrate["HV_HISTORY_RETENTION_DATABASE_URL"]}[value_of]
    services = copy.deepcopy(compose_services)
    services[service].setdefault("environment", {})[key] = value
    errors = _compose_errors(services)
    assert any(complaint in e for e in errors), errors


def test_compose_check_wants_every_role_password_step(compose_services):
    services = copy.deepcopy(compose_services)
    services["migrate"]["command"] = [c.replace("python -m hemovision_training role-passwords &&", "")
                                      for c in services["migrate"]["command"]]
    errors = _compose_errors(services)
    assert any("hemovision_training role-passwords" in e for e in errors), errors


@pytest.mark.parametrize(("kind", "name", "secret", "complaint"), [
    ("Deployment", "auth", "hemovision-database", "Deployment/auth: never the schema owner's Secret"),
    ("Deployment", "gateway", "hemovision-database", "Deployment/gateway: never the schema owner's Secret"),
    ("Deployment", "training-worker", "hemovision-auth-database", "another service's database Secret"),
    ("Deployment", "reports", "hemovision-history-database", "another service's database Secret"),
    ("Job", "hemovision-migrate", "hemovision-training-database", "without the runtime Secrets"),
])
def test_k8s_check_catches(k8s_docs, kind, name, secret, complaint):
    docs = copy.deepcopy(k8s_docs)
    target = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    target["spec"]["template"]["spec"]["containers"][0]["envFrom"].append({"secretRef": {"name": secret}})
    errors = _k8s_errors(docs)
    assert any(complaint in e for e in errors), errors


def test_k8s_check_wants_the_runtime_secret(k8s_docs):
    docs = copy.deepcopy(k8s_docs)
    auth = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "auth")
    env_from = auth["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    env_from[:] = [ref for ref in env_from if ref.get("secretRef", {}).get("name") != "hemovision-auth-database"]
    errors = _k8s_errors(docs)
    assert any("Deployment/auth: envFrom hemovision-auth-database" in e for e in errors), errors


def test_k8s_check_refuses_a_literal_database_url(k8s_docs):
    """A URL written into a container's env (or the ConfigMap) would carry a role and its password
    past the Secret checks."""
    docs = copy.deepcopy(k8s_docs)
    reports = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "reports")
    reports["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
        {"name": "HV_DATABASE_URL", "value": "postgresql+psycopg2://postgres:pw@postgres/hemovision"})
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hemovision-config")
    config["data"]["HV_TRAINING_DATABASE_URL"] = "postgresql+psycopg2://postgres@postgres/hemovision"
    errors = _k8s_errors(docs)
    assert any("Deployment/reports: database URL(s) ['HV_DATABASE_URL'] set as literal values" in e for e in errors), errors
    assert any("ConfigMap/hemovision-config: holds database URL(s) ['HV_TRAINING_DATABASE_URL']" in e for e in errors), errors
