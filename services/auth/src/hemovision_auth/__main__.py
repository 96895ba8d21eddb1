"""`python -m hemovision_auth [serve|migrate|role-passwords|create-admin|rotate-key]` (console script hemovision-auth).

The server, create-admin and rotate-key sign in through HV_AUTH_DATABASE_URL (in every deployment
the restricted runtime role hemovision_auth_app); `migrate` through HV_AUTH_MIGRATE_DATABASE_URL
when set (the schema owner); `role-passwords` gives hemovision_auth_app the password of
HV_AUTH_DATABASE_URL through the migrating connection, where that URL signs in as it with a
password (docker-compose runs it after migrate).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from hemovision_auth.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: Settings) -> None:
    from hemovision_database import ensure_database, run_migrations

    url = settings.migrate_database_url or settings.database_url
    ensure_database(url)
    run_migrations(migrations_dir=MIGRATIONS, url=url, schema="auth")


def set_role_passwords(settings: Settings) -> list[str]:
    """See `role-passwords` above; returns the roles whose password it set (sent hashed)."""
    from hemovision_auth.tables import AUTH_APP_ROLE
    from hemovision_database import set_role_passwords as set_passwords

    return set_passwords(settings.migrate_database_url or settings.database_url,
                         [(settings.database_url, AUTH_APP_ROLE)])


def _service(settings: Settings):  # noqa: ANN202
    from hemovision_auth.mailer import LogMailer
    from hemovision_auth.server import build_service
    from hemovision_database import create_db_engine

    return build_service(settings, engine=create_db_engine(settings.database_url, pool_size=1), redis=None, mailer=LogMailer())


def create_admin(settings: Settings, args: argparse.Namespace) -> int:
    from hemovision_grpc_server import ServiceError

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password:
        password = args.password
    else:
        password = getpass.getpass("Password for the platform_admin: ")
    service = _service(settings)
    try:
        outcome, user_id = service.users.create_admin_sync(email=args.email, password=password, promote=args.promote)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        service.engine.dispose()
    messages = {
        "created": f"created platform_admin {args.email} ({user_id})",
        "exists": f"{args.email} is already a platform_admin ({user_id}); nothing changed (password not updated)",
        "promoted": f"promoted {args.email} ({user_id}) to platform_admin",
    }
    print(messages[outcome])
    return 0


def rotate_key(settings: Settings) -> int:
    service = _service(settings)
    try:
        key = service.keys.rotate_sync()
    finally:
        service.engine.dispose()
    print(f"new current signing key {key.kid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-auth", description="HemoVision auth service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (default)")
    sub.add_parser("migrate", help="create the database if missing and run the Alembic migrations")
    sub.add_parser("role-passwords", help="give hemovision_auth_app the password of HV_AUTH_DATABASE_URL")
    admin = sub.add_parser("create-admin", help="create the first platform_admin")
    admin.add_argument("--email", required=True)
    group = admin.add_mutually_exclusive_group()
    group.add_argument("--password", help="the password (prefer --password-stdin: argv is visible to other users)")
    group.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    admin.add_argument("--promote", action="store_true", help="make an existing user platform_admin")
    sub.add_parser("rotate-key", help="make a new signing key current (the old one stays published)")
    args = parser.parse_args(argv)

    settings = Settings()
    command = args.command or "serve"
    if command == "serve":
        from hemovision_auth.server import create_server
        from hemovision_grpc_server import run

        run("auth", settings, create_server)
        return 0

    from hemovision_telemetry import configure_logging

    configure_logging("auth", settings.log_level)
    if command == "migrate":
        migrate(settings)
        print("auth schema migrated")
        return 0
    if command == "role-passwords":
        roles = set_role_passwords(settings)
        print(f"role passwords set: {', '.join(roles)}" if roles else "no role password to set")
        return 0
    if command == "create-admin":
        return create_admin(settings, args)
    return rotate_key(settings)


if __name__ == "__main__":
    sys.exit(main())
