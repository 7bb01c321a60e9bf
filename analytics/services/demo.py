"""Demo data: orgs, users, bots of every kind, and weeks of realistic history written with COPY.

History follows a diurnal and weekly cycle in the org's time zone; response times are log-normal
with a heavy tail; ~5% of replies fail and ~5% fall back; conversations end resolved, unresolved or
escalated with CSAT; AI employees make calls, bookings, emails and tasks; the voice bot dials an
outbound campaign with call outcomes and a queue-depth gauge.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from analytics.bulk import (
    ACTIVITY_COLUMNS,
    CONVERSATION_COLUMNS,
    GAUGE_COLUMNS,
    MESSAGE_COLUMNS,
    copy_rows,
)
from analytics.models import (
    Activity,
    Bot,
    BotDailyMetrics,
    BotHourlyRollup,
    Campaign,
    Conversation,
    ConversationMetrics,
    EventReceipt,
    Gauge,
    Membership,
    Message,
    Organization,
    OrgHourlyUsage,
    Role,
)
from analytics.synthetic import diurnal, pick_weighted, poisson
from analytics.timeutil import floor_hour

DEMO_PASSWORD = "demo-botflow"  # noqa: S105 - a demo account, printed by `make demo`


@dataclass(frozen=True)
class BotSpec:
    slug: str
    name: str
    kind: str
    channel: str
    persona: str = ""
    avatar: str = ""
    conversations_per_hour: float = 0.0  # at the daily peak, before --scale
    activities_per_hour: dict[str, float] = field(default_factory=dict)
    campaign: str = ""
    business_hours_only: bool = False


@dataclass(frozen=True)
class OrgSpec:
    slug: str
    name: str
    timezone: str
    username: str
    bots: tuple[BotSpec, ...]
    campaigns: tuple[tuple[str, str, str, str], ...] = ()  # slug, name, status, bot slug
    volume: float = 1.0


ACME = OrgSpec(
    slug="acme",
    name="Acme Dental Group",
    timezone="Europe/Berlin",
    username="demo",
    bots=(
        BotSpec(
            "support-bot", "Support Assistant", "chatbot", "whatsapp", "WhatsApp support", "💬", 30
        ),
        BotSpec("sales-bot", "Sales Concierge", "chatbot", "web", "Web-chat sales", "🛒", 18),
        BotSpec(
            "luna",
            "Luna",
            "ai_employee",
            "voice",
            "Customer Success",
            "🌙",
            6,
            {"call": 5, "task": 2, "email": 2},
        ),
        BotSpec(
            "jade",
            "Jade",
            "ai_employee",
            "web",
            "Sales Specialist",
            "💎",
            6,
            {"call": 6, "booking": 2.5, "email": 3},
        ),
        BotSpec(
            "flora",
            "Flora",
            "ai_employee",
            "email",
            "Operations Manager",
            "🌸",
            4,
            {"task": 5, "email": 3, "booking": 0.8},
        ),
        BotSpec(
            "dialer",
            "Outbound Dialer",
            "voice",
            "voice",
            "Renewal campaign caller",
            "📞",
            24,
            campaign="winter-renewals",
            business_hours_only=True,
        ),
    ),
    campaigns=(
        ("winter-renewals", "Winter Renewals", "active", "dialer"),
        ("spring-checkups", "Spring Check-ups", "completed", "dialer"),
    ),
)

GLOBEX = OrgSpec(
    slug="globex",
    name="Globex Insurance",
    timezone="America/New_York",
    username="globex",
    bots=(
        BotSpec("claims-bot", "Claims Helper", "chatbot", "web", "Claims intake", "📄", 10),
        BotSpec(
            "max",
            "Max",
            "ai_employee",
            "voice",
            "Policy Advisor",
            "🧭",
            3,
            {"call": 4, "booking": 1},
        ),
    ),
    volume=0.5,
)

DEMO_ORGS = (ACME, GLOBEX)

FIRST = [
    "Ana",
    "Ben",
    "Chloé",
    "Dmitri",
    "Elif",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jonas",
    "Kemi",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Vera",
    "Wei",
    "Yara",
    "Zoe",
]
LAST = [
    "Adler",
    "Brown",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "López",
    "Meyer",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Novak",
]
EXCHANGES = [
    (
        "Hi, can I move my appointment to Thursday?",
        "Sure — Thursday at 10:30 or 15:00 is free. Which suits you?",
    ),
    (
        "How much is a cleaning without insurance?",
        "A standard cleaning is €89. Shall I book one for you?",
    ),
    (
        "Do you have parking at the clinic?",
        "Yes, there is free parking behind the building for patients.",
    ),
    (
        "My invoice shows the wrong amount",
        "Sorry about that! I have flagged invoice for review; you'll hear back within a day.",
    ),
    ("Can I talk to a person please", "Of course, I'm connecting you with a colleague now."),
    ("What are your opening hours on Saturday?", "On Saturdays we're open 9:00–13:00."),
    (
        "I need to cancel tomorrow's visit",
        "Done — your visit tomorrow is cancelled. Want to pick a new date?",
    ),
    (
        "Is whitening covered by my plan?",
        "Whitening is cosmetic, so most plans don't cover it. I can send the price list.",
    ),
    ("Thanks, that's all!", "You're welcome — have a great day!"),
    (
        "The link in your email doesn't work",
        "Sorry! Here is a fresh link; it is valid for 24 hours.",
    ),
]
ACTIVITY_TEXT = {
    "call": ["Follow-up call with {c}", "Called {c} about renewal", "Reminder call to {c}"],
    "booking": [
        "Booked check-up for {c}",
        "Booked consultation for {c}",
        "Booked cleaning for {c}",
    ],
    "email": ["Sent quote to {c}", "Emailed treatment plan to {c}", "Sent invoice copy to {c}"],
    "task": [
        "Updated CRM record of {c}",
        "Scheduled lab order for {c}",
        "Reconciled payment of {c}",
    ],
}
CALL_OUTCOMES = [
    ("answered", 0.45),
    ("no_answer", 0.25),
    ("busy", 0.12),
    ("converted", 0.10),
    ("failed", 0.05),
    ("opt_out", 0.03),
]


@dataclass
class SeedResult:
    orgs: int = 0
    conversations: int = 0
    messages: int = 0
    activities: int = 0
    gauges: int = 0
    skipped: list[str] = field(default_factory=list)


def demo_accounts_ensure(
    *, spec: OrgSpec
) -> tuple[Organization, dict[str, Bot], dict[str, Campaign]]:
    """Create (or find) the org, its owner login, bots and campaigns. Safe to run again."""
    org, _ = Organization.objects.get_or_create(
        slug=spec.slug, defaults={"name": spec.name, "timezone": spec.timezone}
    )
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=spec.username, defaults={"email": f"{spec.username}@example.com"}
    )
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save(update_fields=["password"])
    Membership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.OWNER})
    bots = {}
    for b in spec.bots:
        bots[b.slug], _ = Bot.objects.get_or_create(
            organization=org,
            slug=b.slug,
            defaults={
                "name": b.name,
                "kind": b.kind,
                "channel": b.channel,
                "persona": b.persona,
                "avatar": b.avatar,
            },
        )
    campaigns = {}
    for slug, name, status, bot_slug in spec.campaigns:
        campaigns[slug], _ = Campaign.objects.get_or_create(
            organization=org,
            slug=slug,
            defaults={"name": name, "status": status, "bot": bots[bot_slug]},
        )
    return org, bots, campaigns


def staff_account_ensure() -> None:
    User = get_user_model()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.com", DEMO_PASSWORD)


class _IdBlock:
    """Reserves primary keys from a table's sequence so child rows can be written by COPY."""

    def __init__(self, cursor, table: str) -> None:
        self.cursor, self.table = cursor, table

    def reserve(self, n: int) -> int:
        self.cursor.execute(f"LOCK TABLE {self.table} IN SHARE ROW EXCLUSIVE MODE")  # noqa: S608
        self.cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [self.table])
        seq = self.cursor.fetchone()[0]
        self.cursor.execute("SELECT nextval(%s)", [seq])
        first = self.cursor.fetchone()[0]
        self.cursor.execute("SELECT setval(%s, %s)", [seq, first + max(n, 1) - 1])
        return first


class _HistoryGenerator:
    """Generates one org's history, one hour at a time, as rows ready for COPY."""

    def __init__(self, *, org, spec, bots, campaigns, scale, rng: random.Random, now) -> None:
        self.org, self.spec, self.bots, self.campaigns = org, spec, bots, campaigns
        self.scale, self.rng, self.now = scale * spec.volume, rng, now
        self.customers = [
            f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(max(60, int(400 * scale)))
        ]
        self.serial = 0

    def hour(self, start: datetime) -> tuple[list, list, list]:
        """(conversations, messages, activities) for one hour; messages reference list positions."""
        rng = self.rng
        local = start.astimezone(self.org.tz)
        weekend = local.weekday() >= 5
        base = diurnal(local.hour + 0.5) * (0.55 if weekend else 1.0) * rng.lognormvariate(0, 0.15)
        conversations, messages, activities = [], [], []
        for spec in self.spec.bots:
            bot = self.bots[spec.slug]
            if spec.business_hours_only and (weekend or not 9 <= local.hour < 18):
                rate = 0.0
            else:
                rate = spec.conversations_per_hour * (1.0 if spec.business_hours_only else base)
            for _ in range(poisson(rng, rate * self.scale)):
                self._conversation(bot, spec, start, conversations, messages)
            for kind, per_hour in spec.activities_per_hour.items():
                for _ in range(poisson(rng, per_hour * base * self.scale)):
                    at = start + timedelta(seconds=rng.uniform(0, 3600))
                    if at > self.now:
                        continue
                    customer = rng.choice(self.customers)
                    value = None
                    if kind == "booking":
                        value = Decimal(rng.choice([80, 120, 150, 220, 350, 480]))
                    elif kind == "call" and rng.random() < 0.1:
                        value = Decimal(rng.choice([40, 60, 90]))
                    text = rng.choice(ACTIVITY_TEXT[kind]).format(c=customer)
                    activities.append((self.org.pk, bot.pk, kind, text, customer, value, at))
        return conversations, messages, activities

    def _conversation(self, bot, spec, hour_start, conversations, messages) -> None:
        rng = self.rng
        started = hour_start + timedelta(seconds=rng.uniform(0, 3600))
        if started > self.now:
            return
        self.serial += 1
        customer = rng.choice(self.customers)
        campaign = self.campaigns.get(spec.campaign) if spec.campaign else None
        call_outcome = pick_weighted(rng, CALL_OUTCOMES) if campaign else ""
        exchanges = (
            0
            if call_outcome in ("no_answer", "busy", "failed")
            else 1 + min(int(rng.expovariate(1 / 2.2)), 11)
        )
        position = len(conversations)
        t = started
        slow_bot = 1.6 if spec.kind == "voice" else 1.0
        outcomes = []
        for _ in range(exchanges):
            question, answer = rng.choice(EXCHANGES)
            messages.append((position, "inbound", question, t, None, "", 0, Decimal(0), None))
            rt = rng.lognormvariate(math.log(850 * slow_bot), 0.55)
            if rng.random() < 0.03:  # heavy tail: model timeouts and retries
                rt *= rng.uniform(3, 9)
            rt = int(min(rt, 60_000))
            t = t + timedelta(milliseconds=rt)
            outcome = pick_weighted(rng, [("success", 0.9), ("failed", 0.05), ("fallback", 0.05)])
            outcomes.append(outcome)
            tokens = rng.randint(120, 650)
            cost = (Decimal(tokens) * Decimal("0.0000025")).quantize(Decimal("0.000001"))
            kb_hit = None if outcome == "failed" else rng.random() < 0.72
            messages.append((position, "outbound", answer, t, rt, outcome, tokens, cost, kb_hit))
            t = t + timedelta(seconds=rng.uniform(8, 90))
        last_activity = t
        if t > self.now - timedelta(minutes=12) and exchanges:
            status, ended, csat, handoff = "active", None, None, False
            last_activity = min(t, self.now)
        else:
            bad = outcomes.count("failed") + outcomes.count("fallback")
            status = pick_weighted(
                rng,
                [
                    ("resolved", 0.78 - 0.15 * bad),
                    ("unresolved", 0.13 + 0.08 * bad),
                    ("escalated", 0.09 + 0.07 * bad),
                ],
            )
            handoff = status == "escalated"
            ended = min(t, self.now)
            csat = None
            if rng.random() < 0.4 and exchanges:
                mean = {"resolved": 4.4, "unresolved": 2.6, "escalated": 3.0}[status]
                csat = max(1, min(5, round(rng.gauss(mean, 0.8))))
        external_id = f"{spec.slug}-{int(started.timestamp())}-{self.serial}"
        conversations.append(
            (
                self.org.pk,
                bot.pk,
                campaign.pk if campaign else None,
                external_id,
                customer,
                spec.channel,
                status,
                started,
                last_activity,
                ended,
                handoff,
                csat,
                call_outcome,
            )
        )
        # Messages are at or before `now`; drop those of a conversation still being typed.
        while messages and messages[-1][0] == position and messages[-1][3] > self.now:
            messages.pop()


def demo_history_seed(
    *,
    org: Organization,
    spec: OrgSpec,
    bots: dict[str, Bot],
    campaigns: dict[str, Campaign],
    days: int,
    scale: float,
    seed: int,
    on_hour: Callable[[], None] = lambda: None,
) -> SeedResult:
    """Write `days` of history up to now for one org, an hour of data per COPY batch."""
    result = SeedResult()
    now = timezone.now()
    rng = random.Random(f"{seed}:{spec.slug}")
    gen = _HistoryGenerator(
        org=org, spec=spec, bots=bots, campaigns=campaigns, scale=scale, rng=rng, now=now
    )
    first_hour = floor_hour(now - timedelta(days=days))
    hours = int((now - first_hour).total_seconds() // 3600) + 1
    conv_table, msg_table = Conversation._meta.db_table, Message._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        ids = _IdBlock(cursor, conv_table)
        pending_conv, pending_msg, pending_act = [], [], []

        def flush() -> None:
            if not pending_conv and not pending_act:
                return
            first_id = ids.reserve(len(pending_conv)) if pending_conv else 0
            copy_rows(
                cursor,
                conv_table,
                CONVERSATION_COLUMNS,
                ((first_id + i, *row) for i, row in enumerate(pending_conv)),
            )
            copy_rows(
                cursor,
                msg_table,
                MESSAGE_COLUMNS,
                ((org.pk, pending_conv[m[0]][1], first_id + m[0], *m[1:]) for m in pending_msg),
            )
            copy_rows(cursor, Activity._meta.db_table, ACTIVITY_COLUMNS, pending_act)
            result.conversations += len(pending_conv)
            result.messages += len(pending_msg)
            result.activities += len(pending_act)
            pending_conv.clear(), pending_msg.clear(), pending_act.clear()

        for h in range(hours):
            conversations, messages, activities = gen.hour(first_hour + timedelta(hours=h))
            offset = len(pending_conv)
            pending_conv.extend(conversations)
            pending_msg.extend((m[0] + offset, *m[1:]) for m in messages)
            pending_act.extend(activities)
            if len(pending_msg) > 20_000:
                flush()
            on_hour()
        flush()
        gauges = list(
            _queue_depth_gauges(
                org=org,
                spec=spec,
                bots=bots,
                campaigns=campaigns,
                first=first_hour,
                now=now,
                rng=rng,
            )
        )
        copy_rows(cursor, Gauge._meta.db_table, GAUGE_COLUMNS, gauges)
        result.gauges = len(gauges)
    result.orgs = 1
    return result


def _queue_depth_gauges(*, org, spec, bots, campaigns, first, now, rng) -> Iterator[tuple]:
    """Queue depth of each active campaign every 5 minutes in business hours (a random walk)."""
    for slug, _name, status, bot_slug in spec.campaigns:
        if status != "active":
            continue
        depth, t = 120.0, first
        while t <= now:
            local = t.astimezone(org.tz)
            if local.weekday() < 5 and 9 <= local.hour < 18:
                depth = max(0.0, depth + rng.gauss(-1.5, 6))
                if local.hour == 9 and local.minute < 5:
                    depth = rng.uniform(150, 260)  # the morning list is loaded
                yield (
                    org.pk,
                    bots[bot_slug].pk,
                    campaigns[slug].pk,
                    "queue_depth",
                    round(depth),
                    t,
                )
            t += timedelta(minutes=5)


def demo_history_exists(*, org: Organization) -> bool:
    return Conversation.objects.for_org(org).exists()


@transaction.atomic
def demo_history_delete(*, org: Organization) -> None:
    """Remove an org's event history and rollups (keeps the org, users, bots and campaigns)."""
    tables = [
        m._meta.db_table
        for m in (
            ConversationMetrics,
            Message,
            Activity,
            Gauge,
            EventReceipt,
            BotHourlyRollup,
            BotDailyMetrics,
            OrgHourlyUsage,
            Conversation,
        )
    ]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DELETE FROM {table} WHERE organization_id = %s", [org.pk])  # noqa: S608
