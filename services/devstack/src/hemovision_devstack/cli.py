"""The `up` / `down` commands: `hemovision up|down` (through the gateway CLI's `hemovision.commands`
entry points), `hemovision-devstack up|down` and `python -m hemovision_devstack up|down`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hemovision_devstack.backup import BackupError, Stores, backup, restore
from hemovision_devstack.plan import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, StackConfig
from hemovision_devstack.supervisor import down, up


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("HV_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("HV_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("HV_PORT_OFFSET", "0")))
    parser.add_argument("--model-base", type=Path, default=_env_path("HV_MODEL_BASE"),
                        help="SavedModels as <base>/<name>/<version>/ (env HV_MODEL_BASE; default models/)")
    parser.add_argument("--var-dir", type=Path, default=_env_path("HV_VAR_DIR"),
                        help="local state: blobs, secrets, logs (env HV_VAR_DIR; default var/)")
    parser.add_argument("--no-workers", action="store_true", help="do not start the Celery workers")
    parser.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                        help="mutual TLS between every process, with a local CA and a certificate per process "
                             "made under <var>/secrets/tls (env HV_TLS=1; default off: plaintext)")


def config_from_args(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        root=Path.cwd(),
        database_url=args.database_url,
        redis_url=args.redis_url,
        port_offset=args.port_offset,
        model_base=args.model_base,
        var_dir=args.var_dir,
        workers=not args.no_workers,
        tls=_env_flag("HV_TLS") if args.tls is None else args.tls,
        port_overrides=StackConfig.ports_from_env(os.environ),
    )


def cmd_up(args: argparse.Namespace) -> int:
    return up(config_from_args(args))


def cmd_down(args: argparse.Namespace) -> int:
    return down(config_from_args(args))


def _stores(args: argparse.Namespace) -> Stores:
    cfg = config_from_args(args)
    return Stores(database_url=cfg.database_url, blob_root=cfg.var / "blobs", model_base=cfg.models)


def cmd_backup(args: argparse.Namespace) -> int:
    try:
        manifest = backup(_stores(args), args.directory)
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{n} {t}" for t, n in manifest["counts"].items())
    print(f"backup written to {args.directory.resolve()}: {counts}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        counts = restore(args.directory, _stores(args))
    except BackupError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 2
    print("restored: " + ", ".join(f"{n} {t}" for t, n in counts.items()) + "; start it with `hemovision up`")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Adds `up`, `down`, `backup` and `restore` (each with its arguments and `func`) to a command
    line's subcommands."""
    for name, helptext, func in (("up", "run the whole system locally (Ctrl-C stops it)", cmd_up),
                                 ("down", "stop a system started by `hemovision up`", cmd_down),
                                 ("backup", "copy the database, blob store and model base into a new directory",
                                  cmd_backup),
                                 ("restore", "restore a backup into an empty database, blob store and model base",
                                  cmd_restore)):
        parser = subparsers.add_parser(name, help=helptext)
        if name in ("backup", "restore"):
            parser.add_argument("directory", type=Path, help="the backup directory")
        add_arguments(parser)
        parser.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-devstack", description="the whole HemoVision system locally")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
