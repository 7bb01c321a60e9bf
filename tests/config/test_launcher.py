"""The launcher says which service is unreachable and how to fix it, and can run on the embedded
PostgreSQL and Redis when nothing is configured."""

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config.launcher import ANSI

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


def test_it_names_an_unreachable_rabbitmq_without_its_password_and_how_to_fix_it():
    result = launcher({"CELERY_BROKER_URL": "amqp://bf:s3cret@127.0.0.1:1/botflow"}, "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
    assert "error: RabbitMQ at amqp://bf:**@127.0.0.1:1/botflow cannot be reached" in result.stderr
    assert "unset CELERY_BROKER_URL to use Redis as Celery's broker" in result.stderr


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


# The Supervisor behind `make demo`, run with small commands and a fast restart policy: a child
# that exits is started again with growing delays, a crash loop is reported and left stopped,
# and only SIGTERM / Ctrl-C stops everything.

SUPERVISE = (
    "import json, sys; "
    "from config.launcher import RestartPolicy, supervise; "
    "sys.exit(supervise([tuple(e) for e in json.loads(sys.argv[1])], "
    "RestartPolicy(**json.loads(sys.argv[2]))))"
)
SLEEPER = "python -c 'import os, time; print(\"pid\", os.getpid(), flush=True); time.sleep(300)'"
TICKER = (
    "python -c 'import itertools, time\n"
    'for i in itertools.count(): print("tick", i, flush=True); time.sleep(0.1)\''
)


class Launched:
    """A running supervisor whose merged output is read line by line as it comes."""

    def __init__(self, entries: list[tuple[str, str]], **policy: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUPERVISE, json.dumps(entries), json.dumps(policy)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(ANSI.sub("", line.rstrip("\n")))

    def expect(self, pattern: str, timeout: float = 15) -> re.Match:
        """Wait for the next line matching `pattern`; fail with everything seen so far."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.seen))

    def child_pids(self) -> list[int]:
        return [
            int(m)
            for line in self.seen
            for m in re.findall(r"^\[botflow\] started \S+ \(pid (\d+)\)", line)
        ]

    def close(self) -> None:
        """Whatever a failed test left running is killed: the supervisor and every child group."""
        for pid in [self.proc.pid, *self.child_pids()]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def launch():
    launched = []

    def start(entries, **policy):
        launched.append(Launched(entries, **policy))
        return launched[-1]

    yield start
    for supervisor in launched:
        supervisor.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_it_restarts_a_child_killed_with_sigkill_and_says_so(launch):
    supervisor = launch([("pulse", SLEEPER)], base=0.2)
    first = int(supervisor.expect(r"pulse \| pid (\d+)").group(1))

    os.kill(first, signal.SIGKILL)

    supervisor.expect(r"^\[botflow\] pulse exited \(code -9\); restarting in 0\.2 s \(attempt 1\)$")
    second = int(supervisor.expect(r"pulse \| pid (\d+)").group(1))
    assert second != first and alive(second)


def test_its_restart_delay_doubles_up_to_the_cap(launch):
    started = time.monotonic()
    supervisor = launch(
        [("flaky", "python -c 'raise SystemExit(3)'")], base=0.1, cap=0.4, give_up_after=99
    )

    delays = [
        supervisor.expect(
            r"flaky exited \(code 3\); restarting in ([\d.]+) s \(attempt (\d+)\)"
        ).groups()
        for _ in range(5)
    ]

    assert delays == [("0.1", "1"), ("0.2", "2"), ("0.4", "3"), ("0.4", "4"), ("0.4", "5")]
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.4 + 0.4  # it did wait between restarts


def test_its_restart_delay_starts_again_after_a_child_stayed_up(launch):
    lives_a_second = "python -c 'import time; time.sleep(1); raise SystemExit(1)'"
    supervisor = launch([("beat", lives_a_second)], base=0.1, stable_after=0.5, give_up_after=99)

    attempts = [
        supervisor.expect(
            r"beat exited \(code 1\); restarting in ([\d.]+) s \(attempt (\d+)\)"
        ).groups()
        for _ in range(3)
    ]

    assert attempts == [("0.1", "1")] * 3


def test_it_leaves_a_crash_loop_stopped_with_its_last_error_while_the_others_run(launch):
    crasher = (
        'python -c \'print("connecting"); '
        'raise RuntimeError("couldn\\x27t get a connection after 3.00 sec")\''
    )
    supervisor = launch([("pulse", crasher), ("web", TICKER)], base=0.05, cap=0.1)

    for attempt in range(1, 5):
        supervisor.expect(rf"pulse exited \(code 1\); restarting in [\d.]+ s \(attempt {attempt}\)")
    supervisor.expect(
        r"^\[botflow\] pulse exited \(code 1\) 5 times within 60 s; leaving it stopped\. "
        r"Last error: RuntimeError: couldn't get a connection after 3\.00 sec$"
    )

    before = int(supervisor.expect(r"web +\| tick (\d+)").group(1))
    time.sleep(1)
    after = int(supervisor.expect(r"web +\| tick (\d+)").group(1))
    assert after > before  # the sibling kept running
    assert not [line for line in supervisor.seen[-5:] if "started pulse" in line]
    assert supervisor.proc.poll() is None


def test_it_reports_the_last_line_when_a_crash_loop_prints_no_exception(launch):
    supervisor = launch(
        [("worker", "python -c 'print(\"port 8000 is busy\"); raise SystemExit(2)'")],
        base=0.05,
        give_up_after=2,
    )

    supervisor.expect(
        r"worker exited \(code 2\) 2 times within 60 s; leaving it stopped\. Last error: port 8000 is busy$"
    )
    supervisor.expect(r"^\[botflow\] every process has stopped; exiting$")
    assert supervisor.proc.wait(timeout=10) == 1


def test_sigterm_stops_every_child_and_the_supervisor(launch):
    supervisor = launch([("web", SLEEPER), ("worker", SLEEPER)])
    pids = [int(supervisor.expect(r"(?:web|worker) +\| pid (\d+)").group(1)) for _ in range(2)]

    supervisor.proc.send_signal(signal.SIGTERM)

    supervisor.expect(r"^\[botflow\] all processes stopped$")
    assert supervisor.proc.wait(timeout=10) == 0
    assert not [pid for pid in pids if alive(pid)]
    assert not [line for line in supervisor.seen if "restarting" in line]


def test_ctrl_c_kills_a_child_that_ignores_sigterm_after_the_timeout(launch):
    stubborn = (
        "python -c 'import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        'print("pid", os.getpid(), flush=True); time.sleep(300)\''
    )
    supervisor = launch([("beat", stubborn)], stop_timeout=0.5)
    pid = int(supervisor.expect(r"beat \| pid (\d+)").group(1))

    supervisor.proc.send_signal(signal.SIGINT)

    supervisor.expect(r"^\[botflow\] beat did not stop in time; killing it$")
    supervisor.expect(r"^\[botflow\] all processes stopped$")
    assert supervisor.proc.wait(timeout=10) == 0
    assert not alive(pid)


def test_ctrl_c_during_a_restart_delay_does_not_start_the_child_again(launch):
    supervisor = launch([("simulator", "python -c 'raise SystemExit(1)'")], base=5)
    supervisor.expect(r"simulator exited \(code 1\); restarting in 5 s \(attempt 1\)")

    supervisor.proc.send_signal(signal.SIGINT)

    supervisor.expect(r"^\[botflow\] all processes stopped$", timeout=3)
    assert supervisor.proc.wait(timeout=10) == 0
    assert len(supervisor.child_pids()) == 1
