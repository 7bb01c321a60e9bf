"""Benchmark: 200 concurrent users on 2 web processes while 200 events/s arrive (issue 12).

Run:  make bench-load                      (the full run: 200 users, 5 minutes, 200 events/s)
      make bench-load BENCH_ARGS="--users 40 --duration 45s"      (a short trial)
      (or: python -m config.launcher run -- python bench/load.py --users 40 --duration 45s)

What it starts, all on its own database `botflow_bench_load` (created, migrated and seeded with
`seed_demo` — 30 days of the two demo orgs, acme and globex — then dropped; `--keep` keeps it and
`--reuse` takes it as it is):
- `--users` members of the demo orgs (half each; roles viewer / analyst / admin / owner in 3:5:1:1)
  with known passwords and a read API key per 10 users, written to .data/bench-load/users.json;
- two `daphne` web processes (the Procfile's options) on two free ports, `pulse`, a Celery worker
  (ingestion queues conversation follow-ups) and beat, with their output in .data/bench-load/;
- an ingestion process sending `--rate` events/s of the simulator's traffic (`manage.py simulate`'s
  conversations, half per org) through POST /api/v1/events, alternating between the two ports,
  counting every answer other than 200 and every connection error (no retry hides one);
- `locust` headless with bench/locustfile.py: users sign in through the login form and use the
  dashboard, explorer, transcripts, bot pages, the read API and the CSV export, each pinned to one
  of the two ports; half the users for the first half of the run, then all (the k6 plan's ramp
  100 -> 200), ramping at `(users/2) / (20% of the run)` users/s.

Targets: every request type p95 <= 500 ms, no failed request (locust's or ingestion's), and the web
processes, pulse and the worker are the same processes at the end (none died or restarted).
Prints one table per request type (count, failures, p50, p95, p99) and PASS/FAIL; exits 1 on a
FAIL only with `--strict`.

Security settings stay as production has them: sign-in lockout (django-axes) counts failed
sign-ins only, and every user signs in once with its own account and correct password, so it never
trips; the API rate limit is per key (INGEST_RATE_LIMIT requests/s), and each key here serves at
most 10 users (a few requests/s). The bench's Celery worker consumes REDIS_URL's queues: run it on
a Redis database no other worker uses.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from scratch import ROOT, Scratch, free_port, start, start_web, stop  # noqa: E402

BENCH_DB = "botflow_bench_load"
LIVE_PREFIX = "bfbenchload"
OUT = ROOT / ".data" / "bench-load"
PASSWORD = "load-test-password-9f3c"  # noqa: S105 - accounts of a throwaway bench database
ROLES = ["viewer"] * 3 + ["analyst"] * 5 + ["admin", "owner"]
USERS_PER_KEY = 10
TARGET_P95_MS = 500
INGEST_BATCH_SECONDS = 0.1  # one request per 100 ms: 20 events per request at 200 events/s


def seconds(text: str) -> int:
    """'45s', '5m', '1h30m' or a plain number of seconds."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"expected e.g. 45s, 5m or 1h30m, got {text!r}")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


# --- the database and the accounts


def database(reuse: bool) -> Scratch:
    """The bench database: migrated and seeded with the demo orgs, unless `reuse` finds it."""
    scratch = Scratch(BENCH_DB)
    with scratch.connect(scratch.db["NAME"]) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB])
        exists = found.fetchone()
        if reuse and exists:
            print(f"database: {BENCH_DB} (reused as it is)")
            return scratch
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {BENCH_DB}")
    started = time.perf_counter()
    scratch.manage("migrate", "-v", "0")
    out = scratch.manage("seed_demo", "--no-progress", capture_output=True, text=True).stdout
    print(
        f"database: {BENCH_DB}, {out.strip().splitlines()[-1]} "
        f"(migrated and seeded in {time.perf_counter() - started:.0f} s)"
    )
    return scratch


def drop(scratch: Scratch) -> None:
    with scratch.connect(scratch.db["NAME"]) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def prepare_accounts(n: int) -> None:
    """(In a child process on the bench database.) `n` members with one password, a read key per
    USERS_PER_KEY users and an ingest key per org; the JSON goes to stdout."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from analytics.models import ApiKey, Bot, Conversation, Membership, Organization
    from analytics.services.api_keys import api_key_create

    User = get_user_model()
    orgs = {o.slug: o for o in Organization.objects.filter(slug__in=["acme", "globex"])}
    if len(orgs) != 2:
        raise SystemExit("the bench database lacks the demo orgs acme and globex (seed_demo)")
    User.objects.filter(username__startswith="load-").delete()
    ApiKey.objects.filter(name__startswith="bench-load").delete()
    hashed = make_password(PASSWORD)  # once: the hasher's cost is per sign-in, not per account
    slugs, keys, accounts = list(orgs), {}, []
    for i in range(n):
        slug, group = slugs[i % 2], i // (2 * USERS_PER_KEY)
        if (slug, group) not in keys:
            keys[slug, group] = api_key_create(
                organization=orgs[slug], name=f"bench-load-read-{group}", scopes="read"
            ).secret
        accounts.append(
            {
                "username": f"load-{i:04d}",
                "password": PASSWORD,
                "org": slug,
                "role": ROLES[(i // 2) % len(ROLES)],
                "key": keys[slug, group],
            }
        )
    users = User.objects.bulk_create(
        User(username=a["username"], email=f"{a['username']}@example.com", password=hashed)
        for a in accounts
    )
    Membership.objects.bulk_create(
        Membership(organization=orgs[a["org"]], user=user, role=a["role"])
        for a, user in zip(accounts, users, strict=True)
    )
    data = {"users": accounts, "orgs": {}}
    for slug, org in orgs.items():
        conversations = Conversation.objects.for_org(org).order_by("-started_at")
        data["orgs"][slug] = {
            "bots": list(Bot.objects.for_org(org).order_by("slug").values_list("slug", flat=True)),
            "conversations": list(conversations.values_list("pk", flat=True)[:500]),
            "ingest_key": api_key_create(
                organization=org, name="bench-load-ingest", scopes="ingest"
            ).secret,
        }
    print(json.dumps(data))


# --- ingestion (a process of its own)


def ingest(ports: list[int], rate: float, duration: float, keys: dict[str, str]) -> None:
    """(In a child process on the bench database.) The simulator's traffic for each org in `keys`
    at `rate` events/s in total, one batch every 100 ms, alternating over `ports`; prints totals."""
    import django

    django.setup()
    from analytics.management.commands.simulate import Simulator
    from analytics.models import Bot, Campaign, Organization

    sims = []
    for i, (slug, key) in enumerate(sorted(keys.items())):
        org = Organization.objects.get(slug=slug)
        bots = list(Bot.objects.for_org(org))
        campaigns = list(Campaign.objects.for_org(org).select_related("bot"))
        sims.append((Simulator(bots, campaigns, rate / len(keys), random.Random(i)), key))
    for sim, _key in sims:  # a minute of traffic already under way: steady rate from the start
        now = time.time()
        for step in range(600, 0, -1):
            sim.tick(now - step * INGEST_BATCH_SECONDS, INGEST_BATCH_SECONDS)  # sent "earlier"
    stop_at = time.time() + duration
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    totals = {"requests": 0, "events": 0, "accepted": 0, "errors": 0, "error_kinds": {}}
    latencies: list[float] = []
    last = next_tick = time.time()
    n = 0
    try:
        while time.time() < stop_at:
            time.sleep(max(0.0, next_tick - time.time()))
            next_tick += INGEST_BATCH_SECONDS
            now = time.time()
            for sim, key in sims:
                events = sim.tick(now, now - last)
                if events:
                    port = ports[n % len(ports)]
                    n += 1
                    _ingest_send(port, key, events, totals, latencies)
            last = now
    finally:
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0
        print(json.dumps({**totals, "p95_ms": p95, "seconds": duration}), flush=True)


def _ingest_send(port: int, key: str, events: list[dict], totals: dict, latencies: list) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"http://127.0.0.1:{port}/api/v1/events",
        data=orjson.dumps({"events": events}),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    totals["requests"] += 1
    totals["events"] += len(events)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            totals["accepted"] += orjson.loads(response.read())["accepted"]
    except urllib.error.HTTPError as exc:
        kind = f"HTTP {exc.code}"
    except OSError as exc:
        kind = type(exc).__name__
    else:
        latencies.append((time.perf_counter() - started) * 1000)
        return
    totals["errors"] += 1
    totals["error_kinds"][kind] = totals["error_kinds"].get(kind, 0) + 1


# --- the run


class Processes:
    """The product's processes for the run, remembered by pid and start time."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}

    def add(self, name: str, proc: subprocess.Popen) -> None:
        self.procs[name] = proc
        self.started[name] = psutil.Process(proc.pid).create_time()

    def problems(self) -> list[str]:
        """Every process that exited, or whose pid now belongs to another process."""
        found = []
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                found.append(f"{name} (pid {proc.pid}) exited with {proc.returncode}")
                continue
            try:
                same = psutil.Process(proc.pid).create_time() == self.started[name]
            except psutil.NoSuchProcess:
                same = False
            if not same:
                found.append(f"{name} (pid {proc.pid}) is not the process started")
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each process and its children (the worker's pool)."""
        used = {}
        for name, proc in self.procs.items():
            try:
                parent = psutil.Process(proc.pid)
                used[name] = sum(
                    sum(p.cpu_times()[:2]) for p in [parent, *parent.children(recursive=True)]
                )
            except psutil.NoSuchProcess:
                used[name] = 0.0
        return used

    def stop(self) -> None:
        stop(*self.procs.values())


def start_processes(scratch: Scratch, ports: list[int]) -> Processes:
    bin_dir = Path(sys.executable).parent
    procs = Processes()
    procs.add("pulse", start(scratch, sys.executable, "manage.py", "pulse", log=OUT / "pulse.log"))
    procs.add(
        "worker",
        start(
            scratch,
            str(bin_dir / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "WARNING",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-n",
            "bench-load@%h",
            log=OUT / "worker.log",
        ),
    )
    procs.add(
        "beat",
        start(
            scratch,
            str(bin_dir / "celery"),
            "-A",
            "config",
            "beat",
            "--loglevel",
            "WARNING",
            "-s",
            str(OUT / "beat-schedule"),
            log=OUT / "beat.log",
        ),
    )
    for i, port in enumerate(ports, 1):
        procs.add(f"web {i} (:{port})", start_web(scratch, port, log=OUT / f"web{i}.log"))
    return procs


def run_locust(args, ports: list[int], data_path: Path, env: dict) -> tuple[int, Path]:
    hosts = [f"http://127.0.0.1:{p}" for p in ports]
    spawn_rate = args.spawn_rate or max(0.1, (args.users / 2) / (0.2 * args.duration))
    prefix = OUT / "locust"
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(BENCH_DIR / "locustfile.py"),
        "--headless",
        "-u",
        str(args.users),
        "-r",
        f"{spawn_rate:.2f}",
        "-t",
        f"{args.duration}s",
        "--host",
        hosts[0],
        "--hosts",
        ",".join(hosts),
        "--bench-data",
        str(data_path),
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "20",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
        "--logfile",
        str(OUT / "locust.log"),
    ]
    print(f"$ {' '.join(command[1:])}", flush=True)
    with open(OUT / "locust.out", "wb") as out:
        code = subprocess.call(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return code, prefix


def report(args, prefix: Path, ingest_totals: dict, problems: list[str], cpu: str) -> bool:
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))  # noqa: SIM115 - read whole at once
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"{args.users} users, {args.duration} s, {args.rate:g} events/s ingested, "
        "2 daphne processes\n"
    )
    print("| request | count | failures | p50 ms | p95 ms | p99 ms | max ms | |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    passed = True
    for row in rows:
        count, failures = int(row["Request Count"]), int(row["Failure Count"])
        p50, p95, p99 = (row[k] for k in ("50%", "95%", "99%"))
        ok = failures == 0 and count > 0 and float(p95 if p95 != "N/A" else 0) <= TARGET_P95_MS
        total = row["Name"] == "Aggregated"
        passed &= ok or total
        label = "**all requests**" if total else f"{row['Type']} {row['Name']}"
        print(
            f"| {label} | {count:,} | {failures:,} | {p50} | {p95} | {p99} | "
            f"{float(row['Max Response Time']):.0f} | {'PASS' if ok else 'FAIL'} |"
        )
    failures = list(csv.DictReader(open(f"{prefix}_failures.csv")))  # noqa: SIM115
    for row in failures:
        print(f"  failed: {row['Method']} {row['Name']}: {row['Error']} x{row['Occurrences']}")
    i = ingest_totals
    ingest_ok = i.get("errors", 1) == 0 and i.get("requests", 0) > 0
    passed &= ingest_ok
    print(
        f"\ningestion: {i.get('events', 0):,} events in {i.get('requests', 0):,} requests "
        f"({i.get('events', 0) / max(1, i.get('seconds', 1)):,.0f} events/s), "
        f"{i.get('accepted', 0):,} accepted, {i.get('errors', '?')} failed requests "
        f"{i.get('error_kinds') or ''}, p95 {i.get('p95_ms', 0):.0f} ms: "
        f"{'PASS' if ingest_ok else 'FAIL'}"
    )
    print(
        "processes: "
        + (
            "; ".join(problems) + ": FAIL"
            if problems
            else "web x2, pulse, worker and beat ran throughout (same pids): PASS"
        )
    )
    passed &= not problems
    print(cpu + " (the rest of the machine: PostgreSQL, Redis and whatever else runs)")
    print(
        f"\n{'PASS' if passed else 'FAIL'}: p95 <= {TARGET_P95_MS} ms per request type, "
        "no failed request, no process restart"
    )
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200, help="peak users (default 200)")
    parser.add_argument("--duration", type=seconds, default=300, help="e.g. 45s, 5m (default 5m)")
    parser.add_argument("--rate", type=float, default=200, help="events/s ingested (default 200)")
    parser.add_argument("--spawn-rate", type=float, default=0, help="users/s while ramping")
    parser.add_argument(
        "--reuse", action="store_true", help="use botflow_bench_load as it is and keep it"
    )
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--prepare-accounts", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ingest", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_accounts is not None:
        prepare_accounts(args.prepare_accounts)
        return
    if args.ingest:
        spec = json.loads(args.ingest)
        ingest(spec["ports"], spec["rate"], spec["duration"], spec["keys"])
        return
    if args.users < 2 or args.duration < 10 or args.rate <= 0:
        parser.error("--users must be at least 2, --duration at least 10s and --rate above 0")

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.log"):
        old.unlink()
    scratch = database(args.reuse)
    scratch.manage("collectstatic", "--noinput", "-v", "0")  # served as in production (manifest)
    env = {
        **scratch.env,
        "LIVE_KEY_PREFIX": LIVE_PREFIX,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
    }
    scratch.env = env
    data = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--prepare-accounts", str(args.users)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    data_path = OUT / "users.json"
    data_path.write_text(json.dumps(data))
    ports = [free_port(), free_port()]
    procs = start_processes(scratch, ports)
    ingester = None
    try:
        spec = {
            "ports": ports,
            "rate": args.rate,
            "duration": args.duration,
            "keys": {slug: org["ingest_key"] for slug, org in data["orgs"].items()},
        }
        ingester = subprocess.Popen(
            [sys.executable, __file__, "--ingest", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(OUT / "ingest.log", "wb"),  # noqa: SIM115
        )
        ingest_out: list[bytes] = []
        reader = threading.Thread(target=lambda: ingest_out.append(ingester.stdout.read()))
        reader.start()
        before, machine = procs.cpu_seconds(), psutil.cpu_times()
        started = time.perf_counter()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        code, prefix = run_locust(args, ports, data_path, env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage = {name: cpu - before[name] for name, cpu in procs.cpu_seconds().items()}
        usage["locust"] = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        machine_now = psutil.cpu_times()
        elapsed = time.perf_counter() - started
        busy = sum(machine_now[:3]) - sum(machine[:3])  # user, nice, system
        ingester.wait(timeout=60)
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage["ingestion"] = done.ru_utime + done.ru_stime - after.ru_utime - after.ru_stime
        reader.join()
        problems = procs.problems()
    finally:
        if ingester and ingester.poll() is None:
            ingester.terminate()
        procs.stop()
        if not (args.keep or args.reuse):
            drop(scratch)
    if code != 0 or not Path(f"{prefix}_stats.csv").exists():
        print((OUT / "locust.out").read_text()[-3000:])
        raise SystemExit(f"locust exited with {code}; its log: {OUT / 'locust.log'}")
    lines = b"".join(ingest_out).decode().strip().splitlines()
    ingest_totals = json.loads(lines[-1]) if lines else {}
    cores = os.cpu_count() or 1
    cpu = (
        f"CPU over the run ({elapsed:.0f} s, in cores): machine {busy / elapsed:.2f} of {cores}; "
        + ", ".join(f"{name} {cpu / elapsed:.2f}" for name, cpu in usage.items())
    )
    passed = report(args, prefix, ingest_totals, problems, cpu)
    if args.strict and not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
