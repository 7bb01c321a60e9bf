"""Private PostgreSQL and Redis servers the fault tests may stop, kill and start again.

Never the machine's shared 5432 / 6379 (other tests and sessions use them): each server here runs
on a free port from a directory of its own, and only its owner stops it. The product's processes
(daphne, pulse) are started on them with tests.e2e.live_servers.Servers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from tests.e2e.live_servers import ROOT, free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_DATABASE = "botflow"


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class PrivatePostgres:
    """A PostgreSQL cluster of the test run's own (initdb + pg_ctl, trust auth, loopback only).

    As root (CI and this machine run tests as root, and PostgreSQL refuses to), the cluster
    belongs to the `postgres` system user that Debian's packages create."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="botflow-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{PG_DATABASE}"
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @staticmethod
    def available() -> str:
        """Why this machine cannot run one ("" when it can)."""
        if not (PG_BIN / "pg_ctl").exists():
            return f"no PostgreSQL binaries in {PG_BIN}"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root without a `postgres` system user"
        return ""

    def _run(self, *command: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(PG_BIN / command[0]), *command[1:]],
            check=True,
            timeout=timeout,
            user=self.user,
            cwd=self.root,
            capture_output=True,
        )

    def create(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self.start()
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")

    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # fsync off: an OS crash is not among the faults tested; a stop (fast or immediate) keeps
        # every committed transaction (synchronous_commit stays on, as in production).
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=120 -c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` is a restart's shutdown (clients disconnected); `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def query(self, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()


class PrivateRedis:
    """A redis-server of the test's own (no persistence: a restart loses everything, as an OOM
    kill of a cache-only Redis does); kill() is SIGKILL, start() brings it back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, 10, self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    stop = kill


def manage(database_url: str, redis_url: str, *args: str, timeout: float = 120) -> str:
    """`manage.py <args>` on the private servers; returns its standard output."""
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    env.pop("BOTFLOW_EMBEDDED", None)
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args[:1])} failed:\n{done.stderr[-2000:]}")
    return done.stdout
