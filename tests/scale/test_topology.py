"""The whole scale-out path at once (issue 14): 2 web processes (daphne, two ports), 2 pulses and
2 Celery workers, on a private 3-master Redis Cluster, the machine's RabbitMQ (queues of this
run's own prefix) and the test database. 500 API clients hold the JSON stream open, split across
both web processes; bot platforms post events through both. Every client sees every message
event of its org exactly once, in the order its conversation had them, its last figures agree
with PostgreSQL, and when one pulse is killed the other renders its orgs within 5 s."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
import pytest
from channels.layers import channel_layers
from django.db.models import Sum
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from analytics.live_keys import pulses_key
from analytics.models import Conversation, ConversationMetrics, Message
from analytics.redis import cluster_channel_layer, get_redis, reset_clients
from analytics.services.api_keys import api_key_create
from config.env import parse_redis_url
from dashboard.pulse_shards import PulseShard
from tests.e2e.live_servers import database_url_of_tests, post_events_to
from tests.factories import BotFactory, OrganizationFactory
from tests.scale.cluster import RedisClusterNodes
from tests.scale.rabbitmq import SHARED_URL, Broker, unreachable
from tests.scale.topology import Topology

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

CLIENTS = 500
ORGS_PER_PULSE = 2
TAKEOVER_SECONDS = 5.0


@pytest.fixture
def cluster():
    with RedisClusterNodes(masters=3) as nodes:
        yield nodes


@pytest.fixture
def broker(tmp_path):
    why = unreachable(SHARED_URL)
    if why:
        # Not a skip: every machine of this kind (CI included) runs RabbitMQ on 127.0.0.1:5672.
        pytest.fail(f"the topology test needs the machine's RabbitMQ: {why}")
    broker = Broker.new(SHARED_URL, tmp_path / "exports")
    yield broker
    broker.delete_queues()


@pytest.fixture
def topology(cluster, broker, settings, tmp_path):
    """The processes, configured by environment only; this process reads the same cluster."""
    target = parse_redis_url("REDIS_URL", cluster.url)
    settings.REDIS_URL = target.url
    settings.CHANNEL_LAYERS = {"default": cluster_channel_layer(target.url, target.node_url())}
    reset_clients()
    channel_layers.backends.clear()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_tests(),
        "REDIS_URL": cluster.url,
        "LIVE_KEY_PREFIX": settings.LIVE_KEY_PREFIX,
        "INGEST_RATE_LIMIT": "100000",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        "DB_POOL": "false",
        "LOG_LEVEL": "WARNING",
        **broker.env(),
    }
    env.pop("BOTFLOW_EMBEDDED", None)
    with Topology(env, logs=tmp_path / "logs") as processes:
        processes.start_all(webs=2, pulses=2, workers=2)
        yield processes
    reset_clients()
    channel_layers.backends.clear()


def live_pulses() -> list[str]:
    return sorted(k.decode() for k in get_redis().hkeys(pulses_key()))


def wait_until(condition, seconds: float, message: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message)


@dataclass
class Tenant:
    org: object
    key: str
    owner: str  # the pulse that renders it while both live
    sent: list[str] = field(default_factory=list)  # message texts, in the order posted


def tenants_on_both_pulses(pulses: list[str]) -> list[Tenant]:
    """Orgs created until each live pulse owns ORGS_PER_PULSE of them (the owner follows from
    the same rendezvous hash the pulses compute)."""
    shard = PulseShard("probe")
    shard.live = pulses
    chosen: dict[str, list[Tenant]] = defaultdict(list)
    n = 0
    while min(len(chosen[p]) for p in pulses) < ORGS_PER_PULSE:
        n += 1
        assert n < 40
        org = OrganizationFactory(slug=f"topo-{n}", name=f"Topo {n}")
        owner = shard.owner(org.pk)
        if len(chosen[owner]) == ORGS_PER_PULSE:
            continue
        BotFactory(organization=org, slug="support-bot", name="Support")
        key = api_key_create(organization=org, name="platform", scopes=["ingest", "read"]).secret
        chosen[owner].append(Tenant(org, key, owner))
    return [t for p in pulses for t in chosen[p]]


class Client:
    """One API client on the stream: the message texts it was sent, each with when, and its
    last figures."""

    def __init__(self, tenant: Tenant, url: str) -> None:
        self.tenant, self.url = tenant, url
        self.texts: list[tuple[str, float]] = []
        self.metrics_at: list[str] = []  # metrics_update timestamps, as received
        self.metrics: dict | None = None
        self.closed: str = ""
        self.ws = None

    async def run(self, opened: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.tenant.key}"}
        async with connect(
            self.url, additional_headers=headers, open_timeout=60, ping_interval=None
        ) as ws:
            self.ws = ws
            opened.set()
            try:
                async for raw in ws:
                    if raw.startswith('{"type":"new_message"'):
                        self.texts.append((orjson.loads(raw)["data"]["text"], time.monotonic()))
                    elif raw.startswith('{"type":"metrics_update"'):
                        frame = orjson.loads(raw)
                        self.metrics_at.append(frame["timestamp"])
                        self.metrics = frame["metrics"]
            except ConnectionClosed as exc:
                self.closed = f"closed {exc.rcvd.code if exc.rcvd else 1006}"
            if not self.closed and ws.close_code != 1000:
                self.closed = f"closed by the server ({ws.close_code})"


def conversation_events(tenant: Tenant, name: str, *, end: str | None = None) -> list[dict]:
    """A customer's question and the bot's reply in conversation `name` (timestamps: now, as
    the server sees it), and the end of conversation `end`."""
    texts = [f"{tenant.org.slug} {name} question", f"{tenant.org.slug} {name} answer"]
    tenant.sent += texts
    events = [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": "support-bot",
            "conversation": name,
            "customer": f"Customer {name}",
            "direction": "inbound",
            "text": texts[0],
        },
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": "support-bot",
            "conversation": name,
            "direction": "outbound",
            "text": texts[1],
            "response_time_ms": 400,
            "outcome": "success",
            "tokens": 10,
        },
    ]
    if end:
        events.append(
            {
                "id": str(uuid.uuid4()),
                "type": "conversation.ended",
                "bot": "support-bot",
                "conversation": end,
                "status": "resolved",
            }
        )
    return events


async def ingest_round(webs: list[str], tenants: list[Tenant], r: int) -> None:
    """Each org posts two batches at the same time, one through each web process (as behind a
    load balancer); each batch is a new conversation and ends one of the round before."""
    posts = []
    for t in tenants:
        for w, web in enumerate(webs):
            end = f"r{r - 1}w{w}" if r > 0 else None
            posts.append(
                asyncio.to_thread(
                    post_events_to,
                    web,
                    t.key,
                    conversation_events(t, f"r{r}w{w}", end=end),
                    timeout=30,
                )
            )
    await asyncio.gather(*posts)


def everyone_has_everything(clients: list[Client]) -> bool:
    return all(len(c.texts) >= len(c.tenant.sent) for c in clients)


def test_it_serves_every_event_once_on_two_webs_two_pulses_and_survives_a_pulse_kill(topology):
    webs = [w.url for w in topology.webs]
    pulses = wait_until(lambda: len(live_pulses()) == 2 and live_pulses(), 20, "2 pulses tick")
    tenants = tenants_on_both_pulses(pulses)
    clients = [
        Client(tenants[i % len(tenants)], webs[(i // len(tenants)) % 2].replace("http", "ws"))
        for i in range(CLIENTS)
    ]
    for c in clients:
        c.url += "/ws/v1/stream"
    victim = next(p for p in topology.pulses if p.pid == int(pulses[0].split(":")[1]))
    survivor_id = pulses[1]

    async def scenario() -> dict:
        opened = [asyncio.Event() for _ in clients]
        started = time.monotonic()
        readers = [asyncio.create_task(c.run(e)) for c, e in zip(clients, opened, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 60)
        timing = {"connect_s": time.monotonic() - started}
        await asyncio.sleep(1.0)  # the hubs' first presence report: the pulses see the watchers

        for r in range(6):
            await ingest_round(webs, tenants, r)
            await asyncio.sleep(0.3)
        deadline = time.monotonic() + 15
        while not everyone_has_everything(clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

        victim.kill()
        killed = time.monotonic()
        timing["killed"] = killed
        for r in range(6, 12):
            await ingest_round(webs, tenants, r)
            await asyncio.sleep(0.5)
        deadline = time.monotonic() + 15
        while not everyone_has_everything(clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # room for a duplicate to show up
        await asyncio.gather(*(c.ws.close() for c in clients))  # (daphne then stops at once)
        await asyncio.gather(*readers)
        return timing

    # In a thread of its own: a browser test earlier in the run (Playwright's sync API) can leave
    # an event loop set on the main thread, where asyncio.run() refuses to start.
    with ThreadPoolExecutor(max_workers=1) as runner:
        timing = runner.submit(asyncio.run, scenario()).result()
    assert timing["connect_s"] < 30
    assert not [c.closed for c in clients if c.closed]

    # Every client: each message of its org exactly once, in its conversation's order.
    for c in clients:
        got = Counter(text for text, _ in c.texts)
        sent = c.tenant.sent
        missing = [t for t in sent if t not in got]
        assert not missing, f"a client of {c.tenant.org.slug} missed {len(missing)}: {missing[:4]}"
        doubled = {t: n for t, n in got.items() if n > 1}
        assert not doubled, f"a client of {c.tenant.org.slug} got duplicates: {doubled}"
        assert set(got) == set(sent)  # nothing of another org
        order = [text for text, _ in c.texts]
        for text in sent[::2]:  # a question comes before its answer
            assert order.index(text) < order.index(text.replace("question", "answer"))
        assert c.metrics_at == sorted(c.metrics_at), "figures went back in time"

    # The takeover: the dead pulse's orgs were rendered by the survivor within 5 s.
    assert live_pulses() == [survivor_id]
    for t in tenants:
        if t.owner == pulses[0]:
            first_after = min(
                at
                for c in clients
                if c.tenant is t
                for (text, at) in c.texts
                if text.startswith(f"{t.org.slug} r6w")
            )
            assert first_after - timing["killed"] < TAKEOVER_SECONDS

    # The figures each client ended with are PostgreSQL's.
    for t in tenants:
        messages = Message.objects.for_org(t.org)
        assert messages.count() == len(t.sent) == 48
        open_conversations = Conversation.objects.for_org(t.org).filter(ended_at=None).count()
        tokens = messages.aggregate(n=Sum("tokens"))["n"]
        for c in clients:
            if c.tenant is t:
                assert c.metrics["messages_last_hour"]["value"] == 48
                assert c.metrics["active_now"] == open_conversations == 2
                assert c.metrics["tokens_last_hour"]["value"] == tokens == 240

    # The workers (on RabbitMQ) built the metrics of every ended conversation.
    ended = Conversation.objects.filter(ended_at__isnull=False)
    wait_until(
        lambda: ConversationMetrics.objects.filter(conversation__in=ended).count() == ended.count(),
        30,
        "the workers did not build every ended conversation's metrics",
    )
    assert ended.count() == len(tenants) * 22
