"""Prometheus metrics at /metrics: django-prometheus's request and database figures of this web
process, plus the product's own figures for every process (read from Redis, analytics.services.ops).

Not public: a request needs `Authorization: Bearer <METRICS_TOKEN>` or a client address in
`METRICS_ALLOWED_IPS` (loopback by default). The address is the real peer's, or behind a proxy
listed in TRUSTED_PROXIES the client's it reports (config/proxy.py); a request relayed by any
other proxy needs the token.
"""

from __future__ import annotations

import hmac
import ipaddress

import redis
from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from analytics.services.ops import ROLLUP_KINDS, ops_liveness, ops_snapshot
from config.proxy import request_is_direct
from dashboard.presence import group_members


class ProductCollector:
    """The figures every process writes to Redis, as Prometheus metric families."""

    def collect(self):
        up = GaugeMetricFamily("botflow_live_state_up", "1 when the live Redis answers")
        try:
            snapshot, members, liveness = ops_snapshot(), group_members(), ops_liveness()
        except (redis.RedisError, OSError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        events = CounterMetricFamily(
            "botflow_events", "Events received through the ingest API", labels=["result"]
        )
        for result in ("accepted", "duplicate", "rejected"):
            events.add_metric([result], snapshot.events.get(result, 0))
        yield events
        requests = CounterMetricFamily("botflow_ingest_requests", "Ingest API requests handled")
        requests.add_metric([], snapshot.events.get("requests", 0))
        yield requests

        sockets = GaugeMetricFamily(
            "botflow_live_sockets", "Open live WebSockets, all web processes", labels=["kind"]
        )
        stream = sum(n for group, n in members.items() if group.startswith("stream."))
        sockets.add_metric(["dashboard"], sum(members.values()) - stream)
        sockets.add_metric(["stream"], stream)
        yield sockets

        for name, field, text in (
            ("botflow_pulse_tick_seconds", "seconds", "Duration of pulse's last tick"),
            ("botflow_pulse_tick_lag_seconds", "lag", "How far pulse's last tick overran"),
            ("botflow_pulse_last_tick_timestamp_seconds", "at", "When pulse last ticked"),
        ):
            gauge = GaugeMetricFamily(name, text)
            if field in snapshot.pulse:
                gauge.add_metric([], snapshot.pulse[field])
            yield gauge

        yield from _liveness(liveness)

        runs = CounterMetricFamily(
            "botflow_task_runs", "Celery task runs by outcome", labels=["task", "state"]
        )
        for (task, state), n in sorted(snapshot.task_runs.items()):
            runs.add_metric([task, state], n)
        yield runs
        seconds = CounterMetricFamily(
            "botflow_task_seconds", "Total run time of Celery tasks", labels=["task"]
        )
        timed = CounterMetricFamily("botflow_task_timed_runs", "Timed runs", labels=["task"])
        for task, (total, n) in sorted(snapshot.task_seconds.items()):
            seconds.add_metric([task], total)
            timed.add_metric([task], n)
        yield seconds
        yield timed
        active = GaugeMetricFamily("botflow_tasks_active", "Celery tasks running now")
        active.add_metric([], len(snapshot.active_tasks))
        yield active
        queues = GaugeMetricFamily(
            "botflow_queue_length", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        for queue, n in snapshot.queues.items():
            queues.add_metric([queue], n)
        yield queues


def _liveness(liveness):
    """Ages of the background processes' last signs of life, ready for an alert rule (no sample
    while never seen: alert on `absent()` too)."""
    for name, age, text in (
        (
            "botflow_pulse_last_tick_age_seconds",
            liveness.pulse_age,
            "Seconds since pulse last ticked (it ticks at least every ~1 s)",
        ),
        (
            "botflow_worker_last_heartbeat_age_seconds",
            liveness.worker_age,
            "Seconds since the freshest Celery worker's heartbeat (every 2 s)",
        ),
    ):
        gauge = GaugeMetricFamily(name, text)
        if age is not None:
            gauge.add_metric([], age)
        yield gauge
    alive = GaugeMetricFamily(
        "botflow_workers_alive", "Celery workers with a heartbeat in the last minute"
    )
    alive.add_metric([], liveness.workers_alive)
    yield alive
    at = GaugeMetricFamily(
        "botflow_rollup_last_success_timestamp_seconds",
        "When rollups of each kind were last up to date (a build committed, or nothing was due)",
        labels=["kind"],
    )
    age = GaugeMetricFamily(
        "botflow_rollup_last_success_age_seconds",
        "Seconds since rollups of each kind were last up to date",
        labels=["kind"],
    )
    for kind in ROLLUP_KINDS:
        if kind in liveness.rollups_at:
            at.add_metric([kind], liveness.rollups_at[kind])
            age.add_metric([kind], liveness.age(liveness.rollups_at[kind]))
    yield at
    yield age


_product = CollectorRegistry(auto_describe=False)
_product.register(ProductCollector())


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    if not request_is_direct(request):
        return False  # relayed by a proxy not in TRUSTED_PROXIES: the real client is unknown
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


@never_cache
@require_GET
def metrics(request):
    """Prometheus text format: this process's request/DB metrics and the product's figures."""
    if not _allowed(request):
        return HttpResponse(
            "Metrics are not public: send Authorization: Bearer <METRICS_TOKEN>, "
            "or scrape from an address in METRICS_ALLOWED_IPS.\n",
            status=403,
            content_type="text/plain",
        )
    body = generate_latest(REGISTRY) + generate_latest(_product)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
