"""`hemovision`: the command line for operators and ML engineers (REST calls to the gateway).

    hemovision login --email you@lab.example          # stores a token in ~/.config/hemovision/token
    hemovision predict cells/ more.zip one.png --format csv > results.csv
    hemovision models list
    hemovision models activate 3 --reason "better macro-F1"
    hemovision models deprecate 2 --reason "mislabelled training data"   (restore: models restore 2)
    hemovision rollout start 3 --canary 10            # 10 % of requests to v3 (or --shadow)
    hemovision rollout status                          # live requests, latency, agreement per version
    hemovision rollout promote | abort
    hemovision train --epochs 5 --limit-per-class 200 --watch
    hemovision adapt start --wait                      # adapt to our lab (org_admin), follow it to the end
    hemovision adapt rollback                          # back to the previous version
    hemovision admin create --email admin@lab.example  # bootstraps the first platform_admin (via auth)
    hemovision up | down                               # the whole system locally (added by hemovision-devstack)

The gateway URL comes from --url or HV_GATEWAY_URL (default http://127.0.0.1:8000); the token
from HV_TOKEN, else from the file `hemovision login` wrote.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import httpx

TOKEN_FILE = Path(os.environ.get("HV_TOKEN_FILE", Path.home() / ".config" / "hemovision" / "token"))


# Subcommands other installed distributions add to `hemovision`: each entry point is a function
# that adds its subparsers (hemovision-devstack adds `up` and `down`). The gateway imports none
# of them, so its image and its operators' installs carry no dev-stack code.
COMMANDS_ENTRY_POINTS = "hemovision.commands"

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "roc_auc_ovr_macro")


class CliError(Exception):
    pass


def _token() -> str:
    token = os.environ.get("HV_TOKEN")
    if token:
        return token
    if TOKEN_FILE.exists():
        return TOKEN_FILE.read_text().strip()
    raise CliError("not signed in: run `hemovision login` or set HV_TOKEN")


def _client(args) -> httpx.Client:
    return httpx.Client(base_url=args.url, timeout=60.0)


def _check(r: httpx.Response) -> dict:
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
            raise CliError(f"{r.status_code} {err['code']}: {err['message']}")
        except (ValueError, KeyError):
            raise CliError(f"{r.status_code}: {r.text[:200]}") from None
    return r.json() if r.content else {}


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {_token()}"}


def cmd_login(args) -> int:
    password = args.password or os.environ.get("HV_PASSWORD") or getpass.getpass("Password: ")
    with _client(args) as c:
        body = _check(c.post("/api/v1/auth/login", json={"email": args.email, "password": password}))
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    TOKEN_FILE.touch(mode=0o600, exist_ok=True)
    TOKEN_FILE.write_text(body["access_token"])
    os.chmod(TOKEN_FILE, 0o600)
    print(f"signed in; token stored in {TOKEN_FILE} (valid {body['expires_in']} s)")
    return 0


def cmd_models_list(args) -> int:
    with _client(args) as c:
        items = _check(c.get("/api/v1/models", headers=_auth()))["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    present = {k for m in items for k in m["metrics"]}
    keys = [k for k in HEADLINE_METRICS if k in present] or sorted(present)[:5]
    print("\t".join(["name", "version", "status", *keys]))
    for m in items:
        status = m["status"] + (" (deprecated)" if m.get("deprecated") else "")
        print("\t".join([m["name"], str(m["version"]), status, *[f"{m['metrics'].get(k, float('nan')):.4f}" for k in keys]]))
    return 0


def cmd_models_activate(args) -> int:
    with _client(args) as c:
        v = _check(c.post(f"/api/v1/models/{args.version}/activate", headers=_auth(),
                          json={"name": args.name, "force": args.force, "reason": args.reason}))
    print(f"{v['name']} v{v['version']} is {v['status']}")
    return 0


def cmd_models_deprecate(args) -> int:
    action = "restore" if args.models_command == "restore" else "deprecate"
    with _client(args) as c:
        v = _check(c.post(f"/api/v1/models/{args.version}/{action}", headers=_auth(),
                          json={"name": args.name, "reason": args.reason}))
    state = f"deprecated ({v['deprecation_reason']})" if v["deprecated"] else "not deprecated"
    print(f"{v['name']} v{v['version']} is {v['status']}, {state}")
    return 0


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def _print_rollout(r: dict) -> None:
    share = f"canary {r['canary_percent']} %" if r["mode"] == "canary" else "shadow"
    print(f"rollout {r['id']}: {r['model_name']} v{r['candidate_version']} ({share}) beside "
          f"v{r['baseline_version']} - {r['status']}")
    if r.get("end_reason"):
        print(f"  ended: {r['end_reason']}")
    st = r.get("stats")
    if not st:
        return
    if not st["available"]:
        print("  live statistics unavailable")
    print("  role       version  requests  cells   p50        p95")
    for v in st["versions"]:
        print(f"  {v['role']:<10} v{v['version']:<7} {v['requests']:<9} {v['cells']:<7} "
              f"{_ms(v['latency_p50_ms']):<10} {_ms(v['latency_p95_ms'])}")
    if r["mode"] == "shadow":
        rate = "-" if st["agreement_rate"] is None else f"{100 * st['agreement_rate']:.1f} %"
        print(f"  agreement {rate} of {st['compared_cells']} cells; shadow runs dropped {st['shadow_dropped']}, "
              f"skipped {st['shadow_skipped']}, failed {st['shadow_failed']}")


def cmd_rollout(args) -> int:
    action = args.rollout_command
    with _client(args) as c:
        if action == "start":
            body = {"name": args.name, "version": args.version, "reason": args.reason,
                    "mode": "shadow" if args.shadow else "canary"}
            if not args.shadow:
                body["canary_percent"] = args.canary
            r = _check(c.post("/api/v1/rollouts", headers=_auth(), json=body))
        elif action == "status":
            r = _check(c.get("/api/v1/rollouts/current", headers=_auth(), params={"name": args.name}))
        else:
            r = _check(c.post(f"/api/v1/rollouts/current/{action}", headers=_auth(),
                              json={"name": args.name, "reason": args.reason}))
    if getattr(args, "json", False):
        print(json.dumps(r, indent=2))
    else:
        _print_rollout(r)
    return 0


def _watch(c: httpx.Client, job_id: str) -> int:
    with c.stream("GET", f"/api/v1/training-jobs/{job_id}/events", headers=_auth(), timeout=None) as r:
        if r.status_code >= 400:
            r.read()
            _check(r)
        event = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                job = json.loads(line[5:])
                metrics = ", ".join(f"{k}={v:.4f}" for k, v in list(job["metrics"].items())[:4])
                print(f"[{job['status']}] {job['phase'] or ''} epoch {job['epoch']}/{job['total_epochs']} {metrics}",
                      flush=True)
                if event in ("done", "error"):
                    return 0 if job.get("status") == "succeeded" else 1
    return 1


def cmd_train(args) -> int:
    config = {"epochs": args.epochs, "limit_per_class": args.limit_per_class, "auto_activate": args.auto_activate,
              "model_name": args.name, "data_dir": args.data_dir, "batch_size": args.batch_size, "seed": args.seed}
    with _client(args) as c:
        job = _check(c.post("/api/v1/training-jobs", headers=_auth(), json=config))
        print(f"training job {job['id']} {job['status']}")
        if args.watch:
            return _watch(c, job["id"])
    return 0


def cmd_train_watch(args) -> int:
    with _client(args) as c:
        return _watch(c, args.job_id)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _adaptation_line(a: dict) -> str:
    line = f"[{a['status']}]"
    epochs = f"epoch {a['epoch']}/{a['total_epochs']}"
    if a["status"] == "running" and a["total_epochs"]:
        line += f" {epochs}"
    if a["phase"] and a["phase"] not in (a["status"], epochs):
        line += f" ({a['phase']})"
    return line


def _adaptation_outcome(a: dict) -> None:
    """The before/after figures and, for a refused or failed run, why."""
    if a["holdout_accuracy_before"] is not None or a["holdout_accuracy_after"] is not None:
        print(f"held-back cells ({a['holdout_cells']} of {a['cells']}): "
              f"{_pct(a['holdout_accuracy_before'])} -> {_pct(a['holdout_accuracy_after'])}")
        print(f"PBC val: {_pct(a['pbc_val_accuracy_before'])} -> {_pct(a['pbc_val_accuracy_after'])}")
    if a["status"] == "succeeded":
        print(f"{a['model_name']} v{a['model_version']} now serves your organization "
              "(`hemovision adapt rollback` undoes it)")
    for reason in a["gate_reasons"]:
        print(f"gate: {reason}")
    if a["error"]:
        print(f"error: {a['error']}")


def _adapt_wait(c: httpx.Client, a: dict, interval: float) -> int:
    """Polls until a final status (there is no event stream for adaptations), one line per change."""
    last = ""
    try:
        while True:
            line = _adaptation_line(a)
            if line != last:
                print(line, flush=True)
                last = line
            if a["finished"]:
                break
            time.sleep(interval)
            a = _check(c.get(f"/api/v1/adaptations/{a['id']}", headers=_auth()))
    except KeyboardInterrupt:
        print(f"\nstill {a['status']}; follow it with `hemovision adapt status {a['id']}`", file=sys.stderr)
        return 130
    except CliError as exc:
        # e.g. the access token expired during a long run: the adaptation itself goes on
        raise CliError(f"{exc} (the adaptation goes on: `hemovision adapt status {a['id']}`)") from None
    _adaptation_outcome(a)
    return 0 if a["status"] == "succeeded" else 1


def cmd_adapt_start(args) -> int:
    with _client(args) as c:
        a = _check(c.post("/api/v1/adaptations", headers=_auth(), json={"model_name": args.name}))
        print(f"adaptation {a['id']} {a['status']}: {a['cells']} reviewed cells, "
              f"{a['holdout_cells']} held back to check it")
        if args.wait:
            return _adapt_wait(c, a, args.interval)
    return 0


def cmd_adapt_status(args) -> int:
    with _client(args) as c:
        a = _check(c.get(f"/api/v1/adaptations/{args.id}", headers=_auth()))
    if args.json:
        print(json.dumps(a, indent=2))
        return 0
    print(f"adaptation {a['id']} {_adaptation_line(a)}")
    _adaptation_outcome(a)
    return 0


def cmd_adapt_list(args) -> int:
    with _client(args) as c:
        items = _check(c.get("/api/v1/adaptations", headers=_auth(), params={"limit": args.limit}))["items"]
        served = _check(c.get("/api/v1/organization/model", headers=_auth(), params={"name": args.name}))
    if args.json:
        print(json.dumps({"serving": served, "items": items}, indent=2))
        return 0
    source = "adapted" if served["adapted"] else "platform"
    stale = " (stale: the platform model changed since; adapt again)" if served["stale"] else ""
    print(f"serving: {served['model_name']} v{served['version']} ({source}; platform v{served['platform_version']})"
          f"{stale}")
    print("\t".join(["id", "status", "created", "cells", "version", "held-back before", "after"]))
    for a in items:
        print("\t".join([a["id"], a["status"], a["created_at"] or "", str(a["cells"]),
                         f"v{a['model_version']}" if a["model_version"] else "-",
                         _pct(a["holdout_accuracy_before"]), _pct(a["holdout_accuracy_after"])]))
    return 0


def cmd_adapt_cancel(args) -> int:
    with _client(args) as c:
        a = _check(c.post(f"/api/v1/adaptations/{args.id}/cancel", headers=_auth()))
    print(f"adaptation {a['id']} {a['status']}")
    return 0


def cmd_adapt_rollback(args) -> int:
    with _client(args) as c:
        m = _check(c.post("/api/v1/organization/model/rollback", headers=_auth(), json={"model_name": args.name}))
    source = "adapted" if m["adapted"] else "platform"
    print(f"your organization is served by {m['model_name']} v{m['version']} ({source})")
    return 0


def cmd_predict(args) -> int:
    from hemovision_gateway import cli_predict

    try:
        sources = cli_predict.collect(args.paths)
    except cli_predict.InputError as exc:
        raise CliError(str(exc)) from None
    extra = {k: v for k, v in (("sample_id", args.sample_id), ("slide_id", args.slide_id)) if v}
    with _client(args) as c:
        rows = cli_predict.run(c, _auth(), sources, concurrency=args.concurrency, extra=extra,
                               progress=cli_predict.Progress(len(sources)))
    print(cli_predict.render(rows, args.format))
    failed = sum(1 for r in rows if r["error"])
    if failed:
        print(f"{failed} of {len(rows)} images failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_admin_create(args) -> int:
    """Delegates to the auth service's own command, which writes to its database directly."""
    command = [sys.executable, "-m", "hemovision_auth", "create-admin", "--email", args.email]
    if args.promote:
        command.append("--promote")
    if args.password_stdin or args.password:
        # Never on argv (visible to other users): passed on stdin.
        password = args.password or sys.stdin.readline().rstrip("\n")
        command.append("--password-stdin")
        return subprocess.run(command, input=password + "\n", text=True, check=False).returncode
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hemovision", description="HemoVision command line")
    parser.add_argument("--url", default=os.environ.get("HV_GATEWAY_URL", "http://127.0.0.1:8000"),
                        help="gateway base URL (env HV_GATEWAY_URL)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("login", help="sign in and store an access token")
    p.add_argument("--email", required=True)
    p.add_argument("--password", help="prompted for when omitted (or env HV_PASSWORD)")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("predict", help="classify image files, folders or ZIP archives (recorded in your history)")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR|ZIP")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--concurrency", type=int, default=4, help="uploads at once (default 4)")
    p.add_argument("--sample-id", default="", help="stored with every image")
    p.add_argument("--slide-id", default="", help="stored with every image")
    p.set_defaults(func=cmd_predict)

    models = sub.add_parser("models", help="model versions").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("list", help="list model versions with metrics")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("activate", help="activate (or roll back to) a version")
    p.add_argument("version", type=int)
    p.add_argument("--name", default="hemovision")
    p.add_argument("--reason", default="")
    p.add_argument("--force", action="store_true", help="skip the quality gate (platform_admin)")
    p.set_defaults(func=cmd_models_activate)
    p = models.add_parser("deprecate", help="retire a version from use (never activated until restored)")
    p.add_argument("version", type=int)
    p.add_argument("--name", default="hemovision")
    p.add_argument("--reason", required=True, help="shown in the registry and audited")
    p.set_defaults(func=cmd_models_deprecate)
    p = models.add_parser("restore", help="lift a version's deprecation")
    p.add_argument("version", type=int)
    p.add_argument("--name", default="hemovision")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_models_deprecate)

    rollout = sub.add_parser("rollout", help="safe rollouts: canary or shadow a candidate version").add_subparsers(
        dest="rollout_command", required=True)
    p = rollout.add_parser("start", help="start a rollout beside the active version (ml_engineer, platform_admin)")
    p.add_argument("version", type=int)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--canary", type=int, metavar="PERCENT", help="send 1..50 %% of requests to the candidate")
    how.add_argument("--shadow", action="store_true", help="run the candidate beside, answers from the active one")
    p.add_argument("--reason", default="")
    p.add_argument("--name", default="hemovision")
    p.set_defaults(func=cmd_rollout)
    p = rollout.add_parser("status", help="the running (else last) rollout with live statistics")
    p.add_argument("--name", default="hemovision")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rollout)
    for action, text in (("promote", "activate the candidate (the quality gate applies)"),
                         ("abort", "end the rollout; the active version serves everything")):
        p = rollout.add_parser(action, help=text)
        p.add_argument("--reason", default="")
        p.add_argument("--name", default="hemovision")
        p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("train", help="start a training job")
    p.add_argument("--epochs", type=int, default=0)
    p.add_argument("--limit-per-class", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="")
    p.add_argument("--name", default="hemovision")
    p.add_argument("--auto-activate", action="store_true")
    p.add_argument("--watch", action="store_true", help="follow progress until the job ends")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("watch", help="follow a training job")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_train_watch)

    adapt = sub.add_parser("adapt", help="adapt the model to your lab's reviewed cells").add_subparsers(
        dest="adapt_command", required=True)
    p = adapt.add_parser("start", help="start an adaptation (org_admin, ml_engineer, platform_admin; "
                                       ">= 20 reviewed cells)")
    p.add_argument("--name", default="hemovision")
    p.add_argument("--wait", action="store_true", help="follow progress to the end; exit 0 only when it succeeded")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --wait")
    p.set_defaults(func=cmd_adapt_start)
    p = adapt.add_parser("status", help="one adaptation: progress, before/after figures, the gate's reasons")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_adapt_status)
    p = adapt.add_parser("list", help="the version serving your organization and its adaptations")
    p.add_argument("--name", default="hemovision")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_adapt_list)
    p = adapt.add_parser("cancel", help="cancel a queued or running adaptation")
    p.add_argument("id")
    p.set_defaults(func=cmd_adapt_cancel)
    p = adapt.add_parser("rollback", help="put your organization back on its previous version")
    p.add_argument("--name", default="hemovision")
    p.set_defaults(func=cmd_adapt_rollback)

    for plugin in entry_points(group=COMMANDS_ENTRY_POINTS):
        plugin.load()(sub)

    admin = sub.add_parser("admin", help="administration").add_subparsers(dest="admin_command", required=True)
    p = admin.add_parser("create", help="create the first platform_admin (delegates to hemovision_auth)")
    p.add_argument("--email", required=True)
    p.add_argument("--password", help="prefer --password-stdin; prompted for by the auth command when omitted")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--promote", action="store_true", help="make an existing user platform_admin")
    p.set_defaults(func=cmd_admin_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the gateway at {args.url}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
