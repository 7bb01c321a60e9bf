"""An erasure while the customer's events are still arriving, for real: ingestion threads post
batches through `POST /api/v1/events` while `POST /api/v1/customers/erase` runs, on PostgreSQL
(transactional test, one connection per thread). What was accepted before the erasure's cut-off
is gone, what arrived after is kept and the receipt says so; no deadlock, no 500."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.test import Client

from analytics.models import Activity, Conversation, Message
from analytics.selectors import live_activities, live_feed
from analytics.services.api_keys import api_key_create
from analytics.services.customers import customer_counts, customer_erase
from analytics.services.ingest import events_ingest
from tests.analytics.services.test_customers import CUSTOMER, OTHER

SEEDED = [f"s-{n:02}" for n in range(12)]
HELD = "a-held"  # sorts before every other: the erasure waits for it holding no other lock
THREADS = 2
WAIT = 10.0  # seconds any step of the choreography may take


def _event(type_: str, **fields) -> dict:
    return {"id": str(uuid.uuid4()), "type": type_, "bot": "support-bot", **fields}


def _batch(tag: str, rng: random.Random) -> list[dict]:
    """A new conversation of the customer, messages to three of their older ones, an activity,
    and a message of another customer; every text carries the batch's tag."""
    started = _event("conversation.started", conversation=tag, customer=CUSTOMER, channel="web")
    events = [
        started,
        _event("message", conversation=tag, direction="inbound", text=f"new {tag}"),
    ]
    events += [
        _event("message", conversation=old, direction="inbound", text=f"old {tag}")
        for old in rng.sample(SEEDED, 3)
    ]
    events.append(
        _event("activity", kind="task", description=f"act {tag}", customer=CUSTOMER, value=1)
    )
    events.append(
        _event(
            "message",
            conversation=f"o-{tag.split('-')[0]}",
            customer=OTHER,
            direction="inbound",
            text=f"other {tag}",
        )
    )
    return events


class Ingester(threading.Thread):
    """Posts batches until told to stop; records (tag, sent, answered, status, body) of each."""

    def __init__(self, index: int, secret: str) -> None:
        super().__init__(daemon=True)
        self.index, self.secret = index, secret
        self.stop, self.done = threading.Event(), []
        self.rng = random.Random(index)

    def run(self) -> None:
        client, n = Client(), 0
        try:
            while not self.stop.is_set():
                tag = f"t{self.index}-{n}"
                events = _batch(tag, self.rng)
                sent = datetime.now(UTC)
                response = client.post(
                    "/api/v1/events",
                    {"events": events},
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {self.secret}",
                )
                answered = datetime.now(UTC)
                self.done.append((tag, sent, answered, response.status_code, response.json()))
                n += 1
                time.sleep(0.01)
        finally:
            connection.close()


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _erase_is_waiting() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE %s",
            ["%customer = ANY%"],
        )
        return cursor.fetchone()[0] > 0


def _seed(org) -> list[int]:
    """The customer's conversations, stored newest-named first (one batch each): the table's
    order is then the reverse of ingestion's lock order, as when a platform's ids do not sort
    by time; the held one is stored last."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    for ext in [*reversed(SEEDED), HELD]:
        events = [
            _event(
                "conversation.started",
                conversation=ext,
                customer=CUSTOMER,
                channel="web",
                timestamp=at.isoformat(),
            )
        ]
        events += [
            _event(
                "message",
                conversation=ext,
                direction="inbound",
                text=f"seed {ext} {i}",
                timestamp=(at + timedelta(seconds=i)).isoformat(),
            )
            for i in range(20)
        ]
        result = events_ingest(org=org, events=events)
        assert result.accepted == len(events), result.rejected
    seed_call = _event("activity", kind="call", description="seed call", customer=CUSTOMER)
    assert events_ingest(org=org, events=[seed_call]).accepted == 1
    return list(Conversation.objects.for_org(org).values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_events_arriving_during_an_erasure_are_kept_and_counted_and_earlier_ones_go(
    org, bot, settings, tmp_path
):
    settings.EXPORT_DIR = str(tmp_path)
    seeded_ids = _seed(org)
    ingesters = [
        Ingester(i, api_key_create(organization=org, name=f"ingest-{i}", scopes="ingest").secret)
        for i in range(THREADS)
    ]
    admin = api_key_create(organization=org, name="dpo", scopes="admin").secret
    for t in ingesters:
        t.start()
    erase: dict = {}
    holder = None
    try:
        _until(lambda: all(len(t.done) >= 2 for t in ingesters), "batches before the erasure")
        # A slow batch holding one of the customer's conversations: the erasure waits for it
        # while the other batches keep arriving.
        holder = psycopg.connect(_dsn(connection.settings_dict), autocommit=False)
        holder.execute(
            f"SELECT id FROM {Conversation._meta.db_table} WHERE organization_id = %s "  # noqa: S608
            "AND external_id = %s FOR UPDATE",
            [org.pk, HELD],
        )

        def run_erase() -> None:
            try:
                erase["started"] = datetime.now(UTC)
                erase["response"] = Client().post(
                    "/api/v1/customers/erase",
                    {"customer": CUSTOMER},
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {admin}",
                )
                erase["ended"] = datetime.now(UTC)
            finally:
                connection.close()

        eraser = threading.Thread(target=run_erase, daemon=True)
        eraser.start()
        _until(_erase_is_waiting, "the erasure to wait for the held conversation")
        waiting_since = datetime.now(UTC)
        counts = [len(t.done) for t in ingesters]
        _until(
            lambda: all(len(t.done) >= c + 2 for t, c in zip(ingesters, counts, strict=True)),
            "batches while the erasure waits",
        )
        released = datetime.now(UTC)
        holder.commit()
        eraser.join(WAIT)
        assert not eraser.is_alive(), "the erasure did not finish"
        counts = [len(t.done) for t in ingesters]
        _until(
            lambda: all(len(t.done) >= c + 2 for t, c in zip(ingesters, counts, strict=True)),
            "batches after the erasure",
        )
    finally:
        for t in ingesters:
            t.stop.set()
        for t in ingesters:
            t.join(WAIT)
        if holder is not None:
            holder.close()

    batches = [b for t in ingesters for b in t.done]
    # No 500, no deadlock: every batch and the erasure answered 200 and stored everything.
    assert [(tag, status) for tag, _, _, status, _ in batches if status != 200] == []
    assert all(body["accepted"] == 7 and not body["rejected"] for *_, body in batches)
    response = erase["response"]
    assert response.status_code == 200, response.content
    receipt = response.json()
    cut = datetime.fromisoformat(receipt["erased_at"])
    assert erase["started"] <= cut <= waiting_since

    def held(tag: str) -> dict:
        return {
            "conversation": Conversation.objects.for_org(org)
            .filter(external_id=tag, customer=CUSTOMER)
            .exists(),
            "new": Message.objects.for_org(org).filter(text=f"new {tag}").count(),
            "old": Message.objects.for_org(org).filter(text=f"old {tag}").count(),
            "activity": Activity.objects.for_org(org).filter(description=f"act {tag}").count(),
            "other": Message.objects.for_org(org).filter(text=f"other {tag}").count(),
        }

    before = [tag for tag, _, answered, *_ in batches if answered < cut]
    during = [
        tag for tag, sent, answered, *_ in batches if waiting_since < sent and answered < released
    ]
    after = [tag for tag, sent, *_ in batches if sent > erase["ended"]]
    assert before and during and after
    # Accepted before the cut-off: gone (the other customer's message stays).
    gone = {"conversation": False, "new": 0, "old": 0, "activity": 0, "other": 1}
    assert {tag: held(tag) for tag in before} == dict.fromkeys(before, gone)
    assert not Message.objects.for_org(org).filter(text__startswith="seed").exists()
    assert not Conversation.objects.filter(pk__in=seeded_ids, customer=CUSTOMER).exists()
    # Arrived while the erasure waited: the new conversation and the activity are kept; the
    # messages that joined the conversations being erased went with them.
    kept = {"conversation": True, "new": 1, "old": 0, "activity": 1, "other": 1}
    assert {tag: held(tag) for tag in during} == dict.fromkeys(during, kept)
    # Arrived after the erasure: all kept (the older conversations start again, as the
    # platform names them: without a customer, since those messages carry none).
    everything = {"conversation": True, "new": 1, "old": 3, "activity": 1, "other": 1}
    assert {tag: held(tag) for tag in after} == dict.fromkeys(after, everything)
    # No message is left without its conversation.
    conversations = Conversation.objects.for_org(org).values("pk")
    assert not Message.objects.for_org(org).exclude(conversation_id__in=conversations).exists()
    # The receipt: what went, and what arrived after the cut-off and is kept.
    # (A batch answered between the cut-off and the wait may have gone either way.)
    started_before = len([tag for tag, sent, *_ in batches if sent < waiting_since])
    counts = receipt["counts"]
    assert len(before) <= counts["conversations"] - 1 - len(SEEDED) <= started_before
    assert counts["messages"] >= 20 * (1 + len(SEEDED)) + 4 * len(before)
    assert len(before) <= counts["activities"] - 1 <= started_before
    now_held = customer_counts(org=org, customer=CUSTOMER)
    kept_after = receipt["kept_after"]
    for kind in ("conversations", "messages", "activities"):
        assert len(during) <= kept_after[kind] <= now_held[kind], kind
    assert f"{kept_after['conversations']} conversations" in receipt["covers"]
    assert "are kept" in receipt["covers"]
    # The live feed agrees with the database: nothing erased, the kept items stay.
    feed = live_feed(org=org, limit=50)
    assert not [i for i in feed if i["conversation"] in seeded_ids]
    held_ids = set(Conversation.objects.for_org(org).values_list("pk", flat=True))
    assert all(i["conversation"] in held_ids for i in feed)
    acts = {a["description"] for a in live_activities(org=org) if a["customer"] == CUSTOMER}
    assert acts <= set(Activity.objects.for_org(org).values_list("description", flat=True))
    assert f"act {after[-1]}" in acts or f"act {after[-2]}" in acts


def _dsn(settings_dict: dict) -> str:
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 5432
    user, password = settings_dict.get("USER") or "postgres", settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@{host}:{port}/{settings_dict['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_erasures_and_batches_on_the_same_conversations_never_deadlock(org, bot):
    """Rounds for a few seconds: a customer's 12 conversations stored in the reverse of
    ingestion's lock order, three threads sending batches to 6 of them at a time, an erasure
    meanwhile. (Deleting them in table order deadlocked 22 times in 37 rounds.)"""
    failures: list[str] = []
    rounds, until = 0, time.monotonic() + 6
    while time.monotonic() < until:
        rounds += 1
        customer = f"contended-{rounds}"
        for ext in reversed(SEEDED):
            started = _event(
                "conversation.started", conversation=f"{customer}/{ext}", customer=customer
            )
            assert events_ingest(org=org, events=[started]).accepted == 1
        stop = threading.Event()

        def send(seed: int, customer: str = customer, stop: threading.Event = stop) -> None:
            rng = random.Random(seed)
            try:
                while not stop.is_set():
                    batch = [
                        _event("message", conversation=f"{customer}/{ext}", direction="inbound")
                        for ext in rng.sample(SEEDED, 6)
                    ]
                    try:
                        events_ingest(org=org, events=batch)
                    except Exception as exc:  # noqa: BLE001 - the test reports what it was
                        failures.append(f"ingest: {exc}")
            finally:
                connection.close()

        senders = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for t in senders:
            t.start()
        time.sleep(0.05)
        try:
            receipt = customer_erase(org=org, customer=customer, actor_label="dpo")
            assert receipt.counts["conversations"] == len(SEEDED)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"erase: {exc}")
        finally:
            stop.set()
            for t in senders:
                t.join(WAIT)
    assert failures == []
    assert rounds >= 3
    assert not Conversation.objects.for_org(org).filter(customer__startswith="contended-").exists()
    conversations = Conversation.objects.for_org(org).values("pk")
    assert not Message.objects.for_org(org).exclude(conversation_id__in=conversations).exists()
