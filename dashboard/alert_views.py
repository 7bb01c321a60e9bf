"""Insights and alerts pages (`/o/<org>/insights/`, `/o/<org>/alerts/`), all through org_view.

Pages only read: insights come from InsightReport rows a worker wrote; a missing or stale report
queues a refresh (once per 10 minutes per org) and says so. Alert rules are managed by org
owners and admins; every member sees rules, state and history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from analytics.models import AlertEvent, AlertNotification, AlertRule, Bot, Campaign
from analytics.services import alerts as alert_services
from analytics.services.audit import request_actor, request_ip
from analytics.services.insights import (
    FORECAST_METRICS,
    REPORT_MAX_AGE,
    insight_report_get,
    insights_refresh_queue,
)
from analytics.tenancy import user_can
from dashboard import insight_charts
from dashboard.views import org_view


def explorer_url(org, *, bot_slug: str, hour: str) -> str:
    """The explorer filtered to one bot and one hour (analytics/filters.py names the params)."""
    start = datetime.fromisoformat(hour).astimezone(org.tz)
    params = {
        "start": start.isoformat(timespec="minutes"),
        "end": (start + timedelta(hours=1)).isoformat(timespec="minutes"),
    }
    if bot_slug:
        params = {"bot": bot_slug, **params}
    try:
        base = reverse("dashboard:conversations", args=[org.slug])
    except NoReverseMatch:
        base = f"/o/{org.slug}/conversations/"
    return f"{base}?{urlencode(params)}"


@org_view(perm="org.view")
@require_GET
def insights(request, org):
    bots = list(Bot.objects.for_org(org).order_by("name"))
    bot = next((b for b in bots if b.slug == request.GET.get("bot")), None)
    scope = f"bot:{bot.pk}" if bot else "org"
    report = insight_report_get(org=org, scope=scope)
    org_report = report if scope == "org" else insight_report_get(org=org, scope="org")
    stale = org_report is None or timezone.now() - org_report.computed_at > REPORT_MAX_AGE
    if stale:
        insights_refresh_queue(org=org)
    forecasts = []
    if report is not None:
        for metric, label in FORECAST_METRICS.items():
            entry = report.payload.get("forecasts", {}).get(metric)
            if entry is None:
                continue
            f = entry.get("forecast")
            change = None
            if f and entry["last_week"]:
                change = 100 * (f["total"] - entry["last_week"]) / entry["last_week"]
            forecasts.append(
                {
                    "metric": metric,
                    "label": label,
                    "entry": entry,
                    "forecast": f,
                    "figure_id": f"forecast-{metric}-figure",
                    "history_days": entry["history_hours"] // 24,
                    "change": change,
                    "money": metric == "revenue",
                    "figure": insight_charts.forecast_figure(entry, org.tz, label),
                    "days": insight_charts.daily_rows(entry, org.tz),
                }
            )
    payload = org_report.payload if org_report else {}
    anomalies = [
        {
            **a,
            "at": datetime.fromisoformat(a["hour"]),
            "url": explorer_url(org, bot_slug=a["bot_slug"], hour=a["hour"]),
        }
        for a in payload.get("anomalies", [])
        if bot is None or a["bot_id"] == bot.pk
    ]
    context = {
        "org": org,
        "bots": bots,
        "bot": bot,
        "report": report,
        "org_report": org_report,
        "stale": stale,
        "forecasts": forecasts,
        "anomalies": anomalies,
        "at_risk": payload.get("at_risk", []),
        "history_days": payload.get("history_hours", 0) // 24,
    }
    return render(request, "dashboard/insights.html", context)


# --- alerts ------------------------------------------------------------------------------------


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = (
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
            "enabled",
        )
        widgets = {"email_recipients": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, org, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.organization = org
        self.fields["bot"].queryset = Bot.objects.for_org(org)
        self.fields["campaign"].queryset = Campaign.objects.for_org(org)
        self.fields["bot"].empty_label = "Whole organization"
        self.fields["campaign"].empty_label = "No campaign"

    def clean_webhook_url(self):
        url = self.cleaned_data.get("webhook_url", "")
        if url:
            problems = alert_services.webhook_url_check(url)
            if problems:
                raise forms.ValidationError(problems)
        return url

    def _post_clean(self):
        # the model's checks report a refused address again; keep one message per problem
        super()._post_clean()
        if "webhook_url" in self.errors:
            self.errors["webhook_url"] = self.error_class(dict.fromkeys(self.errors["webhook_url"]))


def _alerts_context(org, user, form=None) -> dict:
    rules = list(AlertRule.objects.for_org(org).select_related("bot", "campaign"))
    events = list(AlertEvent.objects.for_org(org).select_related("rule", "acknowledged_by")[:100])
    notifications = list(
        AlertNotification.objects.for_org(org).select_related("event").order_by("-created_at")[:30]
    )
    can_manage_rules = user_can(user, org, "alerts.manage")
    for n in notifications:  # a webhook URL often holds a secret: in full for admins only
        n.target_shown = (
            n.target
            if can_manage_rules or n.channel != AlertNotification.Channel.WEBHOOK
            else alert_services.webhook_url_masked(n.target)
        )
    return {
        "org": org,
        "rules": rules,
        "events": events,
        "notifications": notifications,
        "can_manage_rules": can_manage_rules,
        "form": form
        if form is not None
        else (AlertRuleForm(org=org) if can_manage_rules else None),
        "mute_choices": list(alert_services.MUTE_CHOICES),
        "now": timezone.now(),
        "alerts": alert_services.firing_alerts(org=org),
    }


@org_view(perm="org.view", post_perm="alerts.manage")
def alerts(request, org):
    if request.method == "POST":
        form = AlertRuleForm(request.POST, org=org)
        if form.is_valid():
            rule = form.save(commit=False)
            rule.organization, rule.created_by = org, request.user
            try:
                alert_services.alert_rule_create(
                    rule=rule, actor=request_actor(request), ip=request_ip(request)
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, f"Alert rule “{rule.name}” created.")
                return redirect("dashboard:alerts", org_slug=org.slug)
        return render(
            request, "dashboard/alerts.html", _alerts_context(org, request.user, form), status=400
        )
    return render(request, "dashboard/alerts.html", _alerts_context(org, request.user))


def _rule_of(org, pk) -> AlertRule:
    rule = AlertRule.objects.for_org(org).filter(pk=pk).select_related("organization").first()
    if rule is None:
        raise Http404("No such alert rule.")
    return rule


@org_view(perm="alerts.manage")
@require_POST
def alert_rule_action(request, org, pk):
    rule = _rule_of(org, pk)
    action = request.POST.get("action", "")
    who = {"actor": request_actor(request), "ip": request_ip(request), "note": {"action": action}}
    if action == "delete":
        alert_services.alert_rule_delete(rule=rule, **who)
        messages.success(request, f"Alert rule “{rule.name}” deleted.")
    elif action == "unmute":
        alert_services.alert_rule_mute(rule=rule, duration=None, **who)
    elif action.startswith("mute:") and action[5:] in alert_services.MUTE_CHOICES:
        duration = alert_services.MUTE_CHOICES[action[5:]]
        alert_services.alert_rule_mute(rule=rule, duration=duration, **who)
        messages.success(request, f"“{rule.name}” muted for {action[5:]}.")
    elif action in ("enable", "disable"):
        alert_services.alert_rule_set_enabled(rule=rule, enabled=action == "enable", **who)
    else:
        return HttpResponseForbidden("Unknown action.")
    return redirect("dashboard:alerts", org_slug=org.slug)


@org_view(perm="alerts.ack")
@require_POST
def alert_event_ack(request, org, pk):
    event = AlertEvent.objects.for_org(org).filter(pk=pk).first()
    if event is None:
        raise Http404("No such alert.")
    alert_services.alert_event_acknowledge(event=event, user=request.user)
    if request.htmx:
        return render(
            request,
            "dashboard/partials/_alert_banner.html",
            {"org": org, "alerts": alert_services.firing_alerts(org=org)},
        )
    return redirect(request.POST.get("next") or reverse("dashboard:alerts", args=[org.slug]))


@org_view(perm="org.view")
@require_GET
def alert_banner(request, org):
    """The banner of firing alerts (loaded by each page; pushed again when one fires)."""
    return render(
        request,
        "dashboard/partials/_alert_banner.html",
        {"org": org, "alerts": alert_services.firing_alerts(org=org)},
    )
