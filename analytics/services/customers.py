"""One customer's data: erasure (a GDPR-style "forget me") and access (everything held about them).

A customer is the identifier the events carry in their `customer` field (a phone number, an
email, a name): a conversation belongs to the customer its `customer` names, an activity likewise;
messages and conversation metrics belong to the customer's conversations. The match is exact
(the identifier as given, and without surrounding spaces). Conversation external ids are the bot
platform's ids, not the customer's: matching them could erase someone else's conversation.

Erasure removes, in one transaction and set-based (a DELETE per table, never one per row): the
conversations, their messages (no enforced foreign key: deleted by organization and conversation
ids), their metrics, the activities, the customer's entries among the insights' customers at risk
and the names Django admin's log copied. Then the live feed and activity list in Redis and the
finished CSV exports lose the customer's rows. Rollups keep their anonymous aggregates.

The erasure has a cut-off, its start (`erased_at` on the receipt): everything accepted before it
goes. Events still arriving meanwhile are kept when they start something new (a conversation
first stored once the erasure holds the customer's conversations, an activity stored once it has
deleted theirs) and go when they join a conversation being erased; the receipt counts what is
kept (`kept_after`). The live feed and the export files follow the same line: items and rows of
erased rows go, those of kept rows stay.
The trail (CustomerErasure, AuditEvent) never holds the identifier, only an HMAC of it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import redis
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from analytics.models import (
    Activity,
    Bot,
    Campaign,
    Conversation,
    ConversationMetrics,
    CustomerErasure,
    InsightReport,
    Message,
    Organization,
)
from analytics.services.audit import audit_record
from analytics.services.export import export_files_forget
from analytics.services.live import activity_signature, live_customer_forget

log = logging.getLogger(__name__)

MAX_CUSTOMER_LENGTH = 200  # as Conversation.customer and Activity.customer
KINDS = (
    "conversations",
    "messages",
    "activities",
    "conversation_metrics",
    "live_feed_entries",
    "export_files",
    "export_rows",
    "insight_entries",
    "admin_log_entries",
)
KEPT_KINDS = ("conversations", "messages", "activities", "conversation_metrics")


def customer_clean(value) -> str:
    """The identifier of a request, or a ValidationError naming the `customer` field."""
    if not isinstance(value, str):
        raise ValidationError({"customer": "Give the customer's identifier as a string."})
    if "\x00" in value:
        raise ValidationError({"customer": "Must not contain NUL (\\u0000) characters."})
    if not value.strip():
        raise ValidationError({"customer": "Give the customer's identifier (e.g. +27 82 …)."})
    if len(value) > MAX_CUSTOMER_LENGTH:
        raise ValidationError(
            {"customer": f"At most {MAX_CUSTOMER_LENGTH} characters (got {len(value):,})."}
        )
    return value


def _identifiers(customer: str) -> list[str]:
    return sorted({customer, customer.strip()})


def customer_fingerprint(*, org: Organization, customer: str) -> str:
    """An HMAC of the identifier, keyed by SECRET_KEY and the org: the same request is recognised
    again, the identifier cannot be read back, and two orgs' customers cannot be linked."""
    message = f"{org.pk}:{customer.strip()}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


@dataclass
class ErasureReceipt:
    erasure_id: int
    erased_at: datetime  # the cut-off: everything accepted before it is erased
    counts: dict[str, int | None]
    previous_erasures: int = 0  # earlier erasures of the same identifier in this org
    notes: list[str] = field(default_factory=list)
    # What the org still holds about the customer once the erasure committed: all of it
    # received after the cut-off (while the erasure ran, or just after).
    kept_after: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KEPT_KINDS, 0))

    @property
    def covers(self) -> str:
        text = (
            f"Data received up to {self.erased_at.isoformat()}. Events for this customer "
            f"received after that are kept; erase again to remove them."
        )
        if any(self.kept_after.values()):
            k = self.kept_after
            text += (
                f" Kept so far (received while the erasure ran): {k['conversations']} "
                f"conversations, {k['messages']} messages, {k['activities']} activities."
            )
        return text


def _delete(cursor, sql: str, params) -> list[tuple]:
    cursor.execute(sql, params)
    return cursor.fetchall()


def _erase_rows(cursor, org: Organization, names: list[str]) -> dict:
    """The set-based deletes, each statement reading what was committed when it began (READ
    COMMITTED), all after the cut-off was taken; so everything accepted before it goes:

    - activities first: those committed since are kept (an activity joins nothing);
    - then the customer's conversations are locked in ingestion's own lock order (bot id, then
      external id by code point, as `_upsert_conversations` sorts them): a batch adding to one
      of them is waited for (and its messages then go with the conversation), a batch that
      arrives later waits for this commit and starts the conversation again (kept), and the
      two never lock in opposite orders (no deadlock). A conversation first stored after the
      lock was taken is not the erasure's: kept, with its messages;
    - then the locked conversations' messages (no enforced foreign key: by organization and
      conversation ids) and metrics, then the conversations."""
    conv, msg, cm, act = (
        m._meta.db_table for m in (Conversation, Message, ConversationMetrics, Activity)
    )
    activities = _delete(
        cursor,
        f"DELETE FROM {act} WHERE organization_id = %s AND customer = ANY(%s) "  # noqa: S608
        "RETURNING id, bot_id, kind, description, customer, created_at",
        [org.pk, names],
    )
    locked = _delete(
        cursor,
        f"SELECT id, bot_id FROM {conv} WHERE organization_id = %s AND customer = ANY(%s) "  # noqa: S608
        'ORDER BY bot_id, external_id COLLATE "C" FOR UPDATE',
        [org.pk, names],
    )
    ids = [row[0] for row in locked]
    counts = {"conversations": 0, "messages": 0, "conversation_metrics": 0}
    if ids:
        cursor.execute(
            f"DELETE FROM {msg} WHERE organization_id = %s AND conversation_id = ANY(%s)",  # noqa: S608
            [org.pk, ids],
        )
        counts["messages"] = cursor.rowcount
        cursor.execute(
            f"DELETE FROM {cm} WHERE organization_id = %s AND conversation_id = ANY(%s)",  # noqa: S608
            [org.pk, ids],
        )
        counts["conversation_metrics"] = cursor.rowcount
        cursor.execute(
            f"DELETE FROM {conv} WHERE organization_id = %s AND id = ANY(%s)",  # noqa: S608
            [org.pk, ids],
        )
        counts["conversations"] = cursor.rowcount
    counts["activities"] = len(activities)
    slugs = dict(Bot.objects.for_org(org).values_list("pk", "slug"))
    return {
        "counts": counts,
        "conversation_ids": ids,
        "bot_ids": sorted({row[1] for row in locked}),
        "activity_ids": [row[0] for row in activities],
        "activity_signatures": [
            activity_signature(
                kind=kind, bot=slugs.get(bot_id, ""), description=text, customer=who, at=at
            )
            for _, bot_id, kind, text, who, at in activities
        ],
    }


def _forget_insights(org: Organization, names: list[str]) -> int:
    """Drop the customer from the stored customers at risk (the next refresh recomputes them
    from conversations, which no longer hold the customer)."""
    removed = 0
    for report in InsightReport.objects.for_org(org).select_for_update():
        at_risk = report.payload.get("at_risk") if isinstance(report.payload, dict) else None
        if not at_risk:
            continue
        kept = [c for c in at_risk if c.get("customer") not in names]
        if len(kept) != len(at_risk):
            removed += len(at_risk) - len(kept)
            report.payload["at_risk"] = kept
            report.save(update_fields=["payload"])
    return removed


def _forget_admin_log(org: Organization, names, conversation_ids, activity_ids) -> int:
    """Django admin's log copies a conversation's name (its customer) into `object_repr`."""
    kinds = ContentType.objects.get_for_models(Conversation, Activity)
    org_bots = list(Bot.objects.for_org(org).values_list("pk", flat=True))
    reprs = [f"{name} · {bot_id}" for name in names for bot_id in org_bots]
    entries = LogEntry.objects.filter(
        content_type=kinds[Conversation], object_id__in=[str(i) for i in conversation_ids]
    ) | LogEntry.objects.filter(content_type=kinds[Conversation], object_repr__in=reprs)
    if activity_ids:
        entries = entries | LogEntry.objects.filter(
            content_type=kinds[Activity], object_id__in=[str(i) for i in activity_ids]
        )
    return entries.update(object_repr="(erased customer)", change_message="")


def customer_erase(
    *,
    org: Organization,
    customer: str,
    actor_label: str,
    actor=None,
    api_key=None,
    ip: str | None = None,
) -> ErasureReceipt:
    """Erase everything the org holds about one customer; an unknown customer gets a receipt
    with zero counts. `actor` is the user who asked, `api_key` the key (either may be None)."""
    customer = customer_clean(customer)
    names = _identifiers(customer)
    fingerprint = customer_fingerprint(org=org, customer=customer)
    with transaction.atomic(), connection.cursor() as cursor:
        erased_at = timezone.now()
        rows = _erase_rows(cursor, org, names)
        counts: dict[str, int | None] = dict.fromkeys(KINDS, 0)
        counts.update(rows["counts"])
        counts["insight_entries"] = _forget_insights(org, names)
        counts["admin_log_entries"] = _forget_admin_log(
            org, names, rows["conversation_ids"], rows["activity_ids"]
        )
        previous = CustomerErasure.objects.for_org(org).filter(fingerprint=fingerprint).count()
        erasure = CustomerErasure.objects.create(
            organization=org,
            requested_by=actor if actor is not None and actor.pk else None,
            actor_label=actor_label[:150],
            fingerprint=fingerprint,
            counts=counts,
            created_at=erased_at,
        )
        audit = audit_record(
            org=org,
            actor=api_key if api_key is not None else actor,
            action="customer.erased",
            target=f"erasure {erasure.pk}",
            details={"erasure": erasure.pk, **counts},  # the audit page lists key: value
            ip=ip,
        )
    committed_at = timezone.now()
    receipt = ErasureReceipt(
        erasure.pk,
        erased_at,
        counts,
        previous_erasures=previous,
        kept_after=customer_counts(org=org, customer=customer),
    )
    # After the commit: what follows touches what PostgreSQL no longer holds.
    counts["live_feed_entries"] = live_customer_forget(
        org=org,
        customers=names,
        conversation_ids=rows["conversation_ids"],
        bot_ids=rows["bot_ids"],
        activity_signatures=rows["activity_signatures"],
        erased_until=committed_at,
    )
    if counts["live_feed_entries"] is None:
        receipt.notes.append(
            "The live feed could not be reached; it is rebuilt from the database (without this "
            "customer) as soon as it can."
        )
    try:
        counts["export_files"], counts["export_rows"] = export_files_forget(
            org=org,
            customers=names,
            conversation_ids=rows["conversation_ids"],
            keep_conversation_ids=list(
                Conversation.objects.for_org(org)
                .filter(customer__in=names)
                .values_list("pk", flat=True)
            ),
        )
    except (OSError, redis.RedisError):
        log.exception("export files of org %s not cleaned after erasure %s", org.pk, erasure.pk)
        counts["export_files"] = counts["export_rows"] = None
        receipt.notes.append(
            "Finished CSV exports could not be cleaned; ask support to repeat this erasure."
        )
    CustomerErasure.objects.filter(pk=erasure.pk).update(counts=counts)
    audit.details.update(counts)
    audit.save(update_fields=["details"])
    return receipt


def customer_counts(*, org: Organization, customer: str) -> dict[str, int]:
    """How much the org holds about one customer (what an erasure would remove from PostgreSQL)."""
    names = _identifiers(customer_clean(customer))
    conversations = Conversation.objects.for_org(org).filter(customer__in=names)
    ids = conversations.values("id")
    return {
        "conversations": conversations.count(),
        "messages": Message.objects.for_org(org).filter(conversation_id__in=ids).count(),
        "activities": Activity.objects.for_org(org).filter(customer__in=names).count(),
        "conversation_metrics": ConversationMetrics.objects.for_org(org)
        .filter(conversation_id__in=ids)
        .count(),
    }


def customer_erasures(*, org: Organization, limit: int = 20) -> list[CustomerErasure]:
    """The org's latest erasures, newest first (who asked, when, what went; no identifiers)."""
    return list(CustomerErasure.objects.for_org(org)[:limit])


# --- access: everything held about a customer -------------------------------------------------


def _columns(model, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The model's columns (as `.values()` names them) that an access request returns: all but
    the organization's (the request names it) and `without`."""
    skip = {"organization_id", *without}
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname not in skip)


CONVERSATION_FIELDS = _columns(Conversation)
MESSAGE_FIELDS = _columns(Message, without=("bot_id",))  # a message's bot is its conversation's
METRIC_FIELDS = _columns(ConversationMetrics, without=("id", "conversation_id", "bot_id"))
ACTIVITY_FIELDS = _columns(Activity)
EXPORT_CHUNK = 1_000  # rows per fetch of a server-side cursor


def customer_export_rows(*, org: Organization, customer: str) -> Iterator[tuple[str, dict]]:
    """Everything the org holds about one customer, as a stream of parts read in one snapshot:
    ("head", {customer, organization, generated_at, counts}), then per conversation (by start)
    ("conversation", its row with `metrics`) followed by its ("message", row)s in time order, then
    the ("activity", row)s. Messages and activities come through server-side cursors, so a
    customer with 100k messages is never held in memory; their conversations are (with their
    metrics: one row each). A bad identifier raises ValidationError here, before any part."""
    customer = customer_clean(customer)
    return _export_parts(org, customer, _identifiers(customer))


def _export_parts(org: Organization, customer: str, names: list[str]):
    with transaction.atomic():
        if _outermost():
            with connection.cursor() as cursor:  # the counts and the rows: one snapshot
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        bots = dict(Bot.objects.for_org(org).values_list("pk", "slug"))
        campaigns = dict(Campaign.objects.for_org(org).values_list("pk", "slug"))
        conversations = list(
            Conversation.objects.for_org(org)
            .filter(customer__in=names)
            .order_by("started_at", "id")
            .values(*CONVERSATION_FIELDS)
        )
        ids = [c["id"] for c in conversations]
        metrics = {
            row.pop("conversation_id"): row
            for row in ConversationMetrics.objects.for_org(org)
            .filter(conversation_id__in=ids)
            .values("conversation_id", *METRIC_FIELDS)
        }
        messages = (
            Message.objects.for_org(org)
            .filter(conversation_id__in=ids)
            # The conversations' order, then time: one pass over both.
            .order_by("conversation__started_at", "conversation_id", "created_at", "id")
            .values(*MESSAGE_FIELDS)
        )
        activities = (
            Activity.objects.for_org(org)
            .filter(customer__in=names)
            .order_by("created_at", "id")
            .values(*ACTIVITY_FIELDS)
        )
        yield (
            "head",
            {
                "customer": customer,
                "organization": org.slug,
                "generated_at": timezone.now(),
                "counts": {
                    "conversations": len(conversations),
                    "messages": messages.count() if ids else 0,
                    "activities": activities.count(),
                    "conversation_metrics": len(metrics),
                },
            },
        )
        rows = iter(messages.iterator(chunk_size=EXPORT_CHUNK)) if ids else iter(())
        pending = next(rows, None)
        for c in conversations:
            c["bot"] = bots.get(c.pop("bot_id"), "")
            c["campaign"] = campaigns.get(c.pop("campaign_id"), "")
            c["metrics"] = metrics.get(c["id"])
            yield "conversation", c
            while pending is not None and pending["conversation_id"] == c["id"]:
                pending.pop("conversation_id")
                yield "message", pending
                pending = next(rows, None)
        for a in activities.iterator(chunk_size=EXPORT_CHUNK):
            a["bot"] = bots.get(a.pop("bot_id"), "")
            yield "activity", a


def _outermost() -> bool:
    """Whether the current atomic block is the transaction itself (not a savepoint in a
    caller's, as in tests): only then can its isolation level still be set."""
    return len(connection.atomic_blocks) == 1 and not connection.savepoint_ids


def customer_export(*, org: Organization, customer: str) -> dict:
    """Everything the org holds about one customer, as plain data in memory (for a few rows:
    the API streams customer_export_rows instead)."""
    data: dict = {}
    for kind, row in customer_export_rows(org=org, customer=customer):
        if kind == "head":
            data = {**row, "conversations": [], "activities": []}
        elif kind == "conversation":
            data["conversations"].append({**row, "messages": []})
        elif kind == "message":
            data["conversations"][-1]["messages"].append(row)
        else:
            data["activities"].append(row)
    return data
