"""python -m hemovision_training {serve|migrate|role-passwords|register-existing|worker|train|models}

  serve               the gRPC server (port 50056)
  migrate             Alembic migrations of schema `training` (one-off step, never at server start;
                      through HV_TRAINING_MIGRATE_DATABASE_URL, the schema owner, when set)
  role-passwords      give the runtime role hemovision_training_app the password of
                      HV_TRAINING_DATABASE_URL (where it signs in as that role with one), through
                      the migrating connection (docker-compose runs it after migrate)
  register-existing   registers published versions under HV_MODEL_BASE/<name>/ that the registry
                      lacks; activates the highest if none is active (the shipped default model)
  worker              the Celery worker: queue `training`, concurrency 1
  train ...           start a job through the gRPC API (token from HV_TOKEN), progress bar
  models ...          list | activate VERSION [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _settings():
    from hemovision_training.settings import Settings

    return Settings()


def migrate() -> int:
    from hemovision_database import ensure_database, run_migrations

    settings = _settings()
    url = settings.migrate_database_url or settings.database_url
    ensure_database(url)
    run_migrations(migrations_dir=MIGRATIONS_DIR, url=url, schema="training")
    print("training schema migrated")
    return 0


def role_passwords() -> int:
    from hemovision_database import set_role_passwords
    from hemovision_training.tables import TRAINING_APP_ROLE

    settings = _settings()
    roles = set_role_passwords(settings.migrate_database_url or settings.database_url,
                               [(settings.database_url, TRAINING_APP_ROLE)])
    print(f"role passwords set: {', '.join(roles)}" if roles else "no role password to set")
    return 0


def register_existing(name: str | None) -> int:
    from hemovision_database import create_db_engine
    from hemovision_training import drift, registry

    settings = _settings()
    name = name or settings.model_name
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            added, activated, _ = registry.register_existing(conn, model_base=settings.model_base, name=name)
        # drift references: computed from PBC val for versions without one (~40 s each, 2 cores)
        published = drift.publish_registered(engine, settings.redis_url, name, data_dir=settings.replay_data_dir)
        print(f"model {name}: drift references published for {published or 'no version'}")
    finally:
        engine.dispose()
    print(f"model {name}: registered {added or 'nothing new'}; "
          + (f"activated version {activated}" if activated else "active version unchanged"))
    return 0


def serve() -> int:
    from hemovision_grpc_server import run
    from hemovision_training.server import create_server

    run("training", _settings(), create_server)
    return 0


def worker(extra: list[str]) -> int:
    from hemovision_telemetry import configure_logging
    from hemovision_training.tasks import app, settings

    configure_logging("training-worker", settings.log_level)
    # One job at a time; a fresh child process per job (TensorFlow and the preprocessed data set
    # are released between jobs, and a child killed mid-job is detected by the parent). The job
    # runs in that prefork child: its celery_* metrics reach this process's /metrics
    # (HV_TRAINING_WORKER_METRICS_PORT) through prometheus_client's multiprocess mode, which
    # hemovision_telemetry.celery_metrics switches on for a prefork pool.
    argv = ["worker", "-Q", settings.queue, "--concurrency", "1", "--max-tasks-per-child", "1",
            "--loglevel", settings.log_level, *extra]
    app.worker_main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m hemovision_training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server")
    sub.add_parser("migrate", help="run the Alembic migrations")
    sub.add_parser("role-passwords", help="give hemovision_training_app the password of HV_TRAINING_DATABASE_URL")
    reg = sub.add_parser("register-existing", help="register published versions missing from the registry")
    reg.add_argument("--model-name", default=None)
    sub.add_parser("worker", help="run the Celery training worker (extra args go to celery)")
    from hemovision_training import cli

    cli.add_commands(sub)
    args, extra = parser.parse_known_args(argv)
    if args.command in (None, "serve"):
        return serve()
    if args.command == "migrate":
        return migrate()
    if args.command == "role-passwords":
        return role_passwords()
    if args.command == "register-existing":
        return register_existing(args.model_name)
    if args.command == "worker":
        return worker(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return cli.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
