"""Shapes of the read API (query parameters and responses); no logic beyond validation."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from analytics.models import Bot, Campaign
from analytics.selectors import PERIODS

PERIOD_FIELD = {
    "choices": list(PERIODS),
    "default": "24h",
    "help_text": "24h (hourly), 7d (3-hourly) or 30d (daily).",
}


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class PeriodQuery(serializers.Serializer):
    period = serializers.ChoiceField(**PERIOD_FIELD)


class PeriodBotQuery(PeriodQuery):
    bot = serializers.SlugField(
        required=False, help_text="Narrow to one bot (slug); an unknown one is a 404 naming `bot`."
    )

    def validate_bot(self, value):
        org = self.context["org"]
        bot = Bot.objects.for_org(org).filter(slug=value).first()
        if bot is None:  # a slug names a resource: an unknown one is "not found", as in a path
            message = f"Unknown bot: {value} (not in this organization)."
            raise exceptions.NotFound({"detail": message, "bot": [message]})
        return bot


class DateRangeQuery(serializers.Serializer):
    start_date = serializers.DateField(
        required=False,
        help_text="First day (org time zone); default six days before end_date. A day before the"
        " retention limit is moved to it, with a notice.",
    )
    end_date = serializers.DateField(
        required=False,
        help_text="Last day, included; default today, and a later day is moved to today, with a"
        " notice. Before start_date, or before the retention limit, is a 400 naming end_date.",
    )

    def validate(self, attrs):
        org = self.context["org"]
        today = timezone.now().astimezone(org.tz).date()
        oldest = today - timedelta(days=org.rollup_retention_days)
        notices = []
        end = attrs.get("end_date") or today
        if end > today:
            end = today
            notices.append(f"end_date was clamped to today ({today}).")
        # Only end_date given: the seven days up to it (a lone valid date is never an error).
        start = attrs.get("start_date") or end - timedelta(days=6)
        if end < start:
            raise serializers.ValidationError(
                {"end_date": ["The end date is before the start date."]}
            )
        if end < oldest:
            raise serializers.ValidationError({"end_date": ["The range is past retention."]})
        if start < oldest:
            start = oldest
            notices.append(
                f"start_date was clamped to the retention limit ({oldest}: rollups are kept"
                f" {org.rollup_retention_days} days)."
            )
        return {"start_date": start, "end_date": end, "notices": notices}


class FigureChange(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    previous = serializers.FloatField(allow_null=True)
    change_percent = serializers.FloatField(allow_null=True)


class RealtimeSerializer(serializers.Serializer):
    active_now = serializers.IntegerField()
    messages_last_hour = FigureChange()
    avg_response_ms = FigureChange()
    p50_response_ms = FigureChange()
    p95_response_ms = FigureChange()
    p99_response_ms = FigureChange()
    success_rate = FigureChange()
    tokens_last_hour = FigureChange()
    cost_last_hour_usd = FigureChange()


class ResponseTimePointSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    responses = serializers.IntegerField()
    avg_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)


class SeriesSerializer(serializers.Serializer):
    period = serializers.CharField()
    bot = serializers.CharField(allow_null=True)


class ResponseTimesSerializer(SeriesSerializer):
    points = ResponseTimePointSerializer(many=True)


class VolumePointSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    inbound = serializers.IntegerField()
    outbound = serializers.IntegerField()


class MessageVolumeSerializer(SeriesSerializer):
    points = VolumePointSerializer(many=True)


class BotSerializer(serializers.ModelSerializer):
    class Meta:
        model = Bot
        fields = ["slug", "name", "kind", "persona", "avatar", "channel", "is_active", "created_at"]


class CampaignSerializer(serializers.ModelSerializer):
    bot = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Campaign
        fields = ["slug", "name", "status", "bot", "created_at"]


class SummarySerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    conversations = serializers.IntegerField()
    conversations_ended = serializers.IntegerField()
    messages_in = serializers.IntegerField()
    messages_out = serializers.IntegerField()
    avg_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    success_rate = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(allow_null=True)
    fallback_rate = serializers.FloatField(allow_null=True)
    kb_hit_rate = serializers.FloatField(allow_null=True)
    handoff_rate = serializers.FloatField(allow_null=True)
    csat_avg = serializers.FloatField(allow_null=True)
    tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField()
    avg_duration_seconds = serializers.FloatField(allow_null=True)
    calls = serializers.IntegerField()
    bookings = serializers.IntegerField()
    emails = serializers.IntegerField()
    tasks = serializers.IntegerField()
    revenue = serializers.FloatField()


class BotPerformanceSerializer(serializers.Serializer):
    bot = serializers.CharField()
    start_date = serializers.DateField()
    end_date = serializers.DateField()
    notices = serializers.ListField(child=serializers.CharField())
    current = SummarySerializer()
    previous = SummarySerializer(help_text="The same number of days just before.")
    change_percent = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        help_text="Relative change of each figure against the previous period (null: n/a).",
    )


class PercentilesSerializer(serializers.Serializer):
    bot = serializers.CharField()
    period = serializers.CharField()
    avg_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    points = ResponseTimePointSerializer(many=True)


class CampaignSummarySerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    attempts = serializers.IntegerField()
    completed = serializers.IntegerField()
    outcomes = serializers.DictField(child=serializers.IntegerField())
    answer_rate = serializers.FloatField(allow_null=True)
    conversion_rate = serializers.FloatField(allow_null=True)
    handoffs = serializers.IntegerField()
    csat_avg = serializers.FloatField(allow_null=True)
    avg_duration_seconds = serializers.FloatField(allow_null=True)


class CampaignMetricsSerializer(serializers.Serializer):
    campaign = serializers.CharField()
    start_date = serializers.DateField()
    end_date = serializers.DateField()
    notices = serializers.ListField(child=serializers.CharField())
    current = CampaignSummarySerializer()
    previous = CampaignSummarySerializer()


class ConversationMetricsSerializer(serializers.Serializer):
    duration_seconds = serializers.IntegerField(allow_null=True)
    total_messages = serializers.IntegerField()
    user_messages = serializers.IntegerField()
    bot_messages = serializers.IntegerField()
    avg_response_time_ms = serializers.FloatField(allow_null=True)
    p50_response_time_ms = serializers.FloatField(allow_null=True)
    p95_response_time_ms = serializers.FloatField(allow_null=True)
    p99_response_time_ms = serializers.FloatField(allow_null=True)
    successful_responses = serializers.IntegerField()
    failed_responses = serializers.IntegerField()
    fallback_responses = serializers.IntegerField()
    kb_hits = serializers.IntegerField()
    kb_misses = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField()


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    bot = serializers.CharField(source="bot.slug")
    campaign = serializers.CharField(source="campaign.slug", allow_null=True, default=None)
    customer = serializers.CharField()
    channel = serializers.CharField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    last_activity_at = serializers.DateTimeField()
    handoff = serializers.BooleanField()
    csat = serializers.IntegerField(allow_null=True)
    call_outcome = serializers.CharField(allow_blank=True)
    metrics = serializers.SerializerMethodField()

    @extend_schema_field(ConversationMetricsSerializer(allow_null=True))
    def get_metrics(self, obj) -> dict | None:
        try:
            metrics = obj.metrics
        except obj.__class__.metrics.RelatedObjectDoesNotExist:
            return None
        return ConversationMetricsSerializer(metrics).data


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    direction = serializers.CharField()
    text = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    response_time_ms = serializers.IntegerField(allow_null=True)
    outcome = serializers.CharField(allow_blank=True)
    kb_hit = serializers.BooleanField(allow_null=True)
    tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField()


class ConversationDetailSerializer(ConversationSerializer):
    messages = MessageSerializer(many=True, source="message_list")
    messages_truncated = serializers.BooleanField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    database = serializers.CharField()
    redis = serializers.CharField()
    messages_last_minute = serializers.IntegerField(allow_null=True)
    active_now = serializers.IntegerField(allow_null=True)
