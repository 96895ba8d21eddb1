"""The parts a fault run needs, shared by bench_reliability.py and tests/reliability/:

  OwnPostgres  a PostgreSQL cluster of the run's own (initdb into a temp dir, pg_ctl on another port),
               so it can be restarted under load without touching the shared server on 5432
  OwnRedis     a redis-server of the run's own (AOF on, as docker-compose runs it), killable
  System       the whole stack as `make up` starts it (hemovision_devstack's plan, environment and
               start order, run by its Stack class in this process) on a port offset, on the two
               above; a watcher restarts a process that dies (`make up` itself stops the whole
               stack when one process exits) and records every death and restart
  Uploader     a lean HTTP/1.1 keep-alive client for the REST upload (status, Retry-After, latency);
               every upload carries a unique sample_id, so history rows can be matched to answers
"""

from __future__ import annotations

import asyncio
import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "pbc_128"
DEFAULT_OFFSET = int(os.environ.get("HV_RELIABILITY_PORT_OFFSET", "14000"))


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


def _as_postgres_user() -> list[str]:
    """initdb/postgres refuse to run as root: run them as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class OwnPostgres:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="hv-rel-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}"

    def _ctl(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run([*_as_postgres_user(), pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                               *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stderr or done.stdout}\n{self.tail()}")

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def start(self) -> None:
        if not self.data.exists():
            done = subprocess.run([*_as_postgres_user(), pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                                   "--auth=trust", "-E", "UTF8", "--no-sync"], capture_output=True, text=True,
                                  timeout=180)
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr}")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
        self._ctl("-o", opts, "-w", "-t", "120", "start")

    def restart(self, mode: str = "immediate") -> None:
        """`immediate` = no clean shutdown (like a crash): what was committed must survive via WAL."""
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
        self._ctl("-m", mode, "-o", opts, "-w", "-t", "120", "restart")

    def stop(self) -> None:
        try:
            self._ctl("-m", "immediate", "-w", "stop", timeout=60)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="hv-rel-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # as docker-compose.yml runs it: AOF on (appendfsync everysec), RDB every 60 s / 1000 writes
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--save", "60 1000", "--daemonize", "no", "--loglevel", "warning"],
            stdout=(self.dir / "redis.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on {self.port} did not start")
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Event:
    t: float  # time.monotonic()
    what: str


def devstack_restarts() -> bool:
    """Does `make up` (hemovision_devstack) restart a process that exits (RestartPolicy)?"""
    from hemovision_devstack.plan import StackConfig

    return "restart" in getattr(StackConfig, "__dataclass_fields__", {})


class System:
    """The stack as `make up` starts it, on own PostgreSQL/Redis, in one of two modes:

    devstack  `python -m hemovision_devstack up ...` as a child process, exactly as `make up`; its
              supervisor restarts a process that exits (when it has restart supervision)
    bench     (a devstack without restart supervision stops the whole stack when one process
              exits) the devstack's Stack class run in this process, with the bench's watcher
              restarting a dead process after 1 s with the devstack's argv and environment
    """

    def __init__(self, *, database_url: str, redis_url: str, offset: int = DEFAULT_OFFSET,
                 workers: bool = True, extra_env: dict[str, str] | None = None,
                 model_base: Path | None = None, mode: str | None = None) -> None:
        from hemovision_devstack.plan import StackConfig

        self.work = Path(tempfile.mkdtemp(prefix="hv-rel-"))
        self.cfg = StackConfig(root=REPO, database_url=database_url, redis_url=redis_url, port_offset=offset,
                               var_dir=self.work / "var", workers=workers, model_base=model_base)
        self.mode = mode or ("devstack" if devstack_restarts() else "bench")
        self.extra_env = extra_env or {}
        self.stack = None           # bench mode
        self.proc_up: subprocess.Popen | None = None  # devstack mode
        self.out = self.work / "devstack.out"
        self.events: list[Event] = []
        self.restart_backoff_s = 1.0
        self._watching = False

    @property
    def restarted_by(self) -> str:
        return ("the devstack's own supervisor (`make up` restart-with-backoff)" if self.mode == "devstack"
                else "the bench (1 s backoff): this devstack has no restart supervision")

    def port(self, base: int) -> int:
        return base + self.cfg.port_offset

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.port('gateway')}"

    def start(self) -> None:
        if self.mode == "devstack":
            return self._start_devstack()
        from hemovision_devstack.readiness import preflight
        from hemovision_devstack.supervisor import Stack

        saved = dict(os.environ)
        os.environ.update(self.extra_env)
        try:
            self.stack = Stack(self.cfg)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        preflight(self.cfg)
        self.stack.run_steps()
        self.stack.start()

    def _start_devstack(self) -> None:
        cmd = [python(), "-m", "hemovision_devstack", "up", "--port-offset", str(self.cfg.port_offset),
               "--database-url", self.cfg.database_url, "--redis-url", self.cfg.redis_url,
               "--var-dir", str(self.cfg.var)]
        if self.cfg.model_base is not None:
            cmd += ["--model-base", str(self.cfg.model_base)]
        if not self.cfg.workers:
            cmd.append("--no-workers")
        with self.out.open("wb") as out:
            self.proc_up = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.extra_env}, start_new_session=True)
        deadline = time.monotonic() + 420
        while "HemoVision is up" not in self.out.read_text(errors="replace"):
            if self.proc_up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`hemovision up` did not come up:\n{self.out.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def pids(self) -> dict[str, int]:
        if self.mode == "devstack":
            try:
                state = json.loads(self.cfg.state_file.read_text())
            except (OSError, ValueError):
                return {}
            alive = {}
            for name, pid in state.get("processes", {}).items():
                try:
                    os.kill(pid, 0)
                    alive[name] = pid
                except ProcessLookupError:
                    pass
            return alive
        return {p.name: p.popen.pid for p in self.stack.procs if p.popen is not None and p.popen.poll() is None}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pids()[name]
        os.kill(pid, sig)
        self.events.append(Event(time.monotonic(), f"sent signal {sig} to {name} (pid {pid})"))
        return pid

    def restart(self, name: str) -> None:
        """bench mode: starts `name` again with the devstack's argv and environment and waits until
        it is ready (blocking; from asyncio code run it in a thread: readiness uses asyncio.run)."""
        p = next(p for p in self.stack.procs if p.name == name)
        log = (self.stack.log_dir / f"{p.name}.log").open("ab")
        p.popen = subprocess.Popen(p.argv, env={**self.stack.env, **getattr(p, "env", {})}, cwd=self.cfg.root,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        log.close()
        self.stack._write_state()
        self.events.append(Event(time.monotonic(), f"bench restarted {name} (pid {p.popen.pid})"))
        self.stack._wait_ready(p)
        self.events.append(Event(time.monotonic(), f"{name} ready again"))

    async def watch(self) -> None:
        """bench mode: restart-with-backoff supervision; devstack mode: notes the devstack's restarts
        (its pids changing) and that the devstack itself stays up."""
        self._watching = True
        known = self.pids()
        while self._watching:
            if self.mode == "devstack":
                if self.proc_up is not None and self.proc_up.poll() is not None:
                    self.events.append(Event(time.monotonic(), f"`hemovision up` exited ({self.proc_up.returncode})"))
                    return
                now = self.pids()
                for name, pid in now.items():
                    if known.get(name) not in (None, pid):
                        self.events.append(Event(time.monotonic(), f"devstack restarted {name} (pid {pid})"))
                known.update(now)
            else:
                for p in self.stack.procs:
                    if p.popen is not None and p.popen.poll() is not None:
                        self.events.append(Event(time.monotonic(), f"{p.name} exited ({p.popen.returncode})"))
                        await asyncio.sleep(self.restart_backoff_s)
                        try:
                            await asyncio.to_thread(self.restart, p.name)
                        except Exception as exc:  # noqa: BLE001 - reported, retried next round
                            self.events.append(Event(time.monotonic(), f"restart of {p.name} failed: {exc}"))
            await asyncio.sleep(0.2)

    def stop_watching(self) -> None:
        self._watching = False

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.cfg.var / "log" / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def supervisor_lines(self) -> list[str]:
        """What the devstack said about exits and restarts."""
        try:
            text = self.out.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(w in line for w in ("exited", "restart", "ready again"))]

    def stop(self, keep_logs: Path | None = None) -> None:
        """Stops every process; `keep_logs`: copy the stack's logs there first (for a post-mortem)."""
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for f in [self.out, *(self.cfg.var / "log").glob("*.log")]:
                if f.exists():
                    shutil.copy(f, keep_logs / f.name)
        if self.proc_up is not None and self.proc_up.poll() is None:
            self.proc_up.send_signal(signal.SIGTERM)
            try:
                self.proc_up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.pids().values():  # whatever is left (devstack mode: from its state file)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc_up is not None and self.proc_up.poll() is None:
            os.killpg(self.proc_up.pid, signal.SIGKILL)
            self.proc_up.wait()
        if self.stack is not None:
            try:
                self.stack.stop()
            except Exception:  # noqa: BLE001
                for p in self.stack.procs:
                    if p.popen is not None:
                        try:
                            os.killpg(p.popen.pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
        shutil.rmtree(self.work, ignore_errors=True)

    # -- accounts -------------------------------------------------------------------------------

    def register(self, email: str = "lab@example.org", password: str = "reliability pw 123") -> dict:
        """A new organization's first user; returns its login answer (access + refresh token)."""
        import httpx

        r = httpx.post(f"{self.gateway_url}/api/v1/auth/register",
                       json={"email": email, "password": password, "organization": f"Reliability lab ({email})"}, timeout=60)
        r.raise_for_status()
        return self.login(email, password)

    def login(self, email: str = "lab@example.org", password: str = "reliability pw 123") -> dict:
        import httpx

        r = httpx.post(f"{self.gateway_url}/api/v1/auth/login", json={"email": email, "password": password},
                       timeout=60)
        r.raise_for_status()
        return r.json()


# -- the load -------------------------------------------------------------------------------------


def upload_files(n: int = 64) -> list[tuple[str, bytes]]:
    rows = [r for r in csv.DictReader(open(DATA / "splits.csv")) if r["split"] == "test"][:n]
    return [(Path(r["path"]).name, (DATA / r["path"]).read_bytes()) for r in rows]


def encode_upload(host: str, token: str, name: str, data: bytes, sample_id: str) -> bytes:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"sample_id\"\r\n\r\n{sample_id}"
        f"\r\n--{boundary}--\r\n"
    ).encode()
    head = (
        f"POST /api/v1/predictions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    return head + body


@dataclass
class Answer:
    tag: str
    start: float          # time.monotonic() when sent
    ms: float             # until answered, or until the deadline / transport error
    status: int | None    # None: no HTTP answer (kind says why)
    kind: str             # "201", "429", "503", "4xx", "5xx", "timeout", "transport"
    retry_after: str | None = None
    id: str | None = None
    detail: str = ""


class Connection:
    """One keep-alive connection; answers are read by Content-Length."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def _request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None or time.monotonic() - self.last_used > 3.0:  # uvicorn drops idle ones at 5 s
            self.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    async def request(self, raw: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        try:
            return await asyncio.wait_for(self._request(raw), timeout)
        except BaseException:
            self.close()
            raise
        finally:
            self.last_used = time.monotonic()


def classify(status: int) -> str:
    if status in (201, 429, 503):
        return str(status)
    return "5xx" if status >= 500 else "4xx"


@dataclass
class Uploader:
    gateway_url: str
    token: str
    files: list[tuple[str, bytes]]
    deadline_s: float = 30.0
    backoff_s: float = 1.0   # a client's pause after a 429/503 (less than the Retry-After it is given)
    answers: list[Answer] = field(default_factory=list)

    async def one(self, conn: Connection, tag: str, i: int) -> Answer:
        from urllib.parse import urlsplit

        host = urlsplit(self.gateway_url).netloc
        name, data = self.files[i % len(self.files)]
        raw = encode_upload(host, self.token, name, data, tag)
        t = time.monotonic()
        try:
            status, headers, body = await conn.request(raw, self.deadline_s)
        except asyncio.TimeoutError:
            a = Answer(tag, t, (time.monotonic() - t) * 1000, None, "timeout")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            a = Answer(tag, t, (time.monotonic() - t) * 1000, None, "transport", detail=type(exc).__name__)
        else:
            a = Answer(tag, t, (time.monotonic() - t) * 1000, status, classify(status), headers.get("retry-after"))
            try:
                parsed = json.loads(body) if body else {}
            except ValueError:
                parsed = {}
            if status == 201:
                a.id = parsed.get("id")
            elif isinstance(parsed, dict) and "error" in parsed:
                a.detail = f"{parsed['error'].get('code')}: {parsed['error'].get('message')}"[:160]
        self.answers.append(a)
        return a

    async def run(self, concurrency: int, seconds: float, prefix: str, stop_event: asyncio.Event | None = None
                  ) -> list[Answer]:
        """Closed loop: `concurrency` clients, each one request at a time, for `seconds`."""
        from urllib.parse import urlsplit

        u = urlsplit(self.gateway_url)
        start = len(self.answers)
        stop = time.monotonic() + seconds
        run_id = uuid.uuid4().hex[:6]

        async def worker(w: int) -> None:
            conn = Connection(u.hostname, u.port)
            n = 0
            try:
                while time.monotonic() < stop and not (stop_event and stop_event.is_set()):
                    a = await self.one(conn, f"{prefix}-{run_id}-{w}-{n}", w * 7919 + n)
                    n += 1
                    if a.kind not in ("201", "4xx"):
                        await asyncio.sleep(self.backoff_s)
            finally:
                conn.close()

        await asyncio.gather(*[worker(w) for w in range(concurrency)])
        return self.answers[start:]


def history_rows(database_url: str, prefix: str = "") -> dict[str, list[str]]:
    """sample_id -> prediction ids in history (the run's own database)."""
    import psycopg2

    url = database_url.replace("+psycopg2", "")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        # the load's uploads carry a unique sample_id; other legs' (hostile inputs) carry none
        cur.execute("SELECT sample_id, id::text FROM history.predictions WHERE sample_id LIKE %s AND sample_id <> ''",
                    (prefix + "%",))
        rows: dict[str, list[str]] = {}
        for sample_id, pid in cur.fetchall():
            rows.setdefault(sample_id, []).append(pid)
    return rows


def reconcile(answers: list[Answer], rows: dict[str, list[str]]) -> dict:
    """Every 201 answer's id recorded exactly once; nothing recorded twice; what was recorded although
    the client got an error (it may retry: a second record) counted apart."""
    ok = {a.tag: a.id for a in answers if a.kind == "201"}
    lost = [t for t, pid in ok.items() if pid not in rows.get(t, [])]
    twice = [t for t, ids in rows.items() if len(ids) > 1]
    unanswered = [t for t in rows if t not in ok]
    return {"answered_201": len(ok), "rows": sum(len(v) for v in rows.values()), "lost": len(lost),
            "recorded_twice": len(twice), "recorded_without_201": len(unanswered),
            "examples": {"lost": lost[:3], "twice": twice[:3], "without_201": unanswered[:3]}}


def python() -> str:
    return sys.executable
