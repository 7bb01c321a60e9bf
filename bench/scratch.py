"""A migrated scratch database for a benchmark, created and dropped around the run."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.env import parse_database_url  # noqa: E402
from tests.scale.topology import procfile_daphne_options  # noqa: E402


class Scratch:
    def __init__(self, name: str) -> None:
        self.name = name
        url = os.environ["DATABASE_URL"]
        self.db = parse_database_url("DATABASE_URL", url)
        scheme, rest = url.split("://", 1)
        self.url = f"{scheme}://" + re.sub(r"/[^/?]*(\?|$)", rf"/{name}\1", rest, count=1)
        self.env = {**os.environ, "DATABASE_URL": self.url, "PYTHONPATH": str(ROOT)}

    def connect(self, name: str | None = None) -> psycopg.Connection:
        db = self.db
        return psycopg.connect(
            dbname=name or self.name,
            user=db["USER"],
            password=db["PASSWORD"],
            host=db["HOST"],
            port=db["PORT"] or None,
            autocommit=True,
        )

    def manage(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            **kwargs,
        )


@contextmanager
def scratch_database(name: str) -> Iterator[Scratch]:
    scratch = Scratch(name)
    with scratch.connect(scratch.db["NAME"]) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        scratch.manage("migrate", "-v", "0")
        yield scratch
    finally:
        with scratch.connect(scratch.db["NAME"]) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def raw_copy_rate(conn: psycopg.Connection, rows: int = 200_000) -> float:
    """Rows/s of a bare COPY of synthetic messages into a copy of the message table (same indexes)."""

    conn.execute("DROP TABLE IF EXISTS bench_msg_copy")
    conn.execute("CREATE TABLE bench_msg_copy (LIKE analytics_message INCLUDING ALL)")
    now = datetime.now(UTC)
    started = time.perf_counter()
    with conn.cursor().copy(
        "COPY bench_msg_copy (organization_id, bot_id, conversation_id, direction, text, created_at, "
        "response_time_ms, outcome, tokens, cost_usd, kb_hit) FROM STDIN"
    ) as copy:
        for i in range(rows):
            copy.write_row(
                (
                    1,
                    1 + i % 3,
                    1 + i // 40,
                    "outbound",
                    "Sure - Thursday at 15:00 is free.",
                    now,
                    800,
                    "success",
                    230,
                    "0.000575",
                    True,
                )
            )
    rate = rows / (time.perf_counter() - started)
    conn.execute("DROP TABLE bench_msg_copy")
    return rate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(scratch: Scratch, *args: str, log: Path | None = None) -> subprocess.Popen:
    """A product process (`daphne …`, `manage.py pulse`) on the scratch database; its output is
    discarded, or appended to `log`."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(list(args), cwd=ROOT, env=scratch.env, stdout=out, stderr=out)


def start_web(
    scratch: Scratch, port: int, log: Path | None = None, options: tuple[str, ...] = ()
) -> subprocess.Popen:
    """A daphne web process on `port`, as the Procfile runs it (plus `options`), returned once
    /healthz answers."""
    daphne = str(Path(sys.executable).parent / "daphne")
    web = start(
        scratch,
        daphne,
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        *procfile_daphne_options(),
        *options,
        "config.asgi:application",
        log=log,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return web
        except OSError:
            time.sleep(0.2)
    web.kill()
    raise SystemExit(f"web process on port {port} did not become healthy")


def stop(*processes: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s (daphne may linger while WebSockets are open)."""
    for proc in processes:
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
