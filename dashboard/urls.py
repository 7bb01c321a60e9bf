"""Org pages: every route here is under /o/<org_slug>/ and resolves the org with org_view."""

from django.urls import path

from dashboard import (
    alert_views,
    customer_views,
    team_views,
    views,
    views_bots,
    views_campaigns,
    views_explorer,
    views_transcript,
)

app_name = "dashboard"

urlpatterns = [
    path("", views.org_dashboard, name="org_dashboard"),
    path("live/metrics", views.live_metrics, name="live_metrics"),
    path("conversations/", views_explorer.conversations, name="conversations"),
    path(
        "conversations/export.csv",
        views_explorer.conversations_export,
        name="conversations_export",
    ),
    path(
        "conversations/<int:conversation_id>/",
        views_transcript.conversation_detail,
        name="conversation_detail",
    ),
    path("exports/<uuid:job_id>/", views_explorer.export_job, name="export_job"),
    path(
        "exports/<uuid:job_id>/download",
        views_explorer.export_job_download,
        name="export_job_download",
    ),
    path("bots/<slug:bot_slug>/", views_bots.bot_detail, name="bot_detail"),
    path("bots/<slug:bot_slug>/daily.csv", views_bots.bot_daily_export, name="bot_daily_export"),
    path(
        "campaigns/<slug:campaign_slug>/", views_campaigns.campaign_detail, name="campaign_detail"
    ),
    path("charts/period", views.period_charts, name="period_charts"),
    path("insights/", alert_views.insights, name="insights"),
    path("alerts/", alert_views.alerts, name="alerts"),
    path("alerts/banner", alert_views.alert_banner, name="alert_banner"),
    path("alerts/rules/<int:pk>/", alert_views.alert_rule_action, name="alert_rule_action"),
    path("alerts/events/<int:pk>/ack", alert_views.alert_event_ack, name="alert_event_ack"),
    # team and audit log (issue 11)
    path("team/", team_views.team, name="team"),
    path("team/members/<int:pk>/", team_views.team_member, name="team_member"),
    path(
        "team/invitations/<int:pk>/revoke",
        team_views.team_invitation_revoke,
        name="team_invitation_revoke",
    ),
    path("audit/", team_views.audit, name="audit"),
    # customer erasure (issue 14)
    path("customers/erase/", customer_views.customer_erase_page, name="customer_erase"),
]
