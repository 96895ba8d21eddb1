"""Command-line client of the training service: `train` (with a progress bar) and `models`.

    HV_TOKEN=<access token> python -m hemovision_training train --data ../shared/data/pbc_128 --epochs 30 --wait
    python -m hemovision_training models list
    HV_TOKEN=... python -m hemovision_training models activate 3 [--force --reason "..."]

Talks to HV_TRAINING_ADDR (default 127.0.0.1:50056) with `authorization: Bearer $HV_TOKEN`;
over mutual TLS when HV_TLS_CERT_FILE / HV_TLS_KEY_FILE / HV_TLS_CA_FILE are set (a stack started
with `hemovision up --tls`: the files var/secrets/tls/cli.{pem,key} and ca.pem).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import grpc

DEFAULT_ADDR = "127.0.0.1:50056"
TIMEOUT_S = 30.0


def add_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="start a training job (token from HV_TOKEN)")
    t.add_argument("--data", required=True, help="data set directory (ImageFolder + splits.csv) on the training host")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--batch-size", type=int, default=0)
    t.add_argument("--input-size", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit-per-class", type=int, default=0)
    t.add_argument("--learning-rate", type=float, default=0.0)
    t.add_argument("--model-name", default="")
    t.add_argument("--auto-activate", action="store_true")
    t.add_argument("--wait", action="store_true", help="stream progress until the job ends")
    m = sub.add_parser("models", help="list or activate model versions")
    msub = m.add_subparsers(dest="models_command", required=True)
    ml = msub.add_parser("list")
    ml.add_argument("--model-name", default="")
    ma = msub.add_parser("activate")
    ma.add_argument("version", type=int)
    ma.add_argument("--model-name", default="")
    ma.add_argument("--force", action="store_true", help="skip the quality gate (platform_admin; audited)")
    ma.add_argument("--reason", default="")


def _metadata() -> tuple[tuple[str, str], ...]:
    token = os.environ.get("HV_TOKEN", "").strip()
    return (("authorization", f"Bearer {token}"),) if token else ()


def progress_bar(done: int, total: int, width: int = 30) -> str:
    total = max(total, 1)
    filled = int(width * min(done, total) / total)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


def _job_line(job) -> str:
    from hemovision.training.v1 import training_pb2

    status = training_pb2.JobStatus.Name(job.status).removeprefix("JOB_STATUS_").lower()
    metrics = " ".join(f"{k}={job.metrics[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                       if k in job.metrics)
    return f"{progress_bar(job.epoch, job.total_epochs)} {status:<9} {job.phase} {metrics}".rstrip()


def _fmt_time(ts) -> str:
    if not ts.seconds:
        return "-"
    return dt.datetime.fromtimestamp(ts.seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def run(args: argparse.Namespace) -> int:
    from hemovision.training.v1 import training_pb2, training_pb2_grpc

    addr = os.environ.get("HV_TRAINING_ADDR", DEFAULT_ADDR)
    md = _metadata()
    from hemovision_grpc_server import create_blocking_channel

    with create_blocking_channel(addr) as channel:
        stub = training_pb2_grpc.TrainingServiceStub(channel)
        try:
            if args.command == "train":
                started = stub.StartTrainingJob(
                    training_pb2.StartTrainingJobRequest(
                        config=training_pb2.TrainingConfig(
                            data_dir=os.path.abspath(args.data), model_name=args.model_name, epochs=args.epochs,
                            batch_size=args.batch_size, input_size=args.input_size, seed=args.seed,
                            limit_per_class=args.limit_per_class, learning_rate=args.learning_rate,
                            auto_activate=args.auto_activate,
                        )
                    ),
                    metadata=md, timeout=TIMEOUT_S,
                )
                print(f"job {started.id} queued")
                if not args.wait:
                    return 0
                tty = sys.stdout.isatty()
                last = None
                job = started
                for job in stub.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(id=started.id), metadata=md):
                    line = _job_line(job)
                    if line != last:
                        print(("\r" + line.ljust(100)) if tty else line, end="" if tty else "\n", flush=True)
                        last = line
                if tty:
                    print()
                if job.status == training_pb2.JOB_STATUS_SUCCEEDED:
                    print(f"succeeded: model version {job.model_version}")
                    return 0
                print(f"{training_pb2.JobStatus.Name(job.status)}: {job.error}", file=sys.stderr)
                return 1
            if args.command == "models" and args.models_command == "list":
                reply = stub.ListModelVersions(training_pb2.ListModelVersionsRequest(model_name=args.model_name),
                                               metadata=md, timeout=TIMEOUT_S)
                print(f"{'VERSION':>7}  {'STATUS':<10} {'ACC':>7} {'MACRO_F1':>8} {'ECE':>7}  CREATED")
                for v in reply.versions:
                    status = training_pb2.VersionStatus.Name(v.status).removeprefix("VERSION_STATUS_").lower()
                    m = v.metrics
                    print(f"{v.version:>7}  {status:<10} {m.get('accuracy', float('nan')):>7.4f} "
                          f"{m.get('macro_f1', float('nan')):>8.4f} {m.get('ece', float('nan')):>7.4f}  "
                          f"{_fmt_time(v.created_at)}")
                return 0
            if args.command == "models" and args.models_command == "activate":
                v = stub.ActivateModelVersion(
                    training_pb2.ActivateModelVersionRequest(model_name=args.model_name, version=args.version,
                                                             force=args.force, reason=args.reason),
                    metadata=md, timeout=TIMEOUT_S,
                )
                print(f"model {v.name} version {v.version} is active")
                return 0
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
    return 2
