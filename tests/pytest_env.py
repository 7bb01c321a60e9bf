"""pytest plugin (`-p tests.pytest_env`), loaded before Django's settings: the run is a test run.

Settings default to production, which refuses the development secret key and starts no embedded
server; tests run with BOTFLOW_ENV=test, and on the embedded servers when no URL is configured
(`make test` through the launcher and plain `pytest` alike).
"""

import os

os.environ["BOTFLOW_ENV"] = "test"
if not (os.environ.get("DATABASE_URL", "").strip() and os.environ.get("REDIS_URL", "").strip()):
    os.environ["BOTFLOW_EMBEDDED"] = "1"
