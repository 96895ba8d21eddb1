"""Runs the plan: one-off steps, then each process once its peers are ready; watches them,
restarts one that exits (after a backoff: StackConfig.restart) and stops them all on Ctrl-C /
SIGTERM (process groups: SIGTERM, then SIGKILL; no restarts once stopping). `down` stops a
stack from another shell."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from hemovision_grpc_server import TlsError, load_tls

from hemovision_devstack.errors import StackError
from hemovision_devstack.plan import TLS_CLIENT, Proc, StackConfig, build_env, build_plan, ensure_tls, tls_env
from hemovision_devstack.readiness import grpc_ready, http_ready, preflight


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def describe_exit(code: int) -> str:
    """`-9` -> "-9 (SIGKILL)"; a negative return code is the signal that ended the process."""
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return str(code)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Stack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.env = {**os.environ, **build_env(cfg)}
        self.steps, self.procs = build_plan(cfg)
        self.log_dir = cfg.var / "log"
        # --tls: the one-off steps and the supervisor's own health checks use the `cli` certificate;
        # otherwise whatever HV_TLS_* the environment has (None: read from it; unset = plaintext).
        self.client_tls = ensure_tls(cfg, [])[TLS_CLIENT] if cfg.tls else None
        if self.client_tls is not None:
            self.env.update(tls_env(self.client_tls))
        self._restart: dict[str, _RestartState] = {}

    def check_tls(self) -> None:
        """Usable TLS settings (the generated ones, or HV_TLS_* of the environment), else StackError."""
        try:
            load_tls(self.client_tls)
        except TlsError as exc:
            raise StackError(str(exc)) from None

    def say(self, msg: str) -> None:
        print(f"[hemovision] {msg}", flush=True)

    def run_steps(self) -> None:
        from hemovision_database import ensure_database

        if ensure_database(self.cfg.database_url):
            self.say(f"created database {urlsplit(self.cfg.database_url).path.lstrip('/')}")
        for argv in self.steps:
            label = " ".join(argv[2:])
            self.say(f"step: {label}")
            done = subprocess.run(argv, env=self.env, cwd=self.cfg.root, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise StackError(f"`{label}` failed (exit {done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")

    def _spawn(self, proc: Proc) -> None:
        with (self.log_dir / f"{proc.name}.log").open("ab") as log:
            proc.popen = subprocess.Popen(
                proc.argv, env={**self.env, **proc.env}, cwd=self.cfg.root, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # own process group: killed as a whole
            )
        self._restart.setdefault(proc.name, _RestartState()).started = time.monotonic()
        self._write_state()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for proc in self.procs:
            self._spawn(proc)
            self._wait_ready(proc)
            self.say(f"{proc.name} up (pid {proc.popen.pid})")

    def _wait_ready(self, proc: Proc) -> None:
        assert proc.popen is not None
        deadline = time.monotonic() + self.cfg.startup_timeout
        while True:
            if proc.popen.poll() is not None:
                raise StackError(
                    f"{proc.name} exited with {proc.popen.returncode} during start-up; last log lines:\n"
                    + _tail(self.log_dir / f"{proc.name}.log")
                )
            if proc.health is None:
                time.sleep(1.0)  # workers: alive after a second is all we can tell
                return
            if self._ready(proc):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{proc.name} not healthy after {self.cfg.startup_timeout:.0f}s; last log lines:\n"
                    + _tail(self.log_dir / f"{proc.name}.log")
                )
            time.sleep(0.3)

    def _ready(self, proc: Proc) -> bool:
        assert proc.health is not None
        if proc.health[0] == "grpc":
            return asyncio.run(grpc_ready(proc.health[1], proc.health[2], self.client_tls))
        return http_ready(proc.health[1])

    def _write_state(self) -> None:
        self.cfg.state_file.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor": os.getpid(),
            "processes": {p.name: p.popen.pid for p in self.procs if p.popen is not None},
        }
        self.cfg.state_file.write_text(json.dumps(state))

    def stop(self) -> None:
        running = [p for p in reversed(self.procs) if p.popen is not None and p.popen.poll() is None]
        for proc in running:
            _signal_group(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.grace_seconds + 5
        for proc in running:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{proc.name} ignored SIGTERM; killing it")
        for proc in self.procs:
            if proc.popen is not None:
                _signal_group(proc.popen.pid, signal.SIGKILL)  # leftovers of the group, if any
                proc.popen.wait()
        self.cfg.state_file.unlink(missing_ok=True)
        self.say("stopped")

    def watch(self, stop: list[bool]) -> None:
        """Until asked to stop (`stop` non-empty): a process that exits (non-zero, killed, or even 0:
        nothing in the stack should end on its own) is restarted after the backoff of
        StackConfig.restart, each exit and restart said with its exit status. Nothing is restarted
        once `stop` is set, so Ctrl-C / SIGTERM / `down` stop the stack for good."""
        while not stop:
            for proc in self.procs:
                if stop or proc.popen is None:
                    continue
                state = self._restart.setdefault(proc.name, _RestartState())
                now = time.monotonic()
                if state.restart_at is not None:
                    if now >= state.restart_at:
                        self._restart_now(proc, state)
                    continue
                code = proc.popen.poll()
                if code is not None:
                    self._exited(proc, state, code, now)
                elif state.awaiting_ready and now >= state.next_check:
                    state.next_check = now + 1.0
                    if proc.health is None or self._ready(proc):
                        state.awaiting_ready = False
                        self.say(f"{proc.name} ready again (pid {proc.popen.pid})")
            time.sleep(0.2)

    def _exited(self, proc: Proc, state: _RestartState, code: int, now: float) -> None:
        assert proc.popen is not None
        _signal_group(proc.popen.pid, signal.SIGKILL)  # what it left in its group
        state.delay = self.cfg.restart.delay(state.delay, now - state.started)
        state.restart_at = now + state.delay
        state.awaiting_ready = False
        self.say(f"{proc.name} (pid {proc.popen.pid}) exited with {describe_exit(code)}; "
                 f"restart {state.restarts + 1} in {state.delay:g}s. Log: {self.log_dir / (proc.name + '.log')}")

    def _restart_now(self, proc: Proc, state: _RestartState) -> None:
        assert proc.popen is not None
        previous = describe_exit(proc.popen.returncode)
        with (self.log_dir / f"{proc.name}.log").open("a") as log:
            log.write(f"--- hemovision up: restarting {proc.name} after exit {previous} ---\n")
        self._spawn(proc)
        state.restarts += 1
        state.restart_at = None
        state.awaiting_ready = True
        state.next_check = time.monotonic() + 0.5
        self.say(f"{proc.name} restarted (pid {proc.popen.pid}, restart {state.restarts}, after exit {previous})")


class _RestartState:
    """The supervisor's memory of one process: when it started, the last backoff, a pending restart."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.delay: float | None = None
        self.restart_at: float | None = None
        self.restarts = 0
        self.awaiting_ready = False
        self.next_check = 0.0


def up(cfg: StackConfig) -> int:
    """`hemovision up`: preflight, the one-off steps, then run_stack() until Ctrl-C / SIGTERM."""
    return run_stack(Stack(cfg))


def run_stack(stack: Stack, *, prepare: bool = True) -> int:
    """Starts the stack's processes (after preflight and the one-off steps unless `prepare` is
    False), supervises them until Ctrl-C / SIGTERM / `down`, then stops them all. 0 when stopped
    on request, 1 when start-up failed (a process that dies during start-up is not restarted:
    that is a configuration error to read, not a crash to ride out)."""
    cfg = stack.cfg
    stop: list[bool] = []

    def on_signal(signum: int, frame: object) -> None:
        stop.append(True)
        raise KeyboardInterrupt

    def request_stop(signum: int, frame: object) -> None:
        stop.append(True)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.check_tls()
        if prepare:
            preflight(cfg)
            stack.run_steps()
        stack.start()
        transport = ("plaintext" if load_tls(stack.client_tls) is None
                     else f"mutual TLS ({cfg.tls_dir})" if stack.client_tls else "mutual TLS (HV_TLS_*)")
        stack.say(f"HemoVision is up: http://127.0.0.1:{cfg.port('gateway')}/  (API docs at /docs; Ctrl-C stops; "
                  f"gRPC between services: {transport})")
        # From here Ctrl-C and SIGTERM only ask: watch() ends at its next tick, never halfway
        # through a restart, and restarts nothing after that.
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        stack.watch(stop)
        return 0
    except StackError as exc:
        print(f"[hemovision] error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


def down(cfg: StackConfig, timeout: float = 30.0) -> int:
    """Asks a running `up` to stop (SIGTERM); kills what is left if it does not."""
    if not cfg.state_file.exists():
        print("[hemovision] nothing is running (no state file)")
        return 0
    state = json.loads(cfg.state_file.read_text())
    supervisor = state.get("supervisor")
    try:
        os.kill(supervisor, signal.SIGTERM)
    except (ProcessLookupError, TypeError):
        supervisor = None
    deadline = time.monotonic() + timeout
    while supervisor and time.monotonic() < deadline:
        try:
            os.kill(supervisor, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    for pid in state.get("processes", {}).values():
        _signal_group(pid, signal.SIGKILL)
    cfg.state_file.unlink(missing_ok=True)
    print("[hemovision] stopped")
    return 0
