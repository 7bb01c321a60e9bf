"""Customer erasure and access: a customer seeded across every table, the live feed and finished
exports is erased, and nothing that can hold them is left; everyone else's data is untouched."""

from __future__ import annotations

import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.db.models.functions import Cast

from analytics.models import (
    Activity,
    AuditEvent,
    BotHourlyRollup,
    Conversation,
    ConversationMetrics,
    CustomerErasure,
    InsightReport,
    Message,
    OrgHourlyUsage,
)
from analytics.redis import get_redis
from analytics.selectors import live_activities, live_feed
from analytics.services import export as export_service
from analytics.services import ingest as ingest_service
from analytics.services.customers import (
    customer_counts,
    customer_erase,
    customer_export,
    customer_export_rows,
    customer_fingerprint,
)
from analytics.services.export import ExportJob, _job_key, _job_load, _job_save, export_job_run
from analytics.services.ingest import events_ingest
from analytics.services.live import live_recover
from analytics.services.rollup import conversation_metrics_build_many, rollup_build_hourly
from tests import factories as f

CUSTOMER = "+27 82 555 0101"  # starts with "+": the CSV holds it as '+27 82 555 0101
OTHER = "Ben Otto"


def _event(type_: str, bot: str, at: datetime, **fields) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "bot": bot,
        "timestamp": at.isoformat(),
        **fields,
    }


def customer_events(customer: str, *, bot: str, prefix: str, at: datetime, messages: int = 3):
    """Two conversations of `customer` (with messages that quote them) and an activity."""
    events = []
    for n in range(2):
        conv = f"{prefix}-{n}"
        events.append(
            _event(
                "conversation.started",
                bot,
                at,
                conversation=conv,
                customer=customer,
                channel="whatsapp",
            )
        )
        for i in range(messages):
            events.append(
                _event(
                    "message",
                    bot,
                    at + timedelta(seconds=i + 1),
                    conversation=conv,
                    direction="inbound",
                    text=f"Hi, call me back on {customer}, please ({i})",
                )
            )
            events.append(
                _event(
                    "message",
                    bot,
                    at + timedelta(seconds=i + 2),
                    conversation=conv,
                    direction="outbound",
                    text=f"Sure, we will call {customer}",
                    response_time_ms=400 + i,
                    outcome="success",
                    tokens=10,
                )
            )
        events.append(
            _event(
                "conversation.ended",
                bot,
                at + timedelta(seconds=30),
                conversation=conv,
                status="resolved",
                csat=4,
            )
        )
    events.append(
        _event(
            "activity",
            bot,
            at + timedelta(seconds=40),
            kind="booking",
            description=f"Booked a call with {customer}",
            customer=customer,
            value=50,
        )
    )
    return events


def _ready_export(org, kind: str) -> ExportJob:
    job = ExportJob(
        id=str(uuid.uuid4()),
        org_id=org.pk,
        kind=kind,
        query="",
        now=datetime.now(UTC).isoformat(),
        filename=f"{kind}.csv",
    )
    _job_save(job)
    return export_job_run(job_id=job.id)


def seed_customer(org, bot, *, at: datetime, exports: bool = True) -> dict:
    """The customer and another in `org` (events, metrics, rollups, insights, an admin log entry,
    the live feed, finished exports); returns what the checks need."""
    result = events_ingest(
        org=org,
        events=customer_events(CUSTOMER, bot=bot.slug, prefix="c", at=at)
        + customer_events(OTHER, bot=bot.slug, prefix="o", at=at),
    )
    assert result.accepted == 2 * 17 and not result.rejected, result.rejected
    ids = list(Conversation.objects.for_org(org).values_list("pk", flat=True))
    conversation_metrics_build_many(org_id=org.pk, conversation_ids=ids)
    rollup_build_hourly(org_id=org.pk, hour=at.replace(minute=0, second=0, microsecond=0))
    InsightReport.objects.create(
        organization=org,
        scope="org",
        payload={"anomalies": [], "at_risk": [{"customer": CUSTOMER}, {"customer": OTHER}]},
    )
    theirs = Conversation.objects.for_org(org).filter(customer=CUSTOMER)
    LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Conversation),
        object_id=str(theirs[0].pk),
        object_repr=str(theirs[0]),
        action_flag=CHANGE,
        user=f.UserFactory(username=f"staff-{org.slug}", is_staff=True),
    )
    jobs = {}
    if exports:
        jobs = {kind: _ready_export(org, kind) for kind in ("conversations", "messages")}
        orphan = jobs["conversations"].path.with_name(f"{uuid.uuid4()}.csv")  # its job expired
        orphan.write_bytes(jobs["conversations"].path.read_bytes())
        jobs["orphan"] = orphan
    return {"conversation_ids": [c.pk for c in theirs], "jobs": jobs}


@pytest.fixture
def now():
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


@pytest.fixture
def world(org, other_org, bot, now, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path)
    seeded = seed_customer(org, bot, at=now)
    elsewhere_bot = f.BotFactory(organization=other_org, slug="support-bot")
    elsewhere = seed_customer(other_org, elsewhere_bot, at=now)
    return {"org": org, "other_org": other_org, "bot": bot, **seeded, "elsewhere": elsewhere}


def _text_fields(model):
    return [
        field
        for field in model._meta.concrete_fields
        if isinstance(field, models.CharField | models.TextField | models.JSONField)
    ]


def rows_naming(value: str) -> list[str]:
    """Every row of every table (ours, Django admin's log) with a text or JSON column holding
    `value`, as "model.field #pk"."""
    found = []
    for model in [*apps.get_app_config("analytics").get_models(), LogEntry]:
        for field in _text_fields(model):
            matches = model._base_manager.annotate(_t=Cast(field.name, models.TextField())).filter(
                _t__contains=value
            )
            found += [
                f"{model.__name__}.{field.name} #{pk}"
                for pk in matches.values_list("pk", flat=True)
            ]
    return found


def redis_values_naming(value: str) -> list[str]:
    """Every key of this test run's live state whose value holds `value`."""
    r, needle, found = get_redis(), value.encode(), []
    for key in r.scan_iter(f"{django_settings.LIVE_KEY_PREFIX}:*"):
        kind = r.type(key)
        if kind == b"string":
            blobs = [r.get(key) or b""]
        elif kind == b"list":
            blobs = r.lrange(key, 0, -1)
        elif kind == b"hash":
            blobs = [k + v for k, v in r.hgetall(key).items()]
        elif kind == b"zset":
            blobs = r.zrange(key, 0, -1)
        elif kind == b"set":
            blobs = list(r.smembers(key))
        else:
            blobs = []
        if any(needle in blob for blob in blobs):
            found.append(key.decode())
    return found


def files_naming(folder: Path, value: str) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


def _rollups(org) -> list:
    return [
        list(BotHourlyRollup.objects.for_org(org).order_by("pk").values()),
        list(OrgHourlyUsage.objects.for_org(org).order_by("pk").values()),
    ]


def _holdings(org, customer) -> dict:
    return customer_counts(org=org, customer=customer)


def test_it_erases_the_customer_from_every_table_key_and_file(world, settings):
    org, other_org = world["org"], world["other_org"]
    folder = Path(settings.EXPORT_DIR)
    assert rows_naming(CUSTOMER)
    assert [key for key in redis_values_naming(CUSTOMER) if f"{{o:{org.pk}}}:" in key]
    assert files_naming(folder / str(org.pk), CUSTOMER)
    rollups_before = _rollups(org)
    other_before = _holdings(org, OTHER)
    elsewhere_before = _holdings(other_org, CUSTOMER)
    elsewhere_files = {p: p.read_bytes() for p in (folder / str(other_org.pk)).iterdir()}
    messages_file = world["jobs"]["messages"].path
    message_rows_before = messages_file.read_text().count("\n")

    receipt = customer_erase(org=org, customer=CUSTOMER, actor_label="alice")

    assert receipt.counts == {
        "conversations": 2,
        "messages": 12,
        "activities": 1,
        "conversation_metrics": 2,
        "live_feed_entries": receipt.counts["live_feed_entries"],
        "export_files": 3,
        "export_rows": 2 + 12 + 2,
        "insight_entries": 1,
        "admin_log_entries": 1,
    }
    assert receipt.counts["live_feed_entries"] >= 1
    assert "received after that are kept" in receipt.covers
    # Nothing in this org still names them: no table, no Redis key, no file.
    assert not Conversation.objects.for_org(org).filter(customer=CUSTOMER).exists()
    assert not Message.objects.for_org(org).filter(text__contains=CUSTOMER).exists()
    assert not Message.objects.filter(conversation_id__in=world["conversation_ids"]).exists()
    assert not ConversationMetrics.objects.filter(
        conversation_id__in=world["conversation_ids"]
    ).exists()
    assert not Activity.objects.for_org(org).filter(customer=CUSTOMER).exists()
    assert CUSTOMER not in orjson.dumps(InsightReport.objects.for_org(org).get().payload).decode()
    ours = LogEntry.objects.filter(object_id__in=[str(i) for i in world["conversation_ids"]])
    assert [e.object_repr for e in ours] == ["(erased customer)"]
    assert all(CUSTOMER not in orjson.dumps(i).decode() for i in live_feed(org=org, limit=50))
    assert all(i["conversation"] not in world["conversation_ids"] for i in live_feed(org=org))
    assert all(i["customer"] != CUSTOMER for i in live_activities(org=org))
    assert files_naming(folder / str(org.pk), CUSTOMER) == []
    assert files_naming(folder / str(org.pk), CUSTOMER.replace("+", "'+")) == []
    assert messages_file.read_text().count("\n") == message_rows_before - 12
    # The trail names no customer; every other org's row that names them is another org's.
    assert not CustomerErasure.objects.filter(fingerprint__contains=CUSTOMER).exists()
    for model in (CustomerErasure, AuditEvent):
        for row in model.objects.for_org(org).values():
            assert CUSTOMER not in orjson.dumps(row, default=str).decode()
    leftovers = rows_naming(CUSTOMER)
    org_of = {
        "Conversation": Conversation,
        "Message": Message,
        "Activity": Activity,
        "InsightReport": InsightReport,
    }
    for hit in leftovers:
        name, pk = hit.split(".")[0], int(hit.split("#")[1])
        if name == "LogEntry":
            entry = LogEntry.objects.get(pk=pk)
            assert entry.object_id not in {str(i) for i in world["conversation_ids"]}
            continue
        assert org_of[name].objects.get(pk=pk).organization_id == other_org.pk, hit
    # (Keys of other tests' orgs may linger in this run's prefix: look at these two orgs.)
    naming = redis_values_naming(CUSTOMER)
    assert [key for key in naming if f"{{o:{org.pk}}}:" in key] == []
    assert [key for key in naming if f"{{o:{other_org.pk}}}:" in key]
    # Everyone else is untouched: the other customer, the other org, the rollups.
    assert _holdings(org, OTHER) == other_before
    assert _holdings(other_org, CUSTOMER) == elsewhere_before
    assert {p: p.read_bytes() for p in (folder / str(other_org.pk)).iterdir()} == elsewhere_files
    assert OTHER.encode() in world["jobs"]["conversations"].path.read_bytes()
    assert _rollups(org) == rollups_before
    # The job of the rewritten file says so; its row count follows.
    job = _job_load(get_redis().get(_job_key(world["jobs"]["conversations"].id)))
    assert (job.erased_rows, job.rows, job.status) == (2, 2, "ready")


def test_the_trail_keeps_a_fingerprint_and_counts_but_never_the_identifier(world):
    org = world["org"]
    erin = f.UserFactory(username="erin-trail")
    receipt = customer_erase(org=org, customer=CUSTOMER, actor_label="erin", actor=erin)
    erasure = CustomerErasure.objects.for_org(org).get(pk=receipt.erasure_id)
    assert erasure.requested_by == erin and erasure.actor_label == "erin"
    assert erasure.fingerprint == customer_fingerprint(org=org, customer=CUSTOMER)
    assert erasure.fingerprint != customer_fingerprint(org=world["other_org"], customer=CUSTOMER)
    assert erasure.counts["messages"] == 12
    audit = AuditEvent.objects.for_org(org).get(action="customer.erased")
    assert audit.actor == erin and audit.target == f"erasure {erasure.pk}"
    assert audit.details["conversations"] == 2 and audit.details["erasure"] == erasure.pk
    again = customer_erase(org=org, customer=f"  {CUSTOMER} ", actor_label="erin")
    assert again.previous_erasures == 1  # recognised, with nothing left to remove
    assert again.counts["conversations"] == again.counts["messages"] == 0


def test_an_unknown_customer_gets_a_receipt_with_zero_counts(org, bot):
    receipt = customer_erase(org=org, customer="nobody@example.com", actor_label="alice")
    assert set(receipt.counts.values()) == {0}
    assert receipt.previous_erasures == 0
    assert CustomerErasure.objects.for_org(org).get().counts == receipt.counts


def test_events_that_arrive_after_the_erase_are_kept(world, now):
    org, bot = world["org"], world["bot"]
    customer_erase(org=org, customer=CUSTOMER, actor_label="alice")
    later = customer_events(CUSTOMER, bot=bot.slug, prefix="c", at=now + timedelta(minutes=5))
    result = events_ingest(org=org, events=later)
    assert result.accepted == 17
    assert _holdings(org, CUSTOMER) == {
        "conversations": 2,
        "messages": 12,
        "activities": 1,
        "conversation_metrics": 0,
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Give the customer's identifier"),
        ("   ", "Give the customer's identifier"),
        ("x" * 201, "At most 200 characters"),
        ("a\x00b", "NUL"),
        (["+27"], "as a string"),
    ],
)
def test_it_refuses_a_bad_identifier_naming_the_field(org, value, message):
    with pytest.raises(ValidationError) as caught:
        customer_erase(org=org, customer=value, actor_label="alice")
    assert message in caught.value.message_dict["customer"][0]
    assert not CustomerErasure.objects.exists()


def test_the_export_holds_everything_seeded(world):
    org = world["org"]
    data = customer_export(org=org, customer=CUSTOMER)
    assert data["counts"] == {
        "conversations": 2,
        "messages": 12,
        "activities": 1,
        "conversation_metrics": 2,
    }
    first = data["conversations"][0]
    assert first["customer"] == CUSTOMER and first["bot"] == "support-bot"
    assert first["external_id"] == "c-0" and first["channel"] == "whatsapp"
    assert first["metrics"]["total_messages"] == 6 and first["csat"] == 4
    assert first["messages"][0]["text"] == f"Hi, call me back on {CUSTOMER}, please (0)"
    assert [a["description"] for a in data["activities"]] == [f"Booked a call with {CUSTOMER}"]
    assert all(c["customer"] == CUSTOMER for c in data["conversations"])
    assert customer_export(org=org, customer="nobody")["conversations"] == []


@pytest.mark.django_db(transaction=True)
def test_an_export_being_written_during_an_erasure_is_discarded(
    org, bot, now, settings, tmp_path, monkeypatch
):
    settings.EXPORT_DIR = str(tmp_path)
    seed_customer(org, bot, at=now, exports=False)
    real = export_service.conversations_csv

    def erase_midway(queryset):
        chunks = list(real(queryset))  # the rows are read: the customer is in them
        worker = threading.Thread(
            target=lambda: customer_erase(org=org, customer=CUSTOMER, actor_label="alice")
        )
        worker.start()
        worker.join()
        return iter(chunks)

    monkeypatch.setattr(export_service, "conversations_csv", erase_midway)
    job = _ready_export(org, "conversations")
    assert job.status == "failed" and "erased while this export was being written" in job.error
    assert not job.path.exists()
    assert files_naming(tmp_path, CUSTOMER) == []
    monkeypatch.setattr(export_service, "conversations_csv", real)
    again = _ready_export(org, "conversations")
    assert again.status == "ready" and CUSTOMER.encode() not in again.path.read_bytes()


def _export_file(org, settings, folder: Path, body: bytes) -> Path:
    """A finished export of `org` holding `body`."""
    settings.EXPORT_DIR = str(folder)
    (folder / str(org.pk)).mkdir(exist_ok=True)
    path = folder / str(org.pk) / f"{uuid.uuid4()}.csv"
    path.write_bytes(body)
    return path


def test_it_takes_exactly_the_customers_records_out_of_tricky_csv(org, settings, tmp_path):
    conversations = _export_file(
        org,
        settings,
        tmp_path,
        b"id,external_id,bot,bot_name,campaign,customer,channel\n"
        b'1,"a,1",b,"Bot ""One""",,"Costa, ""Ana""",web\n'  # quoted, with commas and quotes
        b'2,"multi\nline Costa, ""Ana"" 3,",b,B,,Ben,web\n'  # names her, is not hers
        b"3,x,b,B,,'+1 555,sms\n"  # a neutralised identifier
        b'4,y,b,B,,"Costa, ""Ana"" Jr",web\n',
    )
    messages = _export_file(
        org,
        settings,
        tmp_path,
        b"id,conversation_id,bot,created_at,direction,text\n"
        b"10,7,b,t,inbound,hello\n"
        b'11,8,b,t,inbound,"keeps\n12,7,b,t,inbound,a fake row inside a cell"\n'
        b"13,70,b,t,inbound,not 7\n"
        b'14,7,b,t,outbound,"bye\nthen"\n',
    )
    files, rows = export_service.export_files_forget(
        org=org, customers=['Costa, "Ana"', "+1 555"], conversation_ids=[7]
    )
    assert (files, rows) == (2, 4)
    assert conversations.read_bytes() == (
        b"id,external_id,bot,bot_name,campaign,customer,channel\n"
        b'2,"multi\nline Costa, ""Ana"" 3,",b,B,,Ben,web\n'
        b'4,y,b,B,,"Costa, ""Ana"" Jr",web\n'
    )
    assert messages.read_bytes() == (
        b"id,conversation_id,bot,created_at,direction,text\n"
        b'11,8,b,t,inbound,"keeps\n12,7,b,t,inbound,a fake row inside a cell"\n'
        b"13,70,b,t,inbound,not 7\n"
    )
    assert not list(conversations.parent.glob("*.erasing"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_redis_down_it_erases_the_database_and_files_and_rebuilds_the_feed_later(
    world, settings
):
    org = world["org"]
    reachable = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"  # nothing listens there
    receipt = customer_erase(org=org, customer=CUSTOMER, actor_label="alice")
    assert receipt.counts["conversations"] == 2 and receipt.counts["messages"] == 12
    assert receipt.counts["live_feed_entries"] is None
    assert receipt.counts["export_files"] == 3  # the files are on disk: cleaned all the same
    assert any("rebuilt from the database" in note for note in receipt.notes)
    assert files_naming(Path(settings.EXPORT_DIR) / str(org.pk), CUSTOMER) == []
    org.refresh_from_db()
    assert org.live_stale_since is not None
    settings.REDIS_URL = reachable
    # Redis missed the erasure...
    assert [k for k in redis_values_naming(CUSTOMER) if f"{{o:{org.pk}}}:" in k]
    live_recover()  # ...until pulse notices the stale org and rebuilds it from PostgreSQL
    assert [k for k in redis_values_naming(CUSTOMER) if f"{{o:{org.pk}}}:" in k] == []
    assert any(i["customer"] == OTHER for i in live_feed(org=org, limit=50))


@pytest.mark.django_db(transaction=True)
def test_a_batch_stored_before_the_erasure_but_pushed_live_after_it_leaves_nothing_live(
    org, bot, now, monkeypatch
):
    """The batch commits, stalls before updating Redis, the erasure runs, then the batch pushes
    its feed items: the erasure's tombstone takes them out again; a later batch's stay."""
    real, stalled, resume = ingest_service.live_apply, threading.Event(), threading.Event()

    def stalling_live_apply(**kwargs):
        stalled.set()
        assert resume.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(ingest_service, "live_apply", stalling_live_apply)
    worker = threading.Thread(
        target=lambda: events_ingest(
            org=org, events=customer_events(CUSTOMER, bot=bot.slug, prefix="c", at=now)
        )
    )
    worker.start()
    assert stalled.wait(10)  # committed: the rows are stored, Redis not yet updated
    erased = list(Conversation.objects.for_org(org).values_list("pk", flat=True))
    receipt = customer_erase(org=org, customer=CUSTOMER, actor_label="alice")
    assert receipt.counts["conversations"] == 2 and receipt.counts["activities"] == 1
    customer_erase(org=org, customer="someone else", actor_label="alice")  # a second tombstone
    monkeypatch.setattr(ingest_service, "live_apply", real)
    resume.set()
    worker.join(10)
    assert not [i for i in live_feed(org=org, limit=50) if i["conversation"] in erased]
    assert not [a for a in live_activities(org=org) if a["customer"] == CUSTOMER]
    # A batch that began after the erasure is kept, in PostgreSQL and live.
    later = customer_events(CUSTOMER, bot=bot.slug, prefix="n", at=now + timedelta(minutes=1))
    assert events_ingest(org=org, events=later).accepted == 17
    kept = set(Conversation.objects.for_org(org).values_list("pk", flat=True))
    feed = live_feed(org=org, limit=50)
    assert {i["conversation"] for i in feed if i["customer"] == CUSTOMER} == kept
    assert [a["customer"] for a in live_activities(org=org)] == [CUSTOMER]


def test_the_export_files_keep_the_conversations_the_erasure_kept(org, settings, tmp_path):
    conversations = _export_file(
        org,
        settings,
        tmp_path,
        b"id,external_id,bot,bot_name,campaign,customer,channel\n"
        b"7,a,b,B,,Ana,web\n"  # erased
        b"9,c,b,B,,Ana,web\n"  # arrived after the cut-off: kept in PostgreSQL, kept here
        b"8,b,b,B,,Ben,web\n",
    )
    files, rows = export_service.export_files_forget(
        org=org, customers=["Ana"], conversation_ids=[7], keep_conversation_ids=[9]
    )
    assert (files, rows) == (1, 1)
    assert conversations.read_bytes() == (
        b"id,external_id,bot,bot_name,campaign,customer,channel\n"
        b"9,c,b,B,,Ana,web\n"
        b"8,b,b,B,,Ben,web\n"
    )


@pytest.mark.django_db(transaction=True)
def test_the_export_stream_reads_one_snapshot(org, bot, now, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path)
    seed_customer(org, bot, at=now, exports=False)
    parts = customer_export_rows(org=org, customer=CUSTOMER)
    kind, head = next(parts)  # the snapshot is taken: what is stored from now on is not in it
    assert kind == "head" and head["counts"]["messages"] == 12

    def meanwhile():
        try:
            Conversation.objects.for_org(org).filter(customer=CUSTOMER).update(channel="sms")
            events_ingest(
                org=org, events=customer_events(CUSTOMER, bot=bot.slug, prefix="z", at=now)
            )
        finally:
            connection.close()

    other = threading.Thread(target=meanwhile)
    other.start()
    other.join(10)
    rest = list(parts)
    conversations = [row for kind, row in rest if kind == "conversation"]
    assert [c["channel"] for c in conversations] == ["whatsapp", "whatsapp"]
    assert len([row for kind, row in rest if kind == "message"]) == 12
    assert len([row for kind, row in rest if kind == "activity"]) == 1
    assert connection.get_autocommit()  # the export's transaction has ended
    assert customer_counts(org=org, customer=CUSTOMER)["messages"] == 24
