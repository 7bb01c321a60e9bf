"""Starts the product: services (configured or embedded), setup steps, and the Procfile processes.

    python -m config.launcher demo            # migrate, seed, run every Procfile process
    python -m config.launcher run -- CMD ...  # run one command against the same services
    python -m config.launcher check           # is PostgreSQL / Redis reachable?

Its children run with BOTFLOW_ENV=development (unless set). With DATABASE_URL / REDIS_URL unset
this process starts the embedded PostgreSQL and Redis (BOTFLOW_EMBEDDED=1) and stays alive while
its children run (the embedded servers stop when their last owner exits).
Plain Python only: Django is loaded by the children, not here.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"


def say(message: str) -> None:
    print(f"[botflow] {message}", file=sys.stderr, flush=True)


def prepare_services() -> None:
    """Fill in the embedded services where unset, then verify both answer; exit with advice if not."""
    from config import embedded
    from config.env import parse_database_url, parse_redis_url

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
        import psycopg

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
        import redis

        redis.Redis.from_url(redis_target.url, socket_connect_timeout=5).ping()
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


class Supervisor:
    """Runs named commands, prefixes their output, and stops them all when one stops or on Ctrl-C."""

    def __init__(self, entries: list[tuple[str, str]], env: dict[str, str]) -> None:
        self.entries, self.env = entries, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = threading.Event()

    def start(self) -> None:
        width = max(len(name) for name, _ in self.entries)
        for i, (name, command) in enumerate(self.entries):
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs[name] = proc
            label = f"{COLOURS[i % len(COLOURS)]}{name.ljust(width)}{RESET} | "
            threading.Thread(target=self._pump, args=(proc, label), daemon=True).start()
            say(f"started {name} (pid {proc.pid}): {command}")

    @staticmethod
    def _pump(proc: subprocess.Popen, label: str) -> None:
        for raw in iter(proc.stdout.readline, b""):
            sys.stdout.write(label + raw.decode(errors="replace"))
            sys.stdout.flush()

    def wait(self) -> int:
        while not self.stopping.is_set():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    say(f"{name} exited with code {proc.returncode}; stopping the others")
                    self.stop()
                    return proc.returncode or 1
            time.sleep(0.3)
        return 0

    def stop(self, *_: object) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        say("all processes stopped")


def supervise(entries: list[tuple[str, str]]) -> int:
    supervisor = Supervisor(entries, child_env())
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
        say("PostgreSQL and Redis answer")
        return 0
    raise SystemExit(f"unknown action {action!r}; use demo, run or check ({shlex.join(argv)})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
