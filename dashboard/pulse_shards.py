"""Several pulse processes share the orgs: each org is rendered by exactly one live pulse.

Every pulse stamps its id and the time in one Redis hash at each tick; the pulses stamped in
the last PULSE_TTL seconds are alive. An org belongs to the live pulse with the highest
rendezvous hash of (pulse, org) — every pulse computes the same owner from the same hash,
without talking to the others, and when a pulse joins or dies only its own orgs move. A pulse
that stops ticking (killed, frozen, cut off from Redis) is out of the hash within PULSE_TTL,
and its orgs are rendered by the others at their next tick; one that stops cleanly removes
itself at once. A single pulse owns everything, as before.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid

from analytics.live_keys import pulses_key
from analytics.redis import get_redis

PULSE_TTL = 3.0  # seconds without a tick after which a pulse counts as dead


def _score(pulse: str, org_id: int) -> bytes:
    return hashlib.blake2b(f"{pulse}|{org_id}".encode(), digest_size=8).digest()


class PulseShard:
    def __init__(self, pulse_id: str | None = None) -> None:
        self.id = pulse_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.live: list[str] = [self.id]

    def beat(self, now: float | None = None) -> list[str]:
        """Stamp this pulse alive and learn which others are; drops the dead from the hash."""
        now = time.time() if now is None else now
        client = get_redis()
        pipe = client.pipeline(transaction=False)
        pipe.hset(pulses_key(), self.id, now)
        pipe.hgetall(pulses_key())
        _, beats = pipe.execute()
        live, dead = [], []
        for pulse, at in beats.items():
            (live if now - float(at) <= PULSE_TTL else dead).append(pulse.decode())
        if dead:
            client.hdel(pulses_key(), *dead)
        self.live = sorted(set(live) | {self.id})
        return self.live

    def owner(self, org_id: int) -> str:
        return max(self.live, key=lambda pulse: _score(pulse, org_id))

    def owns(self, org_id: int) -> bool:
        return len(self.live) == 1 or self.owner(org_id) == self.id

    def leave(self) -> None:
        """A clean stop: the others take this pulse's orgs at their next tick."""
        get_redis().hdel(pulses_key(), self.id)
