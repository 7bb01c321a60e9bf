"""A reusable benchmark database: 10,000,000 messages / ~1,000,000 conversations over 30 days.

    python bench/bigdata.py [--reset] [--scale 1.0]     (or: from bigdata import ensure_bigdata)

`ensure_bigdata()` returns a `Scratch` for the database `botflow_bench_10m`, creating it once
(migrate, seed with COPY, build every rollup with `manage.py backfill`) and reusing it on later
calls while it holds the data; `--reset` (or `reset=True`) rebuilds it. Other benchmarks (page
renders, read paths) share it, so it always ends with its rollups built. `scratch.meta` says
what is in it (orgs, window, the spike day and hour).

Shape: 10 orgs (`bench-00` .. `bench-09`, in 10 time zones) with 5 bots each (2 chat bots,
2 AI employees, 1 outbound dialer whose calls have outcomes), a diurnal cycle in each org's time
zone, org volumes weighted 10:9:..:1, conversations of 2-20 messages with log-normal response
times and a heavy tail, ~5% failed and ~5% fallback replies. On top, `bench-00` (Europe/Berlin)
has one spike day three days ago holding 1,000,000 messages, 100,000 of them in its 14:00 hour:
the sizes `bench/rollups.py` times (an hour of 100k messages, a day of 1M).

Seeding: message, conversation and activity indexes are dropped, rows are COPYed in time order
(2 worker processes generate, PostgreSQL writes), and the indexes are rebuilt once at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import ROOT, Scratch  # noqa: E402

sys.path.insert(0, str(ROOT))

from analytics.synthetic import diurnal, pick_weighted, poisson  # noqa: E402

# BENCH_BIGDATA_DB: another copy, e.g. one migrated to a newer schema, to compare in one sitting
DB_NAME = os.environ.get("BENCH_BIGDATA_DB", "botflow_bench_10m")
VERSION = 1
MESSAGES = 10_000_000
DAYS = 30
SPIKE_DAY_MESSAGES = 1_000_000
SPIKE_HOUR_MESSAGES = 100_000
TIMEZONES = [
    "Europe/Berlin",
    "America/New_York",
    "UTC",
    "Asia/Kolkata",
    "Europe/London",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Africa/Lagos",
]
BOTS = [  # slug, kind, channel
    ("support", "chatbot", "whatsapp"),
    ("sales", "chatbot", "web"),
    ("luna", "ai_employee", "voice"),
    ("jade", "ai_employee", "web"),
    ("dialer", "voice", "voice"),
]
TEXTS = [
    ("Hi, can I move my appointment to Thursday?", "Sure, Thursday at 10:30 or 15:00 is free."),
    ("How much is a cleaning without insurance?", "A standard cleaning is 89 EUR."),
    ("Do you have parking at the clinic?", "Yes, there is free parking behind the building."),
    ("My invoice shows the wrong amount", "Sorry! I have flagged the invoice for review."),
    ("Can I talk to a person please", "Of course, I'm connecting you with a colleague now."),
    ("Thanks, that's all!", "You're welcome, have a great day!"),
]
CALL_OUTCOMES = [
    ("answered", 0.45),
    ("no_answer", 0.25),
    ("busy", 0.12),
    ("converted", 0.10),
    ("failed", 0.05),
    ("opt_out", 0.03),
]
SEEDED_TABLES = ("analytics_conversation", "analytics_message", "analytics_activity")
ROLLUP_TABLES = (
    "analytics_bothourlyrollup",
    "analytics_orghourlyusage",
    "analytics_botdailymetrics",
    "analytics_conversationmetrics",
    "analytics_rollupdirtyhour",
    "analytics_rollupdirtyday",
    "analytics_rollupbackfillunit",
    "analytics_rollupbackfill",
)


def plan(now: datetime, scale: float) -> dict:
    """Where the data goes: window, orgs, the spike; conversations per (org, hour)."""
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    first = last - timedelta(hours=DAYS * 24 - 1)
    berlin = ZoneInfo(TIMEZONES[0])
    spike_day = (now - timedelta(days=3)).astimezone(berlin).date()
    spike_start = datetime.combine(spike_day, datetime.min.time(), tzinfo=berlin).astimezone(UTC)
    spike_end = datetime.combine(
        spike_day + timedelta(days=1), datetime.min.time(), tzinfo=berlin
    ).astimezone(UTC)
    spike_hour = datetime(
        spike_day.year, spike_day.month, spike_day.day, 14, tzinfo=berlin
    ).astimezone(UTC)
    hours = [first + timedelta(hours=h) for h in range(DAYS * 24)]
    weights = [10 - i for i in range(10)]
    mean_messages = 10.0  # per conversation (see _conversation)
    normal = (MESSAGES - SPIKE_DAY_MESSAGES) * scale
    units = []  # (org index, hour, conversations)
    for o, tz in enumerate(TIMEZONES):
        zone = ZoneInfo(tz)
        curve = [diurnal(h.astimezone(zone).hour + 0.5) for h in hours]
        total = sum(curve)
        share = normal * weights[o] / sum(weights)
        for h, c in zip(hours, curve, strict=True):
            if o == 0 and spike_start <= h < spike_end:
                continue  # the spike day replaces the normal volume
            units.append((o, h, share * c / total / mean_messages))
    spike_hours = [h for h in hours if spike_start <= h < spike_end]
    rest = [h for h in spike_hours if h != spike_hour]
    curve = [diurnal(h.astimezone(berlin).hour + 0.5) for h in rest]
    for h, c in zip(rest, curve, strict=True):
        units.append(
            (
                0,
                h,
                (SPIKE_DAY_MESSAGES - SPIKE_HOUR_MESSAGES) * scale * c / sum(curve) / mean_messages,
            )
        )
    units.append((0, spike_hour, SPIKE_HOUR_MESSAGES * scale / mean_messages))
    units.sort(key=lambda u: (u[1], u[0]))
    return {
        "first_hour": first,
        "last_hour": last,
        "spike_day": spike_day,
        "spike_hour": spike_hour,
        "units": units,
        "end": last + timedelta(hours=1),
    }


def _conversation(rng, conv_id, org_id, bot, hour, end, customers, conv_rows, msg_rows, act_rows):
    bot_id, kind = bot
    started = hour + timedelta(seconds=rng.uniform(0, 3600))
    call_outcome = pick_weighted(rng, CALL_OUTCOMES) if kind == "voice" else ""
    pairs = 1 if call_outcome in ("no_answer", "busy", "failed") else rng.randint(1, 9)
    t = started
    outcomes = []
    for _ in range(pairs):
        question, answer = TEXTS[rng.randrange(len(TEXTS))]
        msg_rows.append((org_id, bot_id, conv_id, "inbound", question, t, None, "", 0, 0, None))
        rt = rng.lognormvariate(6.75 if kind != "voice" else 7.2, 0.55)
        if rng.random() < 0.03:
            rt *= rng.uniform(3, 9)
        rt = int(min(rt, 60_000))
        t = t + timedelta(milliseconds=rt)
        r = rng.random()
        outcome = "success" if r < 0.9 else ("failed" if r < 0.95 else "fallback")
        outcomes.append(outcome)
        tokens = rng.randint(120, 650)
        cost = Decimal(tokens * 25).scaleb(-7)
        kb = None if outcome == "failed" else rng.random() < 0.72
        msg_rows.append(
            (org_id, bot_id, conv_id, "outbound", answer, t, rt, outcome, tokens, cost, kb)
        )
        t = t + timedelta(seconds=rng.uniform(8, 40))
    if t >= end:  # still going at the end of the window
        while msg_rows and msg_rows[-1][5] >= end:
            msg_rows.pop()
        status, ended, csat, handoff, last = "active", None, None, False, end - timedelta(seconds=1)
    else:
        bad = outcomes.count("failed") + outcomes.count("fallback")
        r = rng.random()
        status = "resolved" if r < 0.78 - 0.1 * bad else ("unresolved" if r < 0.9 else "escalated")
        ended, last, handoff = t, t, status == "escalated"
        csat = max(1, min(5, round(rng.gauss(4.2 if status == "resolved" else 2.6, 0.8))))
        csat = csat if rng.random() < 0.4 else None
    conv_rows.append(
        (
            conv_id,
            org_id,
            bot_id,
            None,
            f"c{conv_id}",
            customers[rng.randrange(len(customers))],
            "web",
            status,
            started,
            last,
            ended,
            handoff,
            csat,
            call_outcome,
        )
    )
    if kind == "ai_employee" and rng.random() < 0.3:
        value = Decimal(rng.choice([80, 120, 150, 220])) if rng.random() < 0.3 else None
        act_kind = "booking" if value is not None else rng.choice(["call", "email", "task"])
        act_rows.append((org_id, bot_id, act_kind, "bench activity", "", value, started))


def _seed_part(args) -> tuple[int, int, int]:
    """One worker process: COPY its share of the units (every other hour)."""
    url_params, part, parts, units, end, orgs, bots, first_id, seed = args
    import psycopg

    rng = random.Random(f"{seed}:{part}")
    conv_cols = (
        "id, organization_id, bot_id, campaign_id, external_id, customer, channel, status, "
        "started_at, last_activity_at, ended_at, handoff, csat, call_outcome"
    )
    msg_cols = (
        "organization_id, bot_id, conversation_id, direction, text, created_at, "
        "response_time_ms, outcome, tokens, cost_usd, kb_hit"
    )
    act_cols = "organization_id, bot_id, kind, description, customer, value, created_at"
    customers = [f"customer-{i}" for i in range(20_000)]
    n_conv = n_msg = n_act = 0
    with psycopg.connect(**url_params) as conn:
        conn.execute("SET synchronous_commit = off")
        cur = conn.cursor()
        conv_id = first_id
        batch_c, batch_m, batch_a = [], [], []

        def flush():
            nonlocal n_conv, n_msg, n_act
            for table, cols, rows in (
                ("analytics_conversation", conv_cols, batch_c),
                ("analytics_message", msg_cols, batch_m),
                ("analytics_activity", act_cols, batch_a),
            ):
                if rows:
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            n_conv, n_msg, n_act = n_conv + len(batch_c), n_msg + len(batch_m), n_act + len(batch_a)
            batch_c.clear(), batch_m.clear(), batch_a.clear()
            conn.commit()

        for i, (o, hour, mean) in enumerate(units):
            if i % parts != part:
                continue
            count = poisson(rng, mean)
            for _ in range(count):
                bot = bots[o][rng.randrange(5)]
                _conversation(
                    rng, conv_id, orgs[o], bot, hour, end, customers, batch_c, batch_m, batch_a
                )
                conv_id += parts
            if len(batch_m) > 200_000:
                flush()
        flush()
    return n_conv, n_msg, n_act


class BigData(Scratch):
    meta: dict


def _meta(conn) -> dict | None:
    exists = conn.execute("SELECT to_regclass('bench_meta')").fetchone()[0]
    if not exists:
        return None
    row = conn.execute("SELECT value FROM bench_meta WHERE key = 'bigdata'").fetchone()
    return row[0] if row else None


def _set_meta(conn, meta: dict) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb)")
    conn.execute(
        "INSERT INTO bench_meta VALUES ('bigdata', %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        [json.dumps(meta, default=str)],
    )


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(f"[bigdata {datetime.now():%H:%M:%S}] {text}", flush=True)


def ensure_bigdata(*, reset: bool = False, scale: float = 1.0, quiet: bool = False) -> BigData:
    """The benchmark database with its data and rollups, built now only if it is missing."""
    scratch = BigData(DB_NAME)
    with scratch.connect(scratch.db["NAME"]) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if reset and exists:
            admin.execute(f"DROP DATABASE {DB_NAME} WITH (FORCE)")
            exists = None
        if not exists:
            admin.execute(f"CREATE DATABASE {DB_NAME}")
    scratch.manage("migrate", "-v", "0")
    with scratch.connect() as conn:
        meta = _meta(conn)
    if meta is None or meta.get("version") != VERSION or meta.get("scale") != scale:
        meta = _seed(scratch, scale, quiet)
    if not meta.get("rollups_built"):
        meta = _build_rollups(scratch, meta, quiet)
    else:
        _say(quiet, f"reusing {DB_NAME}: {meta['messages']:,} messages, seeded {meta['seeded_at']}")
    scratch.meta = meta
    return scratch


def _seed(scratch: Scratch, scale: float, quiet: bool) -> dict:
    started = time.perf_counter()
    now = datetime.now(UTC)
    p = plan(now, scale)
    with scratch.connect() as conn:
        for table in (
            *ROLLUP_TABLES,
            *SEEDED_TABLES,
            "analytics_eventreceipt",
            "analytics_gauge",
            "analytics_bot",
            "analytics_organization",
        ):
            conn.execute(f"TRUNCATE {table} CASCADE")
        orgs, bots = [], []
        for i, tz in enumerate(TIMEZONES):
            org_id = conn.execute(
                "INSERT INTO analytics_organization (name, slug, timezone, created_at) VALUES "
                "(%s, %s, %s, now()) RETURNING id",
                [f"Bench {i:02d}", f"bench-{i:02d}", tz],
            ).fetchone()[0]
            orgs.append(org_id)
            bots.append([])
            for slug, kind, channel in BOTS:
                bot_id = conn.execute(
                    "INSERT INTO analytics_bot (organization_id, slug, name, kind, persona, avatar,"
                    " channel, is_active, created_at) VALUES (%s, %s, %s, %s, '', '', %s, true,"
                    " now()) RETURNING id",
                    [org_id, slug, slug.title(), kind, channel],
                ).fetchone()[0]
                bots[-1].append((bot_id, kind))
        indexes = conn.execute(
            """SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)
               AND indexname NOT IN (SELECT conname FROM pg_constraint)""",
            [list(SEEDED_TABLES)],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
    _say(quiet, f"seeding {len(p['units']):,} org-hours with COPY (indexes dropped)")
    db = scratch.db
    url_params = {
        "dbname": DB_NAME,
        "user": db["USER"],
        "password": db["PASSWORD"],
        "host": db["HOST"],
        "port": db["PORT"] or None,
    }
    parts = 2
    jobs = [
        (url_params, part, parts, p["units"], p["end"], orgs, bots, 1 + part, 42)
        for part in range(parts)
    ]
    with multiprocessing.get_context("spawn").Pool(parts) as pool:
        results = pool.map(_seed_part, jobs)
    conversations = sum(r[0] for r in results)
    messages = sum(r[1] for r in results)
    activities = sum(r[2] for r in results)
    seeded = time.perf_counter()
    _say(
        quiet,
        f"{messages:,} messages in {seeded - started:.0f} s; rebuilding {len(indexes)} indexes",
    )
    with scratch.connect() as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('analytics_conversation', 'id'),"
            " (SELECT max(id) FROM analytics_conversation))"
        )
        for table in SEEDED_TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        meta = {
            "version": VERSION,
            "scale": scale,
            "seeded_at": now.isoformat(timespec="seconds"),
            "first_hour": p["first_hour"].isoformat(),
            "last_hour": p["last_hour"].isoformat(),
            "spike_org": "bench-00",
            "spike_day": p["spike_day"].isoformat(),
            "spike_hour": p["spike_hour"].isoformat(),
            "orgs": [f"bench-{i:02d}" for i in range(len(TIMEZONES))],
            "messages": messages,
            "conversations": conversations,
            "activities": activities,
            "seed_seconds": round(time.perf_counter() - started, 1),
            "rollups_built": False,
        }
        _set_meta(conn, meta)
    _say(
        quiet,
        f"seeded in {meta['seed_seconds']:.0f} s ({messages:,} messages, "
        f"{conversations:,} conversations)",
    )
    return meta


def backfill_all(scratch: Scratch, meta: dict, *, parallel: int = 2, restart: bool = True) -> float:
    """`manage.py backfill` of every org over the whole window, `parallel` orgs at a time."""
    first = datetime.fromisoformat(meta["first_hour"])
    last = datetime.fromisoformat(meta["last_hour"])
    started = time.perf_counter()
    pending = list(enumerate(meta["orgs"]))
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < parallel:
            i, slug = pending.pop(0)
            zone = ZoneInfo(TIMEZONES[i])
            since: date = first.astimezone(zone).date()
            until: date = last.astimezone(zone).date()
            running.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "manage.py"),
                        "backfill",
                        "--org",
                        slug,
                        "--since",
                        str(since),
                        "--until",
                        str(until),
                        "--no-progress",
                        *(["--restart"] if restart else []),
                    ],
                    cwd=ROOT,
                    env=scratch.env,
                    stdout=subprocess.DEVNULL,
                )
            )
        time.sleep(0.2)
        for proc in list(running):
            if proc.poll() is not None:
                if proc.returncode:
                    raise SystemExit(f"backfill failed with exit code {proc.returncode}")
                running.remove(proc)
    return time.perf_counter() - started


def _build_rollups(scratch: Scratch, meta: dict, quiet: bool) -> dict:
    _say(quiet, "building every rollup (manage.py backfill for each org, 2 at a time)")
    seconds = backfill_all(scratch, meta, restart=False)
    with scratch.connect() as conn:
        conn.execute("VACUUM (ANALYZE)")
        meta = {**meta, "rollups_built": True, "backfill_seconds": round(seconds, 1)}
        _set_meta(conn, meta)
    _say(quiet, f"rollups built in {seconds:.0f} s")
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reset", action="store_true", help="drop and rebuild the database")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 10M messages")
    args = parser.parse_args()
    scratch = ensure_bigdata(reset=args.reset, scale=args.scale)
    print(json.dumps(scratch.meta, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
