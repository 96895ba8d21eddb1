"""Runs the plan: one-off steps, then each process once its peers are ready; watches them and
stops them all (process groups: SIGTERM, then SIGKILL). `down` stops a stack from another shell."""

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

from hemovision_devstack.errors import StackError
from hemovision_devstack.plan import Proc, StackConfig, build_env, build_plan
from hemovision_devstack.readiness import grpc_ready, http_ready, preflight


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for proc in self.procs:
            log = (self.log_dir / f"{proc.name}.log").open("ab")
            proc.popen = subprocess.Popen(
                proc.argv, env=self.env, cwd=self.cfg.root, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # own process group: killed as a whole
            )
            log.close()
            self._write_state()
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
            ready = (
                asyncio.run(grpc_ready(proc.health[1], proc.health[2]))
                if proc.health[0] == "grpc"
                else http_ready(proc.health[1])
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{proc.name} not healthy after {self.cfg.startup_timeout:.0f}s; last log lines:\n"
                    + _tail(self.log_dir / f"{proc.name}.log")
                )
            time.sleep(0.3)

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
        """Returns when asked to stop or when a process dies (which is reported)."""
        while not stop:
            for proc in self.procs:
                if proc.popen is not None and proc.popen.poll() is not None:
                    self.say(f"{proc.name} exited with {proc.popen.returncode}; stopping the stack. Log: "
                             f"{self.log_dir / (proc.name + '.log')}")
                    return
            time.sleep(0.5)


def up(cfg: StackConfig) -> int:
    stack = Stack(cfg)
    stop: list[bool] = []

    def on_signal(signum: int, frame: object) -> None:
        stop.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        preflight(cfg)
        stack.run_steps()
        stack.start()
        stack.say(f"HemoVision is up: http://127.0.0.1:{cfg.port('gateway')}/  (API docs at /docs; Ctrl-C stops)")
        signal.signal(signal.SIGTERM, lambda s, f: stop.append(True))
        stack.watch(stop)
        return 0 if stop else 1
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
