"""The supervisor on real processes: a child killed with SIGKILL (or exiting non-zero) comes back
after the backoff, each restart said with its exit status; Ctrl-C / `hemovision down` stop
everything and restart nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from hemovision_devstack.plan import RestartPolicy, StackConfig
from hemovision_devstack.supervisor import describe_exit

# A supervisor on a fake plan: `sleeper` runs until stopped, `crasher` exits 3 after 1.2 s each time.
SUPERVISOR = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hemovision_devstack.plan import Proc, RestartPolicy, StackConfig
    from hemovision_devstack.supervisor import Stack, run_stack

    root, marker = Path(sys.argv[1]), sys.argv[2]
    cfg = StackConfig(root=root, var_dir=root / "var", grace_seconds=2,
                      restart=RestartPolicy(initial=0.25, maximum=1.0, reset_after=60))
    stack = Stack(cfg)
    stack.procs = [
        Proc("sleeper", [sys.executable, "-c", "import time; time.sleep(600)", marker]),
        Proc("crasher", [sys.executable, "-c", "import sys, time; time.sleep(1.2); sys.exit(3)", marker]),
    ]
    sys.exit(run_stack(stack, prepare=False))
""")


def _alive_with(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line holds `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes() and " Z " not in (entry / "stat").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stack(tmp_path):
    marker = f"hv-supervisor-test-{uuid.uuid4().hex}"
    out = tmp_path / "supervisor.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(tmp_path), marker], cwd=tmp_path,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    cfg = StackConfig(root=tmp_path, var_dir=tmp_path / "var")
    yield proc, out, cfg, marker
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pid in _alive_with(marker):
        os.kill(pid, signal.SIGKILL)


def _state(cfg: StackConfig) -> dict[str, int]:
    try:
        return json.loads(cfg.state_file.read_text())["processes"]
    except (OSError, ValueError, KeyError):
        return {}


@pytest.mark.parametrize("stop_with", ["ctrl-c", "down"])
def test_a_killed_child_comes_back_and_stopping_restarts_nothing(stack, stop_with):
    proc, out, cfg, marker = stack
    _wait_for(lambda: "HemoVision is up" in out.read_text(), 30, "the stack to start")
    first = _state(cfg)["sleeper"]
    os.kill(first, signal.SIGKILL)

    second = _wait_for(lambda: _state(cfg).get("sleeper") not in (None, first) and _state(cfg)["sleeper"], 15,
                       "the sleeper's restart")
    os.kill(second, 0)  # alive
    text = _wait_for(lambda: "sleeper ready again" in out.read_text() and out.read_text(), 10, "ready again")
    assert f"sleeper (pid {first}) exited with -9 (SIGKILL); restart 1 in 0.25s" in text
    assert f"sleeper restarted (pid {second}, restart 1, after exit -9 (SIGKILL))" in text
    assert "--- hemovision up: restarting sleeper after exit -9 (SIGKILL) ---" in (cfg.var / "log" / "sleeper.log").read_text()

    # the crasher exits 3 again and again: 0.25 s, then doubling up to the 1 s cap
    text = _wait_for(lambda: len(re.findall(r"crasher \(pid \d+\) exited with 3;", out.read_text())) >= 4
                     and out.read_text(), 30, "four crasher exits")
    assert re.findall(r"crasher \(pid \d+\) exited with 3; restart \d+ in ([\d.]+)s", text)[:4] == ["0.25", "0.5", "1", "1"]

    if stop_with == "ctrl-c":
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    else:  # `hemovision down` from another shell
        other_shell = subprocess.Popen([sys.executable, "-m", "hemovision_devstack", "down", "--var-dir",
                                        str(cfg.var)], cwd=cfg.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.wait(timeout=30) == 0  # (reaped here, so `down` sees it gone)
        assert other_shell.wait(timeout=30) == 0
        assert b"stopped" in other_shell.stdout.read()
    time.sleep(1.5)  # longer than any backoff: a restart after the stop would show now
    assert _alive_with(marker) == [], "a process outlived the stack, or was restarted after the stop"
    text = out.read_text()
    assert text.rstrip().endswith("[hemovision] stopped")
    after_stop = text[text.rindex("[hemovision] stopped"):]
    assert "restarted" not in after_stop
    assert not cfg.state_file.exists()


def test_the_backoff_doubles_to_its_cap_and_starts_over_after_a_good_run():
    policy = RestartPolicy()  # the defaults `hemovision up` runs with
    delays, delay = [], None
    for _ in range(7):
        delay = policy.delay(delay, uptime=2.0)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(30, uptime=60.0) == 1


def test_exit_statuses_are_said_with_their_signal():
    assert describe_exit(-9) == "-9 (SIGKILL)"
    assert describe_exit(-15) == "-15 (SIGTERM)"
    assert describe_exit(3) == "3"


# --tls on one real service: the supervisor makes the CA, the service requires mutual TLS, and
# the supervisor's own health check (with the `cli` certificate) sees it SERVING.
TLS_STACK = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hemovision_devstack.plan import StackConfig
    from hemovision_devstack.supervisor import Stack, run_stack

    root, port = Path(sys.argv[1]), int(sys.argv[2])
    cfg = StackConfig(root=root, var_dir=root / "var", tls=True, grace_seconds=2, port_overrides={"preprocess": port})
    stack = Stack(cfg)
    stack.env["HV_PREPROCESS_METRICS_PORT"] = "-1"  # no fixed port beside other stacks on this machine
    stack.procs = [p for p in stack.procs if p.name == "preprocess"]
    sys.exit(run_stack(stack, prepare=False))
""")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_up_with_tls_runs_a_service_that_only_speaks_mutual_tls(tmp_path):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from hemovision_grpc_server import TlsSettings, create_channel, wait_for_health
    from hemovision_grpc_server.certificates import ensure_local_pki

    port = _free_port()
    out = tmp_path / "supervisor.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", TLS_STACK, str(tmp_path), str(port)], cwd=tmp_path,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: "HemoVision is up" in out.read_text() or proc.poll() is not None, 120, "preprocess")
        text = out.read_text()
        tls_dir = tmp_path / "var" / "secrets" / "tls"
        assert f"gRPC between services: mutual TLS ({tls_dir})" in text, text
        assert {"ca.pem", "ca.key", "preprocess.pem", "preprocess.key", "cli.pem", "cli.key"} <= {
            p.name for p in tls_dir.iterdir()}
        address = f"127.0.0.1:{port}"
        cli = TlsSettings(cert_file=tls_dir / "cli.pem", key_file=tls_dir / "cli.key", ca_file=tls_dir / "ca.pem")
        await wait_for_health(address, "hemovision.preprocess.v1.PreprocessService", timeout=10, tls=cli)
        stranger = ensure_local_pki(tmp_path / "other-ca", ["cli"])["cli"]
        for channel in (grpc.aio.insecure_channel(address), create_channel(address, tls=stranger)):
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
