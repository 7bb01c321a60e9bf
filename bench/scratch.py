"""A migrated scratch database for a benchmark, created and dropped around the run."""

from __future__ import annotations

import os
import re
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
