"""The conversation filters: one FilterSet behind the explorer page, its CSV export and the API.

Every filter lives in the query string, so a filtered view is a link. The time range is a preset
(`period=24h|7d|30d`) or a custom `start`/`end` (a date, which means the whole day in the org's
time zone, or an ISO 8601 date-time); a range reaching past the retention limit is clamped and
says so in `form.notices`. `q` is PostgreSQL full-text search over message text, through the GIN
index of migration 0003 (the expression below must stay identical to the index's).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.core.validators import slug_re
from django.db import connection, transaction
from django.db.models import BooleanField, Exists, F, OuterRef, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django_filters.fields import ModelChoiceField
from drf_spectacular.utils import extend_schema_field

from analytics.models import (
    Bot,
    CallOutcome,
    Campaign,
    Channel,
    Conversation,
    Message,
    Organization,
)

# Unqualified: Django aliases the message table inside the IN (...) subquery.
MESSAGE_TSVECTOR = "to_tsvector('english'::regconfig, text)"
SEARCH_MAX_CHARS = 200
# Raw tsquery operators: websearch syntax (words, "phrases", OR, -word) is what we accept.
SEARCH_FORBIDDEN = set("&|!<>():*\\")

PERIOD_CHOICES = [("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days")]
PERIOD_DELTAS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_PERIOD = "7d"

# Sort keys of the explorer and the ORM ordering behind each (ties broken by newest id).
SORTS = {
    "started": ("Start time", "started_at"),
    "duration": ("Duration", "metrics__duration_seconds"),
    "messages": ("Messages", "metrics__total_messages"),
    "response": ("Avg response time", "metrics__avg_response_time_ms"),
    "cost": ("Cost", "metrics__cost_usd"),
}
SORT_CHOICES = [
    (f"{sign}{key}", f"{label} ({'newest/highest' if sign else 'oldest/lowest'} first)")
    for key, (label, _field) in SORTS.items()
    for sign in ("-", "")
]
DEFAULT_SORT = "-started"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime  # exclusive
    label: str

    @property
    def slug(self) -> str:
        """For file names: 20261101-20261123."""
        last = self.end - timedelta(microseconds=1)
        return f"{self.start:%Y%m%d}-{last:%Y%m%d}"


def _parse_moment(raw: str, org: Organization, *, is_end: bool) -> datetime | None:
    """A date (whole day, org time zone) or an ISO 8601 date-time (no offset: org time zone)."""
    raw = raw.strip()
    if len(raw) == 10:
        try:
            day = parse_date(raw)
        except ValueError:
            return None
        if day is None:
            return None
        if is_end and day == date.max:  # through the last day there is
            return datetime.max.replace(tzinfo=org.tz)
        return datetime.combine(day + timedelta(days=int(is_end)), time.min, tzinfo=org.tz)
    try:
        moment = parse_datetime(raw.replace(" ", "+") if "T" in raw else raw)
    except ValueError:
        return None
    if moment is None:
        return None
    if timezone.is_naive(moment):
        return moment.replace(tzinfo=org.tz)
    return _in_zone(moment, org)


def _in_zone(moment: datetime, org: Organization) -> datetime:
    """The same instant in the org's time zone: PostgreSQL refuses offsets beyond 15:59 that
    RFC 3339 allows (up to 23:59). An instant past the years Python holds is clamped to them."""
    try:
        return moment.astimezone(org.tz)
    except OverflowError:  # 0001-01-01T00:00+05:00 or 9999-12-31T23:00-05:00
        edge = datetime.max if moment.year == datetime.max.year else datetime.min
        return edge.replace(tzinfo=org.tz)


class ConversationFilterForm(forms.Form):
    """Cross-field checks of the filters: the range, the page."""

    def __init__(self, *args, org: Organization, now: datetime | None = None, **kwargs):
        self.org = org
        self.now = now or timezone.now()
        self.notices: list[str] = []
        self.time_range: TimeRange | None = None
        super().__init__(*args, **kwargs)

    def clean(self):
        data = super().clean()
        try:
            self._clean_range(data)
        except OverflowError:  # a date near year 1 or 9999
            self.add_error("start", "The range is outside the dates we can handle.")
        return data

    def _clean_range(self, data) -> None:
        raw_start, raw_end = self.data.get("start") or "", self.data.get("end") or ""
        period = data.get("period") or DEFAULT_PERIOD
        if not raw_start and not raw_end:
            start = self.now - PERIOD_DELTAS.get(period, PERIOD_DELTAS[DEFAULT_PERIOD])
            end = self.now
            label = dict(PERIOD_CHOICES).get(period, "Last 7 days")
        else:
            start = _parse_moment(raw_start, self.org, is_end=False) if raw_start else None
            end = _parse_moment(raw_end, self.org, is_end=True) if raw_end else self.now
            if raw_start and start is None:
                self.add_error("start", "Enter a valid date (YYYY-MM-DD) or ISO 8601 date-time.")
            if raw_end and end is None:
                self.add_error("end", "Enter a valid date (YYYY-MM-DD) or ISO 8601 date-time.")
            if (raw_start and start is None) or (raw_end and end is None):
                return
            if start is None:
                try:
                    start = end - PERIOD_DELTAS[DEFAULT_PERIOD]
                except OverflowError:  # an end in the first days of year 1: long past retention
                    start = datetime.min.replace(tzinfo=end.tzinfo)
            if end <= start:
                self.add_error("end", "The end must be after the start.")
                return
            label = "Custom range"
        days = self.org.raw_retention_days
        oldest = self.now - timedelta(days=days)
        if start < oldest:
            start = oldest
            self.notices.append(
                f"The range starts before the retention limit of {days} days (data is available"
                f" from {start.astimezone(self.org.tz):%Y-%m-%d}); it was clamped to start then."
            )
            if end <= start:
                self.add_error("end", "The whole range lies before the retention limit.")
                return
        self.time_range = TimeRange(start, end, label)


def _bots(request):
    return Bot.objects.for_org(request.org) if request is not None else Bot.objects.none()


def _campaigns(request):
    if request is None:
        return Campaign.objects.none()
    return Campaign.objects.for_org(request.org)


class SlugField(ModelChoiceField):
    """A slug among the queryset's: a malformed one is refused before any lookup."""

    def __init__(self, *args, noun: str, **kwargs):
        self.noun = noun
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        if value not in self.empty_values and not slug_re.match(str(value)):
            raise forms.ValidationError(
                f"Enter a valid {self.noun} slug: letters, digits, - and _.", code="invalid"
            )
        return super().to_python(value)


class SlugChoiceFilter(django_filters.ModelChoiceFilter):
    """A bot or campaign by slug, among the org's only: a foreign slug reads as unknown
    (error code `invalid_choice`; the API answers it 404, as it does the slug in a path)."""

    field_class = SlugField

    def __init__(self, *args, noun: str, **kwargs):
        kwargs.setdefault("to_field_name", "slug")
        kwargs.setdefault(
            "error_messages",
            {"invalid_choice": f"Unknown {noun}: %(value)s (not in this organization)."},
        )
        super().__init__(*args, noun=noun, **kwargs)


# What the API's OpenAPI schema states about the filters (drf-spectacular reads neither a
# filter's max_length nor its validators, nor that start/end are dates): each is documented from
# the same constants the filter checks, so a schema-valid request is one the filter accepts.
MOMENT_MAX_CHARS = 40
SLUG_SCHEMA = {
    "type": "string",
    "pattern": "^[-a-zA-Z0-9_]+$",
    "maxLength": Bot._meta.get_field("slug").max_length,
}
_SEARCH_CLASS = "".join("\\" + c if c in "\\]^-" else c for c in sorted(SEARCH_FORBIDDEN))


MOMENT_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time", "maxLength": MOMENT_MAX_CHARS},
    ]
}
RANGE_RULES = (
    " A date-time without offset is read in the org time zone. A start before the retention limit"
    " is moved to it (the answer says so); an end at or before the start, or a whole range before"
    " the retention limit, is a 400 naming `end`."
)


def _documented(schema: dict, filter_: django_filters.Filter, *, rules: str = ""):
    """The filter with its query parameter's schema; the description is its help_text."""
    description = filter_.extra["help_text"] + rules
    return extend_schema_field({**schema, "description": description})(filter_)


class ConversationFilter(django_filters.FilterSet):
    period = django_filters.ChoiceFilter(
        choices=PERIOD_CHOICES,
        method="filter_noop",
        empty_label=None,
        help_text="Preset range ending now; ignored when start or end is given. Default 7d.",
    )
    start = _documented(
        MOMENT_SCHEMA,
        django_filters.CharFilter(
            method="filter_noop",
            max_length=MOMENT_MAX_CHARS,
            help_text="Range start: YYYY-MM-DD (that day, org time zone) or an ISO 8601 date-time.",
        ),
        rules=RANGE_RULES,
    )
    end = _documented(
        MOMENT_SCHEMA,
        django_filters.CharFilter(
            method="filter_noop",
            max_length=MOMENT_MAX_CHARS,
            help_text="Range end: YYYY-MM-DD (through that day) or an ISO 8601 date-time (exclusive).",
        ),
        rules=RANGE_RULES,
    )
    bot = _documented(
        SLUG_SCHEMA,
        SlugChoiceFilter(queryset=_bots, noun="bot", help_text="Bot slug."),
        rules=" An unknown one (or another org's) is a 404 naming `bot`.",
    )
    campaign = _documented(
        SLUG_SCHEMA,
        SlugChoiceFilter(queryset=_campaigns, noun="campaign", help_text="Campaign slug."),
        rules=" An unknown one (or another org's) is a 404 naming `campaign`.",
    )
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    status = django_filters.ChoiceFilter(choices=Conversation.Status.choices)
    handoff = django_filters.BooleanFilter(help_text="true: handed to a human; false: not.")
    csat = django_filters.ChoiceFilter(
        choices=[(str(n), f"{n} ★") for n in range(1, 6)], help_text="Exact CSAT score (1-5)."
    )
    call_outcome = django_filters.ChoiceFilter(choices=CallOutcome.choices)
    customer = _documented(
        {"type": "string", "maxLength": 200},
        django_filters.CharFilter(
            lookup_expr="icontains", max_length=200, help_text="Part of the customer's name or id."
        ),
    )
    q = _documented(
        {
            "type": "string",
            "maxLength": SEARCH_MAX_CHARS,
            "pattern": f"^[^\\x00{_SEARCH_CLASS}]*$",
        },
        django_filters.CharFilter(
            method="filter_search",
            max_length=SEARCH_MAX_CHARS,
            help_text='Full-text search over message text: words, "a phrase", OR, -word.',
        ),
    )
    sort = django_filters.ChoiceFilter(
        choices=SORT_CHOICES,
        method="filter_noop",
        empty_label=None,
        help_text="Order of the rows; default -started (newest first).",
    )

    class Meta:
        model = Conversation
        fields: list[str] = []
        form = ConversationFilterForm

    def __init__(self, data=None, queryset=None, *, request=None, org=None, now=None, **kwargs):
        self.org = org or getattr(request, "org", None)
        if self.org is None:
            raise ValueError("ConversationFilter needs the organization")
        self.now = now
        if request is not None and getattr(request, "org", None) is None:
            request.org = self.org
        if queryset is None:
            queryset = Conversation.objects.for_org(self.org)
        super().__init__(
            data=data, queryset=queryset, request=request or _OrgOnly(self.org), **kwargs
        )
        self.form.fields["q"].error_messages["max_length"] = (
            f"Search is at most {SEARCH_MAX_CHARS} characters (got %(show_value)d)."
        )

    @property
    def form(self):
        if not hasattr(self, "_form"):
            Form = self.get_form_class()
            self._form = Form(
                self.data if self.is_bound else None,
                prefix=self.form_prefix,
                org=self.org,
                now=self.now,
            )
        return self._form

    def filter_noop(self, queryset, name, value):
        return queryset

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        hits = Message.objects.for_org(self.org).filter(
            RawSQL(  # noqa: S611 - constant SQL, the search string is a parameter
                f"{MESSAGE_TSVECTOR} @@ websearch_to_tsquery('english'::regconfig, %s)",
                [value],
                output_field=BooleanField(),
            )
        )
        tr = self.form.time_range
        if tr is not None:
            # A conversation's messages come after its start and never from the future: the
            # bounds let PostgreSQL read only those months' partitions of the message table.
            hits = hits.filter(
                created_at__gte=tr.start, created_at__lt=self.form.now + timedelta(days=1)
            )
        # Two plans, each fast where the other is slow. A rare term (or words that never meet):
        # the GIN index lists its few conversations. A common one: walk the newest
        # conversations of the range and probe each one's messages (a page fills at once, where
        # collecting every GIN hit would take seconds). The planner's estimate of the hits picks.
        if estimated_rows(hits) <= RARE_SEARCH_HITS:
            ids = _conversations_of(hits, RARE_IDS + 1)
            if len(ids) <= RARE_IDS:
                return queryset.filter(pk__in=ids)
        # created_at >= the conversation's start: each probe reads only the months from it on.
        probe = hits.filter(conversation_id=OuterRef("pk"), created_at__gte=OuterRef("started_at"))
        return queryset.filter(Exists(probe))

    @property
    def time_range(self) -> TimeRange | None:
        return self.form.time_range if self.is_valid() else None

    @property
    def notices(self) -> list[str]:
        return self.form.notices

    @property
    def sort_key(self) -> str:
        return (self.form.cleaned_data.get("sort") if self.is_valid() else None) or DEFAULT_SORT

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        tr = self.form.time_range
        if tr is None:
            return queryset.none()
        queryset = queryset.filter(started_at__gte=tr.start, started_at__lt=tr.end)
        queryset = super().filter_queryset(queryset)
        return queryset.order_by(*ordering_for(self.sort_key))


@contextlib.contextmanager
def serial_plans():
    """Run the explorer's page and count queries without parallel workers. They read a page, or
    count up to a cap, by walking an index and stopping early; two workers that each walk their
    own share cost more to start than the whole walk. Since the message table is partitioned the
    planner prices a search's per-conversation probe higher and reaches for them: 78 ms instead
    of 8 ms for the first page of a common term on 10M messages (EXPLAIN ANALYZE). The CSV
    exports, which read everything, keep their parallel plans."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        yield


RARE_SEARCH_HITS = 150_000  # estimated matching messages up to which the GIN index lists them
RARE_IDS = 5_000  # conversations a rare search may list; more, and it walks the range instead


def estimated_rows(queryset: QuerySet) -> float:
    """The planner's estimate of a query's rows (EXPLAIN, nothing is run)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return float(plan[0]["Plan"]["Plan Rows"])


def _conversations_of(hits: QuerySet, limit: int) -> list[int]:
    """Up to `limit` conversations with a hit, all hits collected first: with a LIMIT on the
    query itself the planner may walk an index row by row instead of asking the GIN index."""
    sql, params = hits.values("conversation_id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH hits AS MATERIALIZED ({sql}) SELECT DISTINCT conversation_id FROM hits LIMIT %s",  # noqa: S608
            [*params, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def clean_search(value: str) -> str | None:
    """The error message for a search string we refuse, or None."""
    bad = sorted(SEARCH_FORBIDDEN & set(value))
    if bad:
        return (
            'Search takes words, "quoted phrases", OR and -word to exclude; remove '
            + " ".join(bad)
            + "."
        )
    return None


def ordering_for(sort_key: str) -> list:
    descending = sort_key.startswith("-")
    _label, field = SORTS[sort_key.lstrip("-")]
    if "__" not in field:
        # A column that is never NULL: a plain order, which the (organization, started_at DESC)
        # index serves as it is (with NULLS LAST the planner sorted every row of the range).
        return [f"-{field}", "-id"] if descending else [field, "id"]
    # Metrics may be missing (a conversation not measured yet): those rows come last.
    expr = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    return [expr, "-id" if descending else "id"]


class _OrgOnly:
    """Stands in for a request where the filters are used without one (exports, jobs)."""

    def __init__(self, org: Organization):
        self.org = org
        self.user = None


# Search strings with raw tsquery operators are refused with a field error, not a 500.
def _validate_search(value: str) -> None:
    message = clean_search(value)
    if message:
        raise forms.ValidationError(message)


ConversationFilter.base_filters["q"].extra["validators"] = [_validate_search]


def conversation_filter(
    data, *, org: Organization, request=None, now: datetime | None = None
) -> ConversationFilter:
    """The bound filter set for `data` (a QueryDict) in `org`."""
    return ConversationFilter(data, request=request, org=org, now=now)
