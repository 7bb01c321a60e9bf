"""pytest plugin (`-p tests.pytest_env`), loaded before Django's settings: the run is a test run.

Settings default to production, which refuses the development secret key and starts no embedded
server; tests run with BOTFLOW_ENV=test, and on the embedded servers when no URL is configured
(`make test` through the launcher and plain `pytest` alike).
"""

import os

os.environ["BOTFLOW_ENV"] = "test"
if not (os.environ.get("DATABASE_URL", "").strip() and os.environ.get("REDIS_URL", "").strip()):
    os.environ["BOTFLOW_EMBEDDED"] = "1"
# Socket tests run each scenario on an event loop of its own (tests/dashboard/test_consumers.py
# `run`); the loop's executor threads end with the test while the pool still counts the connection
# each one held as checked out (measured: 11 of 12 after the hub's burst test, on main before
# issue 11 too). A product process keeps its executor threads, so this is the suite's own cost:
# room for it, instead of a PoolTimeout in whichever socket test comes after the twentieth.
os.environ.setdefault("DB_POOL_MAX", "50")
