"""CSV exports: conversations (one row each, with metrics), messages and daily bot metrics.

Rows are produced by PostgreSQL itself (`COPY (query) TO STDOUT WITH (FORMAT csv, HEADER)`) from
the very queryset the explorer shows, so the export holds exactly the filtered view in the same
order, streams in constant memory at COPY speed, and quoting (commas, quotes, newlines) is
PostgreSQL's RFC 4180 CSV. Times are ISO 8601 UTC (`2026-11-23T14:05:00Z`). Text cells that a
spreadsheet would run as a formula (starting with = + - @ tab or CR) get a leading apostrophe.

Exports above `settings.EXPORT_ASYNC_ROWS` rows run as a Celery job (`export_job_start`) that
writes the file under `settings.EXPORT_DIR`; the job's state lives in Redis for a day.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import mmap
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path

import orjson
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Case, F, Func, QuerySet, TextField, Value, When
from django.db.models.functions import Cast
from django.http import QueryDict, StreamingHttpResponse
from django.utils import timezone
from redis.exceptions import LockError

from analytics.filters import conversation_filter
from analytics.live_keys import org_key
from analytics.models import DAILY_FIGURES, Bot, BotDailyMetrics, Message, Organization
from analytics.redis import get_redis
from analytics.services.enqueue import EXPORT_BUILD, task_send
from analytics.tenancy import user_can

CHUNK_BYTES = 64 * 1024
JOB_TTL_SECONDS = 24 * 3600
# The last line of a download that failed after its first bytes were sent (the status was 200).
INTERRUPTED_LINE = b"export interrupted by a server error: this file is incomplete, try again\n"
ERASED_WHILE_WRITING = (
    "A customer's data was erased while this export was being written, so the file was "
    "discarded. Start the export again."
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what Neutralised prefixes with '

logger = logging.getLogger(__name__)


class Neutralised(Func):
    """Text as a spreadsheet shows it, never as a formula: a leading ' before = + - @ TAB CR."""

    template = (
        "CASE WHEN left(%(expressions)s, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') "
        "THEN '''' || %(expressions)s ELSE %(expressions)s END"
    )
    output_field = TextField()


class UtcIso(Func):
    """A timestamp as ISO 8601 in UTC, e.g. 2026-11-23T14:05:09Z."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    output_field = TextField()


def _text(field: str):
    return Neutralised(Cast(F(field), TextField()))


def _bool(field: str):
    return Case(
        When(**{field: True}, then=Value("true")),
        When(**{field: False}, then=Value("false")),
        default=Value(""),
        output_field=TextField(),
    )


CONVERSATION_COLUMNS = [
    ("id", F("id")),
    ("external_id", _text("external_id")),
    ("bot", _text("bot__slug")),
    ("bot_name", _text("bot__name")),
    ("campaign", _text("campaign__slug")),
    ("customer", _text("customer")),
    ("channel", F("channel")),
    ("status", F("status")),
    ("started_at", UtcIso(F("started_at"))),
    ("ended_at", UtcIso(F("ended_at"))),
    ("last_activity_at", UtcIso(F("last_activity_at"))),
    ("handoff", _bool("handoff")),
    ("csat", F("csat")),
    ("call_outcome", F("call_outcome")),
    ("duration_seconds", F("metrics__duration_seconds")),
    ("messages", F("metrics__total_messages")),
    ("user_messages", F("metrics__user_messages")),
    ("bot_messages", F("metrics__bot_messages")),
    ("avg_response_time_ms", F("metrics__avg_response_time_ms")),
    ("p95_response_time_ms", F("metrics__p95_response_time_ms")),
    ("successful_responses", F("metrics__successful_responses")),
    ("failed_responses", F("metrics__failed_responses")),
    ("fallback_responses", F("metrics__fallback_responses")),
    ("kb_hits", F("metrics__kb_hits")),
    ("kb_misses", F("metrics__kb_misses")),
    ("tokens", F("metrics__tokens")),
    ("cost_usd", F("metrics__cost_usd")),
]

MESSAGE_COLUMNS = [
    ("id", F("id")),
    ("conversation_id", F("conversation_id")),
    ("bot", _text("bot__slug")),
    ("created_at", UtcIso(F("created_at"))),
    ("direction", F("direction")),
    ("text", _text("text")),
    ("response_time_ms", F("response_time_ms")),
    ("outcome", F("outcome")),
    ("kb_hit", _bool("kb_hit")),
    ("tokens", F("tokens")),
    ("cost_usd", F("cost_usd")),
]

DAILY_COLUMNS = [
    ("date", Cast(F("date"), TextField())),
    ("bot", _text("bot__slug")),
    *((name, F(name)) for name in DAILY_FIGURES),
]


def _copy_sql(queryset: QuerySet, columns) -> tuple[str, tuple]:
    """COPY of the queryset's rows (its filters and order) as the named columns, with a header."""
    inner = queryset.values(**{f"c{i}": expr for i, (_name, expr) in enumerate(columns)})
    sql, params = inner.query.sql_with_params()
    outer = ", ".join(f'c{i} AS "{name}"' for i, (name, _expr) in enumerate(columns))
    # Our own column names around Django's SQL; every value is a parameter.
    copy = f"COPY (SELECT {outer} FROM ({sql}) AS rows) TO STDOUT WITH (FORMAT csv, HEADER)"  # noqa: S608
    return copy, params


def csv_chunks(queryset: QuerySet, columns) -> Iterator[bytes]:
    """The CSV of the queryset, header first, in chunks of about 64 KB as PostgreSQL sends them.

    A queryset Django knows to be empty (`pk__in=[]`) has no SQL at all: its CSV is the header
    alone, built here at once rather than failing inside a response that has already started.
    """
    try:
        sql, params = _copy_sql(queryset, columns)
    except EmptyResultSet:
        return iter([",".join(name for name, _expr in columns).encode() + b"\n"])
    return _copy_chunks(sql, params)


def _copy_chunks(sql: str, params) -> Iterator[bytes]:
    buffer, size = [], 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql, params) as copy:
        for data in copy:
            buffer.append(bytes(data))
            size += len(data)
            if size >= CHUNK_BYTES:
                yield b"".join(buffer)
                buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def conversations_csv(queryset: QuerySet) -> Iterator[bytes]:
    """One row per conversation of the (already filtered and ordered) queryset."""
    return csv_chunks(queryset, CONVERSATION_COLUMNS)


def messages_csv(*, org: Organization, conversations: QuerySet) -> Iterator[bytes]:
    """Every message of the given conversations, by conversation and time."""
    messages = (
        Message.objects.for_org(org)
        .filter(conversation_id__in=conversations.order_by().values("id"))
        .order_by("conversation_id", "created_at", "id")
    )
    return csv_chunks(messages, MESSAGE_COLUMNS)


def daily_metrics_csv(
    *, org: Organization, start: date, end: date, bot: Bot | None = None
) -> Iterator[bytes]:
    """Daily bot metrics from `start` through `end` (org-local dates), per day and bot."""
    rows = BotDailyMetrics.objects.for_org(org).filter(date__gte=start, date__lte=end)
    if bot is not None:
        rows = rows.filter(bot_id=bot.pk)
    return csv_chunks(rows.order_by("date", "bot__slug"), DAILY_COLUMNS)


def count_capped(queryset: QuerySet, cap: int) -> int:
    """The number of rows, counting no further than `cap` (cheap on a huge range)."""
    return queryset.order_by()[:cap].count()


def export_filename(org: Organization, kind: str, range_slug: str) -> str:
    return f"botflow-{org.slug}-{kind}-{range_slug}.csv"


class ChunkStreamingResponse(StreamingHttpResponse):
    """Streams a sync iterator under ASGI one chunk at a time (Django would buffer it whole)."""

    interrupted = b""  # what ends a stream that failed after its status line was sent

    async def __aiter__(self):
        iterator = iter(self.streaming_content)
        sentinel = object()
        while True:
            try:
                part = await sync_to_async(next, thread_sensitive=True)(iterator, sentinel)
            except Exception:
                # The status line is gone: the best left is to say so in the body, give the
                # database connection back and end the response (an exception raised here would
                # leave the response open and the connection checked out for good).
                logger.exception("%s failed while streaming", type(self).__name__)
                await sync_to_async(_release, thread_sensitive=True)(iterator)
                if self.interrupted:
                    yield self.interrupted
                return
            if part is sentinel:
                return
            yield part


class CsvStreamingResponse(ChunkStreamingResponse):
    """A CSV download, streamed."""

    interrupted = INTERRUPTED_LINE

    def __init__(self, chunks: Iterator[bytes], *, filename: str):
        super().__init__(chunks, content_type="text/csv; charset=utf-8")
        self["Content-Disposition"] = f'attachment; filename="{filename}"'
        self["Cache-Control"] = "no-store"
        self["X-Accel-Buffering"] = "no"

    @property
    def filename(self) -> str:
        return self["Content-Disposition"].split('"')[1]


class JsonStreamingResponse(ChunkStreamingResponse):
    """A JSON document written piece by piece (a failure midway leaves it unparseable)."""

    def __init__(self, chunks: Iterator[bytes]):
        super().__init__(chunks, content_type="application/json")
        self["Cache-Control"] = "no-store"
        self["X-Accel-Buffering"] = "no"


def _release(iterator) -> None:
    """(In the request's thread.) Close a failed stream and its database connection."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
    if connection.in_atomic_block:
        return  # a caller's transaction (tests): it ends it
    connection.close()  # back to the pool (a broken one is replaced)


# --- large exports as a Celery job ----------------------------------------------------------


@dataclass
class ExportJob:
    id: str
    org_id: int
    kind: str  # "conversations" or "messages"
    query: str  # the explorer's query string
    now: str  # ISO time the filters' relative range is anchored to
    filename: str
    status: str = "queued"  # queued, running, ready, failed
    rows: int | None = None
    error: str = ""
    user_id: int | None = None  # the member who asked for it: the file is theirs (and owners')
    erased_rows: int = 0  # rows taken out of the finished file by customer erasures
    erased_at: str = ""  # ISO time of the last such erasure

    @property
    def path(self) -> Path:
        return Path(settings.EXPORT_DIR) / str(self.org_id) / f"{self.id}.csv"


def _job_key(job_id: str) -> str:
    return f"{settings.LIVE_KEY_PREFIX}:export:{job_id}"


def _job_save(job: ExportJob) -> None:
    get_redis().set(_job_key(job.id), orjson.dumps(asdict(job)), ex=JOB_TTL_SECONDS)


def _job_load(raw: bytes) -> ExportJob:
    """A stored job; fields this version does not know (a newer writer's) are ignored."""
    known = set(ExportJob.__dataclass_fields__)
    return ExportJob(**{k: v for k, v in orjson.loads(raw).items() if k in known})


def export_job_get(*, org: Organization, job_id: str, user=None) -> ExportJob | None:
    """The org's export job with this id, or None (another org's job reads as missing). With
    `user`, only the member who started it or an owner of the org finds it; others get None."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    raw = get_redis().get(_job_key(job_id))
    if raw is None:
        return None
    job = _job_load(raw)
    if job.org_id != org.pk:
        return None
    if user is not None and job.user_id != user.pk and not user_can(user, org, "owners.manage"):
        return None
    return job


def export_job_start(
    *, org: Organization, kind: str, query: str, filename: str, user=None
) -> ExportJob:
    """Queue a large export of the explorer's filtered view; the worker writes the file."""
    job = ExportJob(
        id=str(uuid.uuid4()),
        org_id=org.pk,
        kind=kind,
        query=query,
        now=timezone.now().isoformat(),
        filename=filename,
        user_id=user.pk if user is not None else None,
    )
    _job_save(job)
    # At once, not on commit: the job is in Redis, not in a transaction the worker waits for.
    task_send(EXPORT_BUILD, args=[job.id])
    return job


def export_job_run(*, job_id: str) -> ExportJob | None:
    """Write the job's CSV to its file (atomically: a temporary file, then a rename)."""
    raw = get_redis().get(_job_key(job_id))
    if raw is None:
        return None
    job = _job_load(raw)
    org = Organization.objects.get(pk=job.org_id)
    job.status = "running"
    _job_save(job)
    # Read before the rows are: an erasure committed after this point bumps it (see finish).
    epoch = erasure_epoch(org.pk)
    try:
        filters = conversation_filter(
            QueryDict(job.query), org=org, now=datetime.fromisoformat(job.now)
        )
        if not filters.is_valid():
            raise ValueError(f"invalid filters: {dict(filters.errors)}")
        if job.kind == "messages":
            chunks = messages_csv(org=org, conversations=filters.qs)
        else:
            chunks = conversations_csv(filters.qs)
        job.path.parent.mkdir(parents=True, exist_ok=True)
        partial = job.path.with_suffix(".part")
        lines = 0
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                lines += chunk.count(b"\n")
        with export_files_lock(org.pk):
            if erasure_epoch(org.pk) != epoch:
                # A customer was erased while the rows were read: they may be in this file.
                partial.unlink(missing_ok=True)
                job.status, job.error = "failed", ERASED_WHILE_WRITING
                _job_save(job)
                return job
            os.replace(partial, job.path)
            job.status, job.rows = "ready", None if job.kind == "messages" else max(lines - 1, 0)
            _job_save(job)
        return job
    except Exception as exc:  # the user sees that it failed; the worker log has the traceback
        job.status, job.error = "failed", str(exc)[:500]
        _job_save(job)
        raise


# --- customer erasure: finished files lose the customer's rows ---------------------------------
#
# A finished export is rewritten without the erased customer's rows (not deleted: the rest of
# it is still the member's), and its job says how many rows went and when. An export still being
# written when an erasure commits is discarded when it finishes (its rows were read before the
# erasure): the erasure bumps the org's erasure epoch, which the job read before its rows, and
# both sides take the org's export-files lock, so a file is either finished before the erasure
# scans the folder or sees the new epoch. Files are untouched unless a row matches.


def erasure_epoch(org_id: int) -> int:
    raw = get_redis().get(org_key(org_id, "erasures"))
    return int(raw) if raw else 0


def export_files_lock(org_id: int):
    """One writer at a time among erasures and finishing exports of the org."""
    return get_redis().lock(org_key(org_id, "export-files"), timeout=600, blocking_timeout=600)


def _csv_forms(customers: list[str]) -> set[str]:
    """Each identifier as a customer cell holds it (formula-like text carries a leading ')."""
    forms = set(customers)
    forms.update(f"'{c}" for c in customers if c.startswith(FORMULA_STARTS))
    return forms


def _trie(words) -> str:
    """A regex alternation of `words` as a trie (one step per character, however many words)."""
    root: dict = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict) -> str:
        branches = [re.escape(ch) + render(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return render(root)


def _quotes(data, start: int, end: int) -> int:
    return data[start:end].count(b'"')


def _record_around(data, boundary: int, at: int) -> tuple[int, int]:
    """(start, end) of the CSV record holding byte `at`, given a record boundary before it:
    a record ends at the first newline after which the quotes seen pair up (RFC 4180 quotes
    come in pairs inside a quoted cell, so a newline at odd parity is inside one)."""
    start = data.rfind(b"\n", boundary, at)
    while start != -1 and _quotes(data, boundary, start) % 2:
        start = data.rfind(b"\n", boundary, start)
    start = boundary if start == -1 else start + 1
    end = data.find(b"\n", at)
    while end != -1 and _quotes(data, start, end + 1) % 2:
        end = data.find(b"\n", end + 1)
    return start, len(data) if end == -1 else end + 1


def _rewrite_without(
    path: Path,
    *,
    column: int,
    doomed: set[str],
    needle: re.Pattern,
    spare: tuple[int, set[str]] | None = None,
) -> int:
    """Rewrite the file without the records whose cell `column` is in `doomed` (unless their
    cell `spare[0]` is in `spare[1]`); rows removed.
    Bytes are searched for `needle` and only the records it hits are parsed; everything between
    them is copied as it is, so a file the size of a big export is rewritten at disk speed."""
    removed = 0
    if path.stat().st_size == 0:
        return 0
    partial = path.with_suffix(".erasing")
    with (
        open(path, "rb") as f,
        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data,
        open(partial, "wb") as out,
    ):
        boundary = data.find(b"\n") + 1  # after the header
        kept_from = 0
        # From the newline before a record: the conversation needle starts with it.
        hit = needle.search(data, boundary - 1) if boundary else None
        while hit is not None:
            start, end = _record_around(data, boundary, hit.end() - 1)
            cells = next(csv.reader([data[start:end].decode("utf-8")]), [])
            spared = spare is not None and len(cells) > spare[0] and cells[spare[0]] in spare[1]
            if len(cells) > column and cells[column] in doomed and not spared:
                out.write(data[kept_from:start])
                kept_from = end
                removed += 1
            boundary = end
            hit = needle.search(data, end - 1)
        out.write(data[kept_from:])
    if removed:
        os.replace(partial, path)
    else:
        partial.unlink()
    return removed


def _header_columns(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.reader([f.readline()]), [])


def export_files_forget(
    *,
    org: Organization,
    customers: list[str],
    conversation_ids: list[int],
    keep_conversation_ids: list[int] = (),
) -> tuple[int, int]:
    """Take the customer's rows out of the org's finished export files: conversation rows by
    customer (but not those of `keep_conversation_ids`, the conversations an erasure kept as
    received after its cut-off), message rows by conversation. Returns (files changed, rows
    removed)."""
    folder = Path(settings.EXPORT_DIR) / str(org.pk)
    forms = _csv_forms(customers)
    ids = {str(i) for i in conversation_ids}
    kept = {str(i) for i in keep_conversation_ids}
    # The shortest forms only: the others hold them ('+27… holds +27…).
    shortest = {f for f in forms if not any(o != f and o in f for o in forms)}
    by_customer = re.compile(_trie(f.replace('"', '""') for f in shortest).encode())
    by_conversation = re.compile(rb"\n[0-9]+,(?:" + _trie(ids).encode() + rb"),") if ids else None
    r, lock, locked = get_redis(), export_files_lock(org.pk), False
    try:
        locked = lock.acquire()
        r.incr(org_key(org.pk, "erasures"))
    except redis.RedisError as exc:
        # The files are on disk: they are cleaned all the same; only the coordination with
        # exports being written (and their job records) waits for Redis.
        logger.warning("erasure in org %s cleans exports without Redis (%s)", org.pk, exc)
        r = None
    files = rows = 0
    try:
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            header = _header_columns(path)
            spare = None
            if "customer" in header:
                column, doomed, pattern = header.index("customer"), forms, by_customer
                if kept and "id" in header:
                    spare = (header.index("id"), kept)
            elif "conversation_id" in header and by_conversation is not None:
                column, doomed, pattern = header.index("conversation_id"), ids, by_conversation
            else:
                continue
            removed = _rewrite_without(
                path, column=column, doomed=doomed, needle=pattern, spare=spare
            )
            if not removed:
                continue
            files, rows = files + 1, rows + removed
            if r is not None:
                _job_note_erasure(r, path.stem, removed, forms)
    finally:
        if locked:
            with contextlib.suppress(redis.RedisError, LockError):  # it expires by itself
                lock.release()
    return files, rows


def _job_note_erasure(r, job_id: str, removed: int, forms: set[str]) -> None:
    """The job of a rewritten file says how many rows went and when (its page shows it)."""
    raw = r.get(_job_key(job_id))
    if raw is None:
        return  # a file whose job has expired
    job = _job_load(raw)
    job.erased_rows += removed
    job.erased_at = timezone.now().isoformat()
    if job.rows is not None:
        job.rows = max(job.rows - removed, 0)
    if _names_customer(job.query, forms):
        job.query = ""  # the explorer filter that found them names them too
    r.set(_job_key(job.id), orjson.dumps(asdict(job)), keepttl=True)


def _names_customer(query: str, forms: set[str]) -> bool:
    values = [v.casefold() for vs in QueryDict(query).lists() for v in vs[1]]
    return any(f.casefold() in v for f in forms for v in values)
