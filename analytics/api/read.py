"""The read API: every figure the pages show, org-scoped exactly like them.

A request is authenticated by a `read`-scoped API key (its org) or a signed-in session (the org
named by `?org=<slug>`, or the member's only org); `ReadApi.initial` resolves the org once and
every query goes through `.for_org(self.org)`. Another org's id or slug is a 404.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import datetime, time, timedelta

import redis
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, connection
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, permissions, renderers
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api import read_serializers as s
from analytics.api.auth import ApiKeyAuthentication, session_org
from analytics.filters import ConversationFilter, serial_plans
from analytics.models import ApiKey, Bot, Campaign, Conversation, Message
from analytics.redis import redis_ping
from analytics.selectors import (
    PERIOD_LENGTHS,
    bot_period_summaries,
    bot_period_summary,
    campaign_period_summary,
    ingest_rate_per_minute,
    live_snapshot,
    message_volume_series,
    period_get,
    response_time_series,
)
from analytics.services.audit import audit_request, export_details
from analytics.services.export import CsvStreamingResponse, conversations_csv, export_filename

TRANSCRIPT_LIMIT = 2_000


class CsvRenderer(renderers.BaseRenderer):
    """`Accept: text/csv` or `?format=csv` on list endpoints (the views stream the body)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        rows = data if isinstance(data, list) else [data]
        out = io.StringIO()
        if rows and isinstance(rows[0], dict):
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue().encode()


class ReadAccess(permissions.BasePermission):
    """A `read`-scoped API key, or a signed-in user (membership is checked with the org)."""

    def has_permission(self, request, view):
        if isinstance(request.auth, ApiKey):
            if not request.auth.has_scope("read"):
                raise exceptions.PermissionDenied("This API key lacks the 'read' scope.")
            return True
        if request.user is not None and request.user.is_authenticated:
            return True
        raise exceptions.NotAuthenticated("An API key with the 'read' scope is required.")


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "analytics.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key of your org."}


ORG_PARAM = OpenApiParameter(
    "org",
    str,
    description="With a session only: the org's slug (default: your only org).",
    required=False,
)
ERRORS = {
    401: OpenApiResponse(s.ErrorSerializer, description="No or an unknown API key"),
    403: OpenApiResponse(s.ErrorSerializer, description="A key without the read scope"),
    404: OpenApiResponse(s.ErrorSerializer, description="Not found in your organization"),
}
BAD = {400: OpenApiResponse(OpenApiTypes.OBJECT, description="Field errors: {field: [message]}")}


class ReadApi(APIView):
    """Base of every read endpoint: authentication, the read permission and the org."""

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [ReadAccess]
    renderer_classes = [renderers.JSONRenderer]
    org = None
    #: what a signed-in user's role must allow (analytics/roles.py); a CSV answer is an export
    session_perm = "org.view"

    def initial(self, request, *args, **kwargs):
        # `?period=` or `?format=` with nothing after it is no value the schema allows (every
        # parameter is an enum, a date, a number or a non-empty string): a 400 naming it, not
        # a silent default.
        empty = sorted(name for name, value in request.query_params.items() if value == "")
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        if empty and hasattr(self, request.method.lower()):  # an unknown method stays a 405
            raise exceptions.ValidationError({name: ["Must not be empty."] for name in empty})
        self.org = self._resolve_org(request)
        request.org = self.org

    def finalize_response(self, request, response, *args, **kwargs):
        # Errors are JSON ({field: [message]} or {detail}), even under ?format=csv.
        if response.status_code >= 400 and hasattr(request, "accepted_renderer"):
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def perform_content_negotiation(self, request, force=False):
        # DRF answers an unknown ?format= with a 404; it is a bad parameter value (the schema's
        # enum), so a 400 naming it.
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            if force:
                raise
            formats = sorted(r.format for r in self.get_renderers())
            raise exceptions.ValidationError(
                {"format": [f"Must be one of: {', '.join(formats)}."]}
            ) from None

    def _resolve_org(self, request):
        if isinstance(request.auth, ApiKey):
            return request.auth.organization
        return session_org(request, self.required_session_perm())

    def required_session_perm(self) -> str:
        return "conversations.export" if self.wants_csv() else self.session_perm

    def query(self, serializer_class):
        serializer = serializer_class(data=self.request.query_params, context={"org": self.org})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def wants_csv(self) -> bool:
        return getattr(self.request.accepted_renderer, "format", "") == "csv"


def _figure(figure) -> dict:
    return {"value": figure.value, "previous": figure.previous, "change_percent": figure.change}


class RealtimeApi(ReadApi):
    @extend_schema(
        operation_id="analytics_realtime",
        summary="Live figures: last 60 minutes against the 60 before",
        parameters=[ORG_PARAM],
        responses={200: s.RealtimeSerializer, 503: s.ErrorSerializer, **ERRORS},
    )
    def get(self, request):
        try:
            snapshot = live_snapshot(org=self.org)
        except redis.RedisError:
            return Response({"detail": "Live data is unavailable; retry shortly."}, status=503)
        data = {
            field.name: (
                _figure(getattr(snapshot, field.name))
                if field.name != "active_now"
                else snapshot.active_now
            )
            for field in dataclasses.fields(snapshot)
        }
        return Response(data)


def _series(view, selector, point_serializer):
    q = view.query(s.PeriodBotQuery)
    bot = q.get("bot")
    period = period_get(q["period"])
    kwargs = {"org": view.org, "period": period, "bots": [bot] if bot else None}
    try:
        points = selector(**kwargs)
    except redis.RedisError:
        points = selector(**kwargs, live=False)
    return Response(
        {
            "period": period.key,
            "bot": bot.slug if bot else None,
            "points": point_serializer([dataclasses.asdict(p) for p in points], many=True).data,
        }
    )


class ResponseTimesApi(ReadApi):
    @extend_schema(
        operation_id="analytics_response_times",
        summary="Avg, p50, p95, p99 response time per bucket (hourly rollups + live minutes)",
        parameters=[s.PeriodBotQuery, ORG_PARAM],
        responses={200: s.ResponseTimesSerializer, **BAD, **ERRORS},
    )
    def get(self, request):
        return _series(self, response_time_series, s.ResponseTimePointSerializer)


class MessageVolumeApi(ReadApi):
    @extend_schema(
        operation_id="analytics_message_volume",
        summary="Inbound and outbound messages per bucket",
        parameters=[s.PeriodBotQuery, ORG_PARAM],
        responses={200: s.MessageVolumeSerializer, **BAD, **ERRORS},
    )
    def get(self, request):
        return _series(self, message_volume_series, s.VolumePointSerializer)


class BotListApi(ReadApi):
    renderer_classes = [renderers.JSONRenderer, CsvRenderer]

    @extend_schema(
        operation_id="bots_list",
        summary="The org's bots (CSV with Accept: text/csv or ?format=csv)",
        parameters=[ORG_PARAM],
        responses={
            (200, "application/json"): s.BotSerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
            **ERRORS,
        },
    )
    def get(self, request):
        bots = Bot.objects.for_org(self.org).order_by("name")
        return Response(s.BotSerializer(bots, many=True).data)


def _change(current, previous) -> float | None:
    if current is None or not previous:
        return None
    return 100.0 * (current - previous) / previous


class BotPerformanceApi(ReadApi):
    @extend_schema(
        operation_id="bots_performance",
        summary="A bot's figures over a date range and the same number of days before",
        parameters=[s.DateRangeQuery, ORG_PARAM],
        responses={200: s.BotPerformanceSerializer, **BAD, **ERRORS},
    )
    def get(self, request, slug):
        bot = get_object_or_404(Bot.objects.for_org(self.org), slug=slug)
        q = self.query(s.DateRangeQuery)
        start = datetime.combine(q["start_date"], time.min, tzinfo=self.org.tz)
        end = datetime.combine(q["end_date"] + timedelta(days=1), time.min, tzinfo=self.org.tz)
        length = end - start
        previous, current = bot_period_summaries(
            org=self.org, bots=[bot], ranges=[(start - length, start), (start, end)]
        )
        cur, prev = dataclasses.asdict(current), dataclasses.asdict(previous)
        changes = {
            k: _change(v, prev[k])
            for k, v in cur.items()
            if k not in ("start", "end") and isinstance(v, int | float | type(None))
        }
        return Response(
            s.BotPerformanceSerializer(
                {
                    "bot": bot.slug,
                    "start_date": q["start_date"],
                    "end_date": q["end_date"],
                    "notices": q["notices"],
                    "current": cur,
                    "previous": prev,
                    "change_percent": changes,
                }
            ).data
        )


class BotPercentilesApi(ReadApi):
    @extend_schema(
        operation_id="bots_percentiles",
        summary="A bot's response-time percentiles over the period, overall and per bucket",
        parameters=[s.PeriodQuery, ORG_PARAM],
        responses={200: s.PercentilesSerializer, **BAD, **ERRORS},
    )
    def get(self, request, slug):
        bot = get_object_or_404(Bot.objects.for_org(self.org), slug=slug)
        period = period_get(self.query(s.PeriodQuery)["period"])
        now = timezone.now()
        overall = bot_period_summary(
            org=self.org, bots=[bot], start=now - PERIOD_LENGTHS[period.key], end=now
        )
        try:
            points = response_time_series(org=self.org, period=period, bots=[bot], now=now)
        except redis.RedisError:
            points = response_time_series(
                org=self.org, period=period, bots=[bot], now=now, live=False
            )
        return Response(
            {
                "bot": bot.slug,
                "period": period.key,
                "avg_ms": overall.avg_ms,
                "p50_ms": overall.p50_ms,
                "p95_ms": overall.p95_ms,
                "p99_ms": overall.p99_ms,
                "points": s.ResponseTimePointSerializer(
                    [dataclasses.asdict(p) for p in points], many=True
                ).data,
            }
        )


class CampaignListApi(ReadApi):
    renderer_classes = [renderers.JSONRenderer, CsvRenderer]

    @extend_schema(
        operation_id="campaigns_list",
        summary="The org's campaigns (CSV with Accept: text/csv or ?format=csv)",
        parameters=[ORG_PARAM],
        responses={
            (200, "application/json"): s.CampaignSerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
            **ERRORS,
        },
    )
    def get(self, request):
        campaigns = Campaign.objects.for_org(self.org).select_related("bot").order_by("name")
        return Response(s.CampaignSerializer(campaigns, many=True).data)


def _campaign_summary(summary) -> dict:
    return {
        **dataclasses.asdict(summary),
        "completed": summary.completed,
        "answer_rate": summary.answer_rate,
        "conversion_rate": summary.conversion_rate,
    }


class CampaignMetricsApi(ReadApi):
    @extend_schema(
        operation_id="campaigns_metrics",
        summary="A campaign's calls and outcomes over a date range and the days before",
        parameters=[s.DateRangeQuery, ORG_PARAM],
        responses={200: s.CampaignMetricsSerializer, **BAD, **ERRORS},
    )
    def get(self, request, slug):
        campaign = get_object_or_404(Campaign.objects.for_org(self.org), slug=slug)
        q = self.query(s.DateRangeQuery)
        start = datetime.combine(q["start_date"], time.min, tzinfo=self.org.tz)
        end = datetime.combine(q["end_date"] + timedelta(days=1), time.min, tzinfo=self.org.tz)
        length = end - start
        current = campaign_period_summary(org=self.org, campaign=campaign, start=start, end=end)
        previous = campaign_period_summary(
            org=self.org, campaign=campaign, start=start - length, end=start
        )
        return Response(
            s.CampaignMetricsSerializer(
                {
                    "campaign": campaign.slug,
                    "start_date": q["start_date"],
                    "end_date": q["end_date"],
                    "notices": q["notices"],
                    "current": _campaign_summary(current),
                    "previous": _campaign_summary(previous),
                }
            ).data
        )


def filter_refusal(filterset) -> exceptions.APIException:
    """Why the API refuses a filter set: an unknown bot or campaign slug names nothing, a 404 as
    for the slug in /bots/<slug>/ (another org's reads the same); any other bad value a 400."""
    errors = filterset.form.errors.get_json_data()
    unknown = {
        name: [error["message"] for error in errors[name]]
        for name in ("bot", "campaign")
        if any(error["code"] == "invalid_choice" for error in errors.get(name, ()))
    }
    if unknown:
        return not_found(unknown)
    return exceptions.ValidationError(filterset.errors)


def not_found(errors: dict[str, list[str]]) -> exceptions.NotFound:
    """A 404 as documented ({detail}) that also names the fields: {detail, field: [message]}."""
    detail = " ".join(message for messages in errors.values() for message in messages)
    return exceptions.NotFound({"detail": detail, **errors})


class OrgFilterBackend(DjangoFilterBackend):
    """django-filter with the view's org (the FilterSet offers only that org's bots/campaigns)."""

    def get_filterset_kwargs(self, request, queryset, view):
        return {**super().get_filterset_kwargs(request, queryset, view), "org": view.org}

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if not filterset.is_valid():
            raise filter_refusal(filterset)
        return filterset.qs


class ConversationCursor(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-started_at", "-id")

    def paginate_queryset(self, queryset, request, view=None):
        # A cursor is opaque to clients: one they made up (bad base64, or a position that is no
        # time) is their error, a 400 naming the parameter, never a 404 or a 500.
        try:
            return super().paginate_queryset(queryset, request, view)
        except (exceptions.NotFound, DjangoValidationError, ValueError, OverflowError, DataError):
            raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from None

    def get_schema_operation_parameters(self, view):
        cursor, page_size = super().get_schema_operation_parameters(view)
        cursor["description"] = (
            "The position of a page, from a `next` or `previous` link (opaque); one the API did"
            " not issue is a 400 naming `cursor`."
        )
        page_size["schema"].update(minimum=1, maximum=self.max_page_size)
        page_size["description"] = f"Rows per page, 1 to {self.max_page_size}; default 50."
        return [cursor, page_size]

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= self.max_page_size):
            raise exceptions.ValidationError(
                {"page_size": [f"Must be an integer from 1 to {self.max_page_size}."]}
            )
        return int(raw)


class ConversationListApi(ReadApi, generics.ListAPIView):
    """Conversations, filtered and searched like the explorer; newest first, cursor pages."""

    renderer_classes = [renderers.JSONRenderer, CsvRenderer]
    session_perm = "conversations.explore"
    serializer_class = s.ConversationSerializer
    filter_backends = [OrgFilterBackend]
    filterset_class = ConversationFilter
    pagination_class = ConversationCursor

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no org
            return Conversation.objects.none()
        return Conversation.objects.for_org(self.org).select_related("bot", "campaign", "metrics")

    @extend_schema(
        operation_id="conversations_list",
        summary="Conversations with the explorer's filters and search (CSV: the whole view)",
        parameters=[ORG_PARAM],
        responses={
            (200, "application/json"): s.ConversationSerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
            **BAD,
            **ERRORS,
        },
    )
    def get(self, request, *args, **kwargs):
        # django-filter reads any other handoff value as "either"; the schema says boolean.
        for value in request.query_params.getlist("handoff"):
            if value not in ("true", "false"):
                raise exceptions.ValidationError({"handoff": ["Must be true or false."]})
        if self.wants_csv():
            filterset = ConversationFilter(request.query_params, request=request, org=self.org)
            if not filterset.is_valid():
                raise filter_refusal(filterset)
            name = export_filename(self.org, "conversations", filterset.time_range.slug)
            audit_request(
                request,
                action="export.downloaded",
                target=name,
                details=export_details(request.query_params, kind="conversations"),
            )
            return CsvStreamingResponse(conversations_csv(filterset.qs), filename=name)
        with serial_plans():  # a page walked by an index (see serial_plans)
            return super().get(request, *args, **kwargs)


class ConversationDetailApi(ReadApi):
    session_perm = "conversations.view"

    @extend_schema(
        operation_id="conversations_retrieve",
        summary="A conversation with its metrics and messages (first 2,000)",
        parameters=[ORG_PARAM, OpenApiParameter("conversation_id", int, OpenApiParameter.PATH)],
        responses={200: s.ConversationDetailSerializer, **ERRORS},
    )
    def get(self, request, conversation_id):
        # Any path segment reaches the view (a JSON 404, never the HTML one); only ints match.
        if not conversation_id.isdigit() or len(conversation_id) > 18:
            raise exceptions.NotFound("No such conversation.")
        conversation = get_object_or_404(
            Conversation.objects.for_org(self.org).select_related("bot", "campaign"),
            pk=int(conversation_id),
        )
        messages = list(
            Message.objects.for_org(self.org)
            .filter(conversation_id=conversation.pk)
            .order_by("created_at", "id")[: TRANSCRIPT_LIMIT + 1]
        )
        conversation.message_list = messages[:TRANSCRIPT_LIMIT]
        conversation.messages_truncated = len(messages) > TRANSCRIPT_LIMIT
        return Response(s.ConversationDetailSerializer(conversation).data)


class SystemHealthApi(ReadApi):
    @extend_schema(
        operation_id="system_health",
        summary="Database and Redis status, messages in the last minute, active conversations",
        parameters=[ORG_PARAM],
        responses={200: s.HealthSerializer, **ERRORS},
    )
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            database = "ok"
        except DatabaseError as exc:
            database = f"error: {exc.__class__.__name__}"
        redis_state = redis_ping()
        rate = active = None
        if redis_state == "ok":
            try:
                rate = ingest_rate_per_minute(org=self.org)
                active = live_snapshot(org=self.org).active_now
            except redis.RedisError:
                redis_state = "error: RedisError"
        healthy = database == "ok" and redis_state == "ok"
        return Response(
            {
                "status": "ok" if healthy else "degraded",
                "database": database,
                "redis": redis_state,
                "messages_last_minute": rate,
                "active_now": active,
            }
        )
