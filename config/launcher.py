"""Starts the product: services (configured or embedded), setup steps, and the Procfile processes.

    python -m config.launcher demo            # migrate, seed, run every Procfile process
    python -m config.launcher run -- CMD ...  # run one command against the same services
    python -m config.launcher check           # is PostgreSQL / Redis (/ RabbitMQ) reachable?

Its children run with BOTFLOW_ENV=development (unless set). With DATABASE_URL / REDIS_URL unset
this process starts the embedded PostgreSQL and Redis (BOTFLOW_EMBEDDED=1) and stays alive while
its children run (the embedded servers stop when their last owner exits).
Plain Python only: Django is loaded by the children, not here.

`demo` supervises its children: one that exits (a crash, `kill -9`) is started again after 1 s,
2 s, 4 s ... at most 30 s, said in one line; the delay starts again from 1 s after a minute up.
A child that crashed 5 times within a minute is reported with its last error line and left
stopped; the others keep running. Only Ctrl-C / SIGTERM stops everything (SIGTERM to each
process group, SIGKILL after 10 s).

Why our own ~150 lines rather than a process manager from PyPI (checked 2026-12): honcho 2.0
gives prefixed coloured output and a clean Ctrl-C, but its `Manager.loop` stops every process
when one stops, by design, and has no restart option (a `--respawn` pull request, #195, was
closed unmerged); wrapping each command in a restart loop would lose the exit code and the
crash-loop report. supervisor (supervisord 4.3) restarts, but its backoff is linear (1, 2, 3 s)
and applies only to a process that dies within `startsecs`; one that ran for a while is
restarted at once with no backoff. It needs a generated config file and a daemon, writes
children's output to log files rather than one prefixed, coloured stream, and does not fit
`launcher run`. Keeping the Supervisor here costs one module with tests; either tool would
need as much glue code and still miss part of the contract.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
EXCEPTION_LINE = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception|Exit|Interrupt)\b(?::|$)")
RECENT_LINES = 50  # per child, for the line that explains a crash loop


def say(message: str) -> None:
    print(f"[botflow] {message}", file=sys.stderr, flush=True)


def prepare_services() -> None:
    """Fill in the embedded services where unset, then verify both answer; exit with advice if not."""
    # Here, not at the top: `launcher run -- <cmd>` only execs, and must not pay for these imports.
    from config import embedded
    from config.env import broker_is_amqp, parse_broker_url, parse_database_url, parse_redis_url

    configured_db = bool(os.environ.get("DATABASE_URL", "").strip())
    configured_redis = bool(os.environ.get("REDIS_URL", "").strip())
    # The launcher is the development entry point (make demo / test / bench-*): its processes run
    # with development settings unless told otherwise, and on the embedded servers where no URL is
    # set. Production runs the Procfile commands directly, with BOTFLOW_ENV=production (default).
    os.environ.setdefault("BOTFLOW_ENV", "development")
    if not (configured_db and configured_redis):
        os.environ["BOTFLOW_EMBEDDED"] = "1"
    if not (configured_db and configured_redis):
        say(
            "starting the embedded "
            + " and ".join(
                name
                for name, configured in (("PostgreSQL", configured_db), ("Redis", configured_redis))
                if not configured
            )
            + f" under {embedded.DATA_DIR}"
        )
    embedded.ensure_environment()
    db = parse_database_url("DATABASE_URL", os.environ["DATABASE_URL"])
    redis_target = parse_redis_url("REDIS_URL", os.environ["REDIS_URL"])
    problems = []
    try:
        import psycopg  # here: only this check needs a driver, see prepare_services

        psycopg.connect(
            dbname=db["NAME"],
            user=db["USER"],
            password=db["PASSWORD"],
            host=db["HOST"],
            port=db["PORT"] or None,
            connect_timeout=5,
            **db["OPTIONS"],
        ).close()
    except Exception as exc:  # noqa: BLE001 - turned into advice below
        where = f"{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
        hint = (
            "start it (e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`)"
            " or unset DATABASE_URL to use the embedded PostgreSQL"
            if configured_db
            else f"remove {embedded.DATA_DIR / 'pg'} and try again"
        )
        problems.append(f"PostgreSQL at {where} cannot be reached ({first_line(exc)}): {hint}.")
    try:
        # here: only this check needs a client, see prepare_services
        from analytics.redis import redis_client

        redis_client(redis_target.url, socket_connect_timeout=5).ping()
    except Exception as exc:  # noqa: BLE001 - turned into advice below
        hint = (
            "start it (e.g. `redis-server --daemonize yes --bind 127.0.0.1 --port 6379`)"
            " or unset REDIS_URL to use the embedded Redis"
            if configured_redis
            else f"remove {embedded.DATA_DIR / 'redis.db'} and try again"
        )
        problems.append(
            f"Redis at {redis_target.url} cannot be reached ({first_line(exc)}): {hint}."
        )
    broker = os.environ.get("CELERY_BROKER_URL", "").strip()
    if broker and broker_is_amqp(parse_broker_url("CELERY_BROKER_URL", broker)):
        import kombu  # here: only this check needs a client, see prepare_services

        connection = kombu.Connection(broker, connect_timeout=5)
        try:
            with connection:
                connection.ensure_connection(max_retries=1, interval_start=0)
        except Exception as exc:  # noqa: BLE001 - turned into advice below
            problems.append(
                f"RabbitMQ at {connection.as_uri()} cannot be reached ({first_line(exc)}):"
                " start it, or unset CELERY_BROKER_URL to use Redis as Celery's broker."
            )
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_step(*args: str) -> None:
    say("$ " + " ".join(args))
    code = subprocess.call([sys.executable, *args], cwd=ROOT, env=child_env())
    if code != 0:
        raise SystemExit(code)


def read_procfile(path: Path) -> list[tuple[str, str]]:
    entries = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            entries.append((name.strip(), command.strip()))
    return entries


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that exited is started again, and when it is left stopped."""

    base: float = 1.0  # first delay; each further restart doubles it ...
    cap: float = 30.0  # ... up to this
    stable_after: float = 60.0  # a child up this long starts again from `base`
    give_up_after: int = 5  # crashes within `window` seconds leave the child stopped
    window: float = 60.0
    stop_timeout: float = 10.0  # after SIGTERM, before SIGKILL

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** (attempt - 1))


class Child:
    """One Procfile entry: its current process, restart bookkeeping and its last output lines."""

    def __init__(self, name: str, command: str, label: str) -> None:
        self.name, self.command, self.label = name, command, label
        self.proc: subprocess.Popen | None = None
        self.pump: threading.Thread | None = None
        self.started_at = 0.0
        self.attempt = 0  # restarts since it last stayed up for `stable_after`
        self.crashes: deque[float] = deque()
        self.recent: deque[str] = deque(maxlen=RECENT_LINES)
        self.restart_at: float | None = None
        self.given_up = False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def has_exited(self) -> bool:
        """Its process ended and nothing was decided about it yet."""
        return (
            self.proc is not None
            and self.restart_at is None
            and not self.given_up
            and self.proc.poll() is not None
        )

    def last_error(self) -> str:
        """The last line that reads like a Python exception, else the last line, else a dash."""
        lines = [line for line in self.recent if line.strip()]
        for line in reversed(lines):
            if EXCEPTION_LINE.match(line.strip()):
                return line.strip()
        return lines[-1].strip() if lines else "-"


class Supervisor:
    """Runs named commands with prefixed output; restarts one that exits; stops all on Ctrl-C.

    A child that exits is started again after 1 s, 2 s, 4 s ... (at most 30 s); the delay starts
    again from 1 s once a child stayed up for a minute. One that crashed 5 times within a minute
    is reported with its last error line and left stopped while the others keep running.
    """

    def __init__(
        self,
        entries: list[tuple[str, str]],
        env: dict[str, str],
        policy: RestartPolicy | None = None,
    ) -> None:
        self.env, self.policy = env, policy or RestartPolicy()
        width = max(len(name) for name, _ in entries)
        self.children = [
            Child(name, command, f"{COLOURS[i % len(COLOURS)]}{name.ljust(width)}{RESET} | ")
            for i, (name, command) in enumerate(entries)
        ]
        self.stopping = threading.Event()

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.restart_at = None
        child.proc = subprocess.Popen(
            ["bash", "-c", f"exec {child.command}"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.pump = threading.Thread(target=self._pump, args=(child, child.proc), daemon=True)
        child.pump.start()
        say(f"started {child.name} (pid {child.proc.pid}): {child.command}")

    @staticmethod
    def _pump(child: Child, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            child.recent.append(ANSI.sub("", line.rstrip("\n")))
            sys.stdout.write(child.label + line)
            sys.stdout.flush()

    def wait(self) -> int:
        """Supervise until Ctrl-C / SIGTERM (0), or until every child was given up on (1)."""
        while not self.stopping.is_set():
            now = time.monotonic()
            for child in self.children:
                if child.has_exited():
                    self._exited(child, now)
                elif child.restart_at is not None and now >= child.restart_at:
                    self._spawn(child)
            if all(child.given_up for child in self.children):
                say("every process has stopped; exiting")
                return 1
            time.sleep(0.1)
        self._stop_all()
        return 0

    def _exited(self, child: Child, now: float) -> None:
        """Decide between a restart after the next delay and giving up on a crash loop."""
        code = child.proc.returncode
        # The leader is gone; whatever it forked (celery's pool) is not ours to keep running,
        # and it would hold the pipe open. Linux keeps the group id unused while members remain.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.pump.join(timeout=2)  # its traceback may still be in the pipe
        if now - child.started_at >= self.policy.stable_after:
            child.attempt = 0
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self.policy.window:
            child.crashes.popleft()
        if len(child.crashes) >= self.policy.give_up_after:
            child.given_up = True
            say(
                f"{child.name} exited (code {code}) {len(child.crashes)} times within "
                f"{self.policy.window:g} s; leaving it stopped. Last error: {child.last_error()}"
            )
            return
        child.attempt += 1
        delay = self.policy.delay(child.attempt)
        child.restart_at = now + delay
        say(
            f"{child.name} exited (code {code}); restarting in {delay:g} s (attempt {child.attempt})"
        )

    def stop(self, *_: object) -> None:
        """Signal handler: ask `wait` to stop everything (it does, between two checks)."""
        self.stopping.set()

    def _stop_all(self) -> None:
        running = [child for child in self.children if child.running()]
        for child in running:
            with suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_timeout
        for child in running:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{child.name} did not stop in time; killing it")
                with suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        say("all processes stopped")


def supervise(entries: list[tuple[str, str]], policy: RestartPolicy | None = None) -> int:
    supervisor = Supervisor(entries, child_env(), policy)
    signal.signal(signal.SIGINT, supervisor.stop)
    signal.signal(signal.SIGTERM, supervisor.stop)
    supervisor.start()
    return supervisor.wait()


def demo() -> int:
    prepare_services()
    run_step("manage.py", "migrate", "--noinput", "-v", "0")
    run_step("manage.py", "collectstatic", "--noinput", "-v", "0")
    run_step("manage.py", "seed_demo")
    port = os.environ.setdefault("PORT", "8000")
    say(
        f"open http://127.0.0.1:{port}/  ·  sign in as demo / demo-botflow  ·  Ctrl-C stops everything"
    )
    simulator = f"python manage.py simulate --org acme --rate {os.environ.get('SIM_RATE', '30')}"
    return supervise([*read_procfile(ROOT / "Procfile"), ("simulator", simulator)])


def run(command: list[str]) -> int:
    if not command:
        raise SystemExit("usage: python -m config.launcher run -- COMMAND [ARGS...]")
    prepare_services()
    proc = subprocess.Popen(command, cwd=ROOT, env=child_env())
    # The child shares our terminal, so Ctrl-C reaches it directly; we wait for it either way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    return proc.wait()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    action, rest = argv[0], argv[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    if action == "demo":
        return demo()
    if action == "run":
        return run(rest)
    if action == "check":
        prepare_services()
        say(
            "PostgreSQL, Redis and RabbitMQ answer"
            if os.environ.get("CELERY_BROKER_URL", "").strip().startswith("amqp")
            else "PostgreSQL and Redis answer"
        )
        return 0
    raise SystemExit(f"unknown action {action!r}; use demo, run or check ({shlex.join(argv)})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
