"""Alert rules and alert history over the API. With an API key the org is the key's; reads need the
`read` or `alerts` scope, changes need `alerts`. With a session (a signed-in user, `?org=<slug>`)
the role matrix decides: reads need `org.view`, acknowledging `alerts.ack`, changes `alerts.manage`."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.auth import ApiKeyAuthentication, ApiKeyRateThrottle, session_org
from analytics.models import AlertEvent, AlertRule, ApiKey, Bot, Campaign
from analytics.services import alerts as alert_services
from analytics.services.audit import request_actor, request_ip
from analytics.tenancy import user_can


@contextmanager
def _field_errors():
    """A rule the service refuses is a 400 naming the fields, like the serializer's own errors."""
    try:
        yield
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict) from None


class HasAlertScope(permissions.BasePermission):
    def has_permission(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            if request.user is not None and request.user.is_authenticated:
                return True  # a session: the role matrix is checked with the org (initial)
            raise exceptions.NotAuthenticated("An API key is required.")
        write = request.method not in permissions.SAFE_METHODS
        needed = ("alerts",) if write else ("read", "alerts")
        if not any(api_key.has_scope(s) for s in needed):
            raise exceptions.PermissionDenied(
                f"This API key lacks the '{needed[0]}' scope."
                if write
                else "This API key lacks the 'read' or 'alerts' scope."
            )
        return True


class _OrgSlugField(serializers.SlugRelatedField):
    """A bot or campaign by slug, looked up in the API key's org only."""

    def get_queryset(self):
        return self.queryset.model.objects.for_org(self.context["org"])


class AlertRuleSerializer(serializers.ModelSerializer):
    bot = _OrgSlugField(
        slug_field="slug", queryset=Bot.objects.none(), required=False, allow_null=True
    )
    campaign = _OrgSlugField(
        slug_field="slug", queryset=Campaign.objects.none(), required=False, allow_null=True
    )
    webhook_url = serializers.CharField(required=False, allow_blank=True, max_length=500)

    class Meta:
        model = AlertRule
        fields = (
            "id",
            "name",
            "metric",
            "bot",
            "campaign",
            "comparison",
            "warning_threshold",
            "critical_threshold",
            "window_minutes",
            "cooldown_minutes",
            "hysteresis_percent",
            "email_recipients",
            "webhook_url",
            "webhook_secret",
            "enabled",
            "muted_until",
            "state",
            "last_value",
            "last_evaluated_at",
            "created_at",
        )
        read_only_fields = ("state", "last_value", "last_evaluated_at", "created_at", "muted_until")
        extra_kwargs = {"webhook_secret": {"write_only": True, "required": False}}


class AlertEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertEvent
        fields = (
            "id",
            "rule",
            "rule_name",
            "metric",
            "scope_label",
            "severity",
            "status",
            "value",
            "threshold",
            "started_at",
            "resolved_at",
            "resolution",
            "acknowledged_at",
            "notified",
        )


class _AlertApi(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [HasAlertScope]
    throttle_classes = [ApiKeyRateThrottle]
    #: what a signed-in user's role must allow to change things here (reads need org.view)
    write_perm = "alerts.manage"
    org = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.auth, ApiKey):
            self.org = request.auth.organization
        else:
            write = request.method not in permissions.SAFE_METHODS
            self.org = session_org(request, self.write_perm if write else "org.view")
            self.session_can_manage = user_can(request.user, self.org, "alerts.manage")

    def rule_data(self, data: dict) -> dict:
        # A webhook URL often carries a secret: whoever may not change rules (a key without the
        # `alerts` scope, a member below admin) sees where it goes, `scheme://host/***`.
        api_key = self.request.auth
        whole = (
            api_key.has_scope("alerts") if isinstance(api_key, ApiKey) else self.session_can_manage
        )
        if not whole and data.get("webhook_url"):
            data["webhook_url"] = alert_services.webhook_url_masked(data["webhook_url"])
        return data

    def get_serializer_context(self):
        return {"org": self.org, "request": self.request}

    def who(self) -> dict:
        """The actor and address a change is audited with."""
        return {"actor": request_actor(self.request), "ip": request_ip(self.request)}

    def _rule(self, pk) -> AlertRule:
        rule = AlertRule.objects.for_org(self.org).filter(pk=pk).first()
        if rule is None:
            raise exceptions.NotFound("No such alert rule.")
        return rule


class AlertRuleListApi(_AlertApi):
    """List the org's alert rules, or create one."""

    @extend_schema(operation_id="alert_rules_list", responses=AlertRuleSerializer(many=True))
    def get(self, request):
        rules = AlertRule.objects.for_org(self.org).select_related("bot", "campaign")
        data = AlertRuleSerializer(rules, many=True, context=self.get_serializer_context()).data
        return Response([self.rule_data(dict(row)) for row in data])

    @extend_schema(
        operation_id="alert_rules_create",
        request=AlertRuleSerializer,
        responses={201: AlertRuleSerializer},
    )
    def post(self, request):
        serializer = AlertRuleSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        rule = AlertRule(organization=self.org, **serializer.validated_data)
        with _field_errors():
            alert_services.alert_rule_create(rule=rule, **self.who())
        data = AlertRuleSerializer(rule, context=self.get_serializer_context()).data
        data["webhook_secret"] = rule.webhook_secret  # shown to its creator, like an API key
        return Response(data, status=201)


class AlertRuleDetailApi(_AlertApi):
    """Read, change or delete one alert rule (a firing alert of a deleted rule is resolved)."""

    @extend_schema(operation_id="alert_rules_read", responses=AlertRuleSerializer)
    def get(self, request, pk):
        data = AlertRuleSerializer(self._rule(pk), context=self.get_serializer_context()).data
        return Response(self.rule_data(dict(data)))

    @extend_schema(
        operation_id="alert_rules_update",
        request=AlertRuleSerializer,
        responses=AlertRuleSerializer,
    )
    def patch(self, request, pk):
        rule = self._rule(pk)
        serializer = AlertRuleSerializer(
            rule, data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        with _field_errors():
            alert_services.alert_rule_update(
                rule=rule, changes=serializer.validated_data, **self.who()
            )
        return Response(AlertRuleSerializer(rule, context=self.get_serializer_context()).data)

    @extend_schema(operation_id="alert_rules_delete", responses={204: None})
    def delete(self, request, pk):
        rule = self._rule(pk)
        alert_services.alert_rule_delete(rule=rule, **self.who())
        return Response(status=204)


class AlertRuleMuteApi(_AlertApi):
    """Mute a rule for `minutes` (1..10080), or unmute it with `minutes: 0`."""

    @extend_schema(operation_id="alert_rules_mute", request=None, responses=AlertRuleSerializer)
    def post(self, request, pk):
        rule = self._rule(pk)
        try:
            minutes = int(request.data.get("minutes", 60))
        except (TypeError, ValueError):
            minutes = -1
        if not 0 <= minutes <= 7 * 1440:
            raise serializers.ValidationError({"minutes": "Enter minutes between 0 and 10080."})
        duration = timedelta(minutes=minutes) if minutes else None
        alert_services.alert_rule_mute(
            rule=rule, duration=duration, note={"muted_minutes": minutes}, **self.who()
        )
        return Response(AlertRuleSerializer(rule, context=self.get_serializer_context()).data)


class AlertEventListApi(_AlertApi):
    """The org's alert history, newest first (`?status=firing|resolved`), at most 200."""

    @extend_schema(operation_id="alert_events_list", responses=AlertEventSerializer(many=True))
    def get(self, request):
        events = AlertEvent.objects.for_org(self.org)
        status = request.query_params.get("status")
        if status:
            if status not in AlertEvent.Status.values:
                raise serializers.ValidationError({"status": "Use firing or resolved."})
            events = events.filter(status=status)
        return Response(AlertEventSerializer(events[:200], many=True).data)


class AlertEventAckApi(_AlertApi):
    """Acknowledge a firing alert (no more escalation notifications for it)."""

    write_perm = "alerts.ack"

    @extend_schema(operation_id="alert_events_ack", request=None, responses=AlertEventSerializer)
    def post(self, request, pk):
        event = AlertEvent.objects.for_org(self.org).filter(pk=pk).first()
        if event is None:
            raise exceptions.NotFound("No such alert.")
        user = None if isinstance(request.auth, ApiKey) else request.user
        alert_services.alert_event_acknowledge(event=event, user=user)
        return Response(AlertEventSerializer(event).data)
