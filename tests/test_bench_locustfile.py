"""The load test's locustfile (make bench-load) loads as locust loads it and keeps its plan.

Locust patches the standard library with gevent when imported, so the file is loaded in a
process of its own, never in the test process.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, time, types
from locust.util.load_locustfile import load_locustfile
users, shapes = load_locustfile("bench/locustfile.py")
member = users["OrgMember"]
shape = shapes[0]
options = types.SimpleNamespace(num_users=200, spawn_rate=1.7, run_time=300)
shape.runner = types.SimpleNamespace(environment=types.SimpleNamespace(parsed_options=options))
plan = []
for elapsed in (0, 149, 151, 299, 301):
    shape.start_time = time.perf_counter() - elapsed
    plan.append(shape.tick())
print(json.dumps({
    "users": sorted(users),
    "shape": type(shape).__name__,
    "tasks": sorted({t.__name__ for t in member.tasks}),
    "plan": plan,
}))
"""


def test_locustfile_loads_with_every_user_action_and_the_100_to_200_ramp():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["users"] == ["OrgMember"]
    assert found["shape"] == "RampShape"
    assert found["tasks"] == [
        "export_csv",
        "filter_explorer",
        "open_bot",
        "open_dashboard",
        "open_transcript",
        "read_api",
        "switch_period",
    ]
    # Half the users for the first half of the run, all of them after, then the end.
    assert found["plan"] == [[100, 1.7], [100, 1.7], [200, 1.7], [200, 1.7], None]
