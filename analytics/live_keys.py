"""The layout of the live state in Redis: key names, lifetimes and field names, for the service
that writes it (services/live.py) and the selectors that read it. Pure: no I/O.

Key layout (prefix = settings.LIVE_KEY_PREFIX; O = the org's hash tag "{o:<org id>}"):
  {p}:O:m:{minute}             hash  counters of the org for one epoch minute (COUNTER_FIELDS)
  {p}:O:b:{bot}:m:{minute}     hash  the same for one bot of the org
  {p}:O:h:{minute}             hash  response-time histogram (sketch bucket -> count); {p}:O:b:...
                                     per bot
  {p}:O:active                 zset  conversation id -> last activity (epoch s); {p}:O:b:{bot}:active
  {p}:O:feed                   list  latest 50 conversation events (JSON), newest first
  {p}:O:acts                   list  latest 50 AI-employee activities (JSON), newest first
  {p}:O:streamed               zset  stream_digest of each feed/acts entry already sent on the
                                     API stream -> when last seen in the lists (epoch s)
  {p}:O:b:{bot}:d:{yyyymmdd}   hash  today's activity counts (by kind), revenue_c (cents) and
                                     last_ts (epoch s) in the org's time zone
  {p}:O:gauges                 hash  "{campaign}:{name}" -> JSON {value, at}
  {p}:O:u:{hour}               hash  usage: ingest_requests, events (and api_calls)
  {p}:dirty                    set   org ids with data not yet pushed to dashboards
  {p}:kept:tagged              str   set while Redis holds the live state (see live_recover)
  {p}:pulses                   hash  pulse id -> last tick (epoch s): which pulses are alive

On a Redis Cluster only the part inside braces is hashed, so every key of one org (its bots'
included) lives in one slot: the pipelines in a transaction, MULTI and the Lua scripts that take
several keys of an org work there as on one server. Keys of different orgs land on different
nodes; what reads several orgs at once goes without a transaction (the cluster pipeline splits
it by node). Global keys are single keys (dirty, kept) or share a tag of their own (ops,
presence).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.conf import settings

FEED_LENGTH = 50  # items kept in the feed and acts lists
# Seconds a stream claim is kept after its entry left the feed and acts lists (the pulses' clocks
# must agree to better than this; NTP keeps them within milliseconds).
STREAMED_KEEP = 60
ACTIVE_WINDOW = timedelta(minutes=30)  # a conversation without activity for longer is not active
MINUTE_TTL = 3 * 24 * 3600  # seconds a minute hash (and a usage hash) lives

# Counter fields of a minute hash (all integers: HINCRBY takes no fractions).
IN = "in"  # inbound messages
OUT = "out"  # outbound messages (bot replies)
OK = "ok"  # replies with outcome success (or no outcome)
FAIL = "fail"  # replies with outcome failed
FALLBACK = "fb"  # replies with outcome fallback
TOKENS = "tok"  # tokens used
COST_MICRO_USD = "cost_u"  # cost in micro-USD (millionths of a dollar)
RT_COUNT = "rt_n"  # replies that carried a response time
RT_SUM_MS = "rt_sum"  # sum of those response times, in ms
STARTED = "cs"  # conversations started
ENDED = "ce"  # conversations ended
ESCALATED = "esc"  # conversations that ended escalated or handed off
COUNTER_FIELDS = (
    IN,
    OUT,
    OK,
    FAIL,
    FALLBACK,
    TOKENS,
    COST_MICRO_USD,
    RT_COUNT,
    RT_SUM_MS,
    STARTED,
    ENDED,
    ESCALATED,
)
OUTCOME_FIELD = {"success": OK, "": OK, "failed": FAIL, "fallback": FALLBACK}  # message outcome


def _p() -> str:
    return settings.LIVE_KEY_PREFIX


def org_tag(org_id: int) -> str:
    """The hash tag of an org: on a Redis Cluster all keys of the org map to its slot."""
    return f"{{o:{org_id}}}"


def org_key(org_id: int, *parts) -> str:
    return ":".join((_p(), org_tag(org_id), *map(str, parts)))


def bot_key(org_id: int, bot_id: int, *parts) -> str:
    """A key of one bot, in its org's slot (a bot never moves to another org)."""
    return ":".join((_p(), org_tag(org_id), "b", str(bot_id), *map(str, parts)))


def dirty_key() -> str:
    return f"{_p()}:dirty"


def streamed_key(org_id: int) -> str:
    return org_key(org_id, "streamed")


def stream_digest(list_name: str, entry: bytes) -> bytes:
    """The identity of one feed ("feed") or activity ("acts") entry, as the stream claims it."""
    return hashlib.blake2b(list_name.encode() + b"|" + entry, digest_size=8).digest()


def pulses_key() -> str:
    """hash: pulse id -> its last tick (epoch s); the live pulses share the orgs between them."""
    return f"{_p()}:pulses"


def kept_key() -> str:
    """Set while Redis holds the live state: gone means Redis restarted empty, was flushed or
    failed over to an empty replica, and every org's live state must be rebuilt. (Named anew
    when the keys gained the org hash tag: the first pulse after that upgrade finds it missing
    and rebuilds every org under the new names; the old keys expire or are left behind.)"""
    return f"{_p()}:kept:tagged"


def wake_channel() -> str:
    """Published with every change, so an idle pulse renders at once instead of at its next tick."""
    return f"{_p()}:pulse:wake"


def epoch_minute(at: datetime) -> int:
    return int(at.timestamp()) // 60
