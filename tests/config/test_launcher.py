"""The launcher says which service is unreachable and how to fix it, and can run on the embedded
PostgreSQL and Redis when nothing is configured."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def launcher(env_overrides: dict[str, str], *args: str, unset=()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "config.launcher", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_names_an_unreachable_postgresql_and_how_to_fix_it():
    result = launcher({"DATABASE_URL": "postgres://postgres@127.0.0.1:1/botflow"}, "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: PostgreSQL at 127.0.0.1:1/botflow cannot be reached" in result.stderr
    assert "unset DATABASE_URL to use the embedded PostgreSQL" in result.stderr


def test_it_names_an_unreachable_redis_and_how_to_fix_it():
    result = launcher({"REDIS_URL": "redis://127.0.0.1:1/0"}, "check")
    assert result.returncode == 2
    assert "error: Redis at redis://127.0.0.1:1/0 cannot be reached" in result.stderr
    assert "PostgreSQL" not in result.stderr


def test_it_runs_a_command_on_the_embedded_services_when_nothing_is_configured(tmp_path):
    probe = (
        "import os, psycopg, redis; "
        "from config.env import parse_database_url as p; "
        "d = p('DATABASE_URL', os.environ['DATABASE_URL']); "
        "c = psycopg.connect(dbname=d['NAME'], user=d['USER'], host=d['HOST']); "
        "print(c.execute('select percentile_cont(0.5) within group (order by x) "
        "from generate_series(1, 9) x').fetchone()[0]); "
        "print(redis.Redis.from_url(os.environ['REDIS_URL']).ping()); "
        "print(os.environ['BOTFLOW_EMBEDDED'])"
    )
    result = launcher(
        {"BOTFLOW_DATA_DIR": str(tmp_path)},
        "run",
        "--",
        sys.executable,
        "-c",
        probe,
        unset=("DATABASE_URL", "REDIS_URL"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5.0", "True", "1"]
    assert (tmp_path / "pg" / "PG_VERSION").exists()


def test_it_runs_its_children_with_development_settings_on_the_configured_services():
    probe = "import os; print(os.environ['BOTFLOW_ENV'], os.environ.get('BOTFLOW_EMBEDDED', '-'))"

    result = launcher(
        {}, "run", "--", sys.executable, "-c", probe, unset=("BOTFLOW_ENV", "BOTFLOW_EMBEDDED")
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["development", "-"]  # the URLs are set: nothing embedded


def test_it_keeps_an_environment_the_operator_chose():
    probe = "import os; print(os.environ['BOTFLOW_ENV'])"

    result = launcher({"BOTFLOW_ENV": "production"}, "run", "--", sys.executable, "-c", probe)

    assert result.stdout.split() == ["production"]
