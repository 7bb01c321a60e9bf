"""Operating figures shared by every process: counted in Redis, read by /metrics and the ops API.

Web processes count ingested events, Celery workers count their tasks and stamp a heartbeat
(signals in analytics/celery_signals.py), pulse stamps each tick, rollups stamp each success; any
web process can then answer for all of them, on one machine or many (times are each machine's
wall clock: keep them in NTP sync). Like the rest of Redis's contents these are rebuildable figures: losing
Redis resets counters (Prometheus handles counter resets), never data.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import orjson
import psutil
import redis
from celery import current_app
from django.conf import settings

from analytics.redis import get_redis

RECENT_TASKS = 50  # task outcomes kept for the ops API


def _key(*parts) -> str:
    return ":".join((settings.LIVE_KEY_PREFIX, "ops", *map(str, parts)))


def ops_count_events(*, accepted: int, duplicates: int, rejected: int) -> None:
    """Count one ingest request's outcome (best effort: metrics never fail a request)."""
    try:
        pipe = get_redis().pipeline(transaction=False)
        key = _key("events")
        for result, n in (
            ("accepted", accepted),
            ("duplicate", duplicates),
            ("rejected", rejected),
        ):
            if n:
                pipe.hincrby(key, result, n)
        pipe.hincrby(key, "requests", 1)
        pipe.execute()
    except redis.RedisError:
        pass


def ops_pulse_tick(*, started: float, seconds: float, orgs: int, interval: float) -> None:
    """pulse's heartbeat: when the tick ran, how long it took and how late it was."""
    lag = max(0.0, seconds - interval)
    get_redis().hset(
        _key("pulse"),
        mapping={"at": started, "seconds": seconds, "lag": lag, "orgs": orgs},
    )


def ops_worker_heartbeat(*, worker: str, at: float, client: redis.Redis | None = None) -> None:
    """A Celery worker is alive: its consumer loop (the one that takes tasks) ran at `at`."""
    (client or get_redis()).hset(_key("workers"), worker, at)


def ops_workers_forget(*, older_than: float, client: redis.Redis | None = None) -> int:
    """Drop the heartbeats of workers gone for `older_than` seconds (renamed or retired hosts),
    so the hash does not grow with every worker name ever used; returns how many."""
    client = client or get_redis()
    cutoff = time.time() - older_than
    gone = [w for w, at in client.hgetall(_key("workers")).items() if float(at) < cutoff]
    return client.hdel(_key("workers"), *gone) if gone else 0


ROLLUP_KINDS = ("hourly", "daily", "conversation_metrics")


def ops_rollup_succeeded(*, kind: str) -> None:
    """Rollups of `kind` are up to date as of now: a build of that kind committed, or its
    dispatcher found nothing due. Best effort: the rollup is in PostgreSQL whatever Redis says."""
    with contextlib.suppress(redis.RedisError):
        get_redis().hset(_key("rollups"), kind, time.time())


PULSE_STALE_SECONDS = 30.0  # pulse ticks at least every ~1 s, even idle
WORKER_STALE_SECONDS = 60.0  # a worker's heartbeat comes every 2 s; a broker reconnect may pause it


@dataclass(frozen=True)
class Liveness:
    """The background processes' last signs of life: wall-clock times (None: not seen since
    Redis was last emptied) and the moment they were read."""

    now: float
    pulse_at: float | None
    worker_beats: dict[str, float]  # worker name -> its last heartbeat
    rollups_at: dict[str, float]  # rollup kind -> its last success

    def age(self, at: float | None) -> float | None:
        """Seconds since `at` (never negative: clocks of two machines may differ a little)."""
        return None if at is None else max(0.0, self.now - at)

    @property
    def pulse_age(self) -> float | None:
        return self.age(self.pulse_at)

    @property
    def worker_age(self) -> float | None:
        """The freshest worker's: one worker alive is enough to run the tasks."""
        return self.age(max(self.worker_beats.values(), default=None))

    @property
    def workers_alive(self) -> int:
        return sum(self.age(at) <= WORKER_STALE_SECONDS for at in self.worker_beats.values())

    @property
    def pulse_status(self) -> str:
        return _status(self.pulse_age, PULSE_STALE_SECONDS)

    @property
    def worker_status(self) -> str:
        return _status(self.worker_age, WORKER_STALE_SECONDS)


def _status(age: float | None, limit: float) -> str:
    if age is None:
        return "unknown"
    return "ok" if age <= limit else "stale"


def ops_liveness(client: redis.Redis | None = None) -> Liveness:
    """pulse's last tick, the workers' heartbeats and the rollups' last successes, in one round
    trip (raises RedisError)."""
    pipe = (client or get_redis()).pipeline(transaction=False)
    pipe.hget(_key("pulse"), "at")
    pipe.hgetall(_key("workers"))
    pipe.hgetall(_key("rollups"))
    pulse_at, workers, rollups = pipe.execute()
    return Liveness(
        now=time.time(),
        pulse_at=float(pulse_at) if pulse_at is not None else None,
        worker_beats={k.decode(): float(v) for k, v in workers.items()},
        rollups_at={k.decode(): float(v) for k, v in rollups.items()},
    )


def ops_task_started(*, task_id: str, name: str) -> None:
    get_redis().hset(
        _key("tasks", "active"), task_id, orjson.dumps({"name": name, "at": time.time()})
    )


def ops_task_finished(*, task_id: str, name: str, state: str, seconds: float | None) -> None:
    """Record a task's end (succeeded / failed / retried): counters, duration, recent list."""
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    pipe.hdel(_key("tasks", "active"), task_id)
    pipe.hincrby(_key("tasks", "runs"), f"{name}|{state}", 1)
    if seconds is not None:
        pipe.hincrbyfloat(_key("tasks", "seconds"), name, seconds)
        pipe.hincrby(_key("tasks", "timed"), name, 1)
    entry = {"id": task_id, "name": name, "state": state, "seconds": seconds, "at": time.time()}
    pipe.lpush(_key("tasks", "recent"), orjson.dumps(entry))
    pipe.ltrim(_key("tasks", "recent"), 0, RECENT_TASKS - 1)
    pipe.execute()


@dataclass(frozen=True)
class OpsSnapshot:
    events: dict[str, int]
    pulse: dict[str, float]
    task_runs: dict[tuple[str, str], int]  # (task name, state) -> runs
    task_seconds: dict[str, tuple[float, int]]  # task name -> (total seconds, timed runs)
    active_tasks: list[dict]
    recent_tasks: list[dict]
    queues: dict[str, int]


def ops_snapshot() -> OpsSnapshot:
    """Every figure in one round trip to the live Redis and one to the broker."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.hgetall(_key("events"))
    pipe.hgetall(_key("pulse"))
    pipe.hgetall(_key("tasks", "runs"))
    pipe.hgetall(_key("tasks", "seconds"))
    pipe.hgetall(_key("tasks", "timed"))
    pipe.hvals(_key("tasks", "active"))
    pipe.lrange(_key("tasks", "recent"), 0, RECENT_TASKS - 1)
    events, pulse, runs, seconds, timed, active, recent = pipe.execute()

    def text(mapping):
        return {k.decode(): v for k, v in mapping.items()}

    task_runs = {}
    for field, n in text(runs).items():
        name, _, state = field.rpartition("|")
        task_runs[(name, state)] = int(n)
    timed = text(timed)
    return OpsSnapshot(
        events={k: int(v) for k, v in text(events).items()},
        pulse={k: float(v) for k, v in text(pulse).items()},
        task_runs=task_runs,
        task_seconds={k: (float(v), int(timed.get(k, 0))) for k, v in text(seconds).items()},
        active_tasks=sorted((orjson.loads(a) for a in active), key=lambda a: a["at"]),
        recent_tasks=[orjson.loads(r) for r in recent],
        queues=queue_lengths(),
    )


def queue_lengths() -> dict[str, int]:
    """Messages waiting in each Celery queue: on Redis one list per queue, on RabbitMQ the count a
    passive queue declaration answers (a queue not declared yet holds nothing)."""
    queues = [q.name for q in settings.CELERY_TASK_QUEUES or ()] or [
        settings.CELERY_TASK_DEFAULT_QUEUE
    ]
    with current_app.connection_for_read() as conn:
        if conn.transport.driver_type == "amqp":
            return _amqp_queue_lengths(conn, queues)
        client = conn.default_channel.client
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        return dict(zip(queues, pipe.execute(), strict=True))


def _amqp_queue_lengths(conn, queues: list[str]) -> dict[str, int]:
    lengths = {}
    channel = conn.channel()
    try:
        for queue in queues:
            try:
                lengths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except conn.channel_errors:
                # 404 NOT_FOUND: no worker or sender declared it yet. The broker closed the
                # channel with that answer; the next queue needs a new one.
                lengths[queue] = 0
                channel = conn.channel()
    finally:
        with contextlib.suppress(*conn.connection_errors, *conn.channel_errors):
            channel.close()
    return lengths


def broker_ping(timeout: float = 2.0) -> str:
    """ "ok" when Celery's broker answers, else the error's name."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            if conn.transport.driver_type == "amqp":
                conn.channel().close()  # a round trip: the broker opened and closed a channel
            else:
                conn.default_channel.client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "down", and says which
        return f"error: {exc.__class__.__name__}"
    return "ok"


def host_load() -> dict[str, float]:
    """This machine's CPU and memory use (percent): for platform staff, never for a tenant."""
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": psutil.virtual_memory().percent,
    }
