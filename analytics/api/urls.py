from django.urls import path

from analytics.api import alerts, customers, ops, read, views

app_name = "api"

urlpatterns = [
    path("events", views.EventIngestApi.as_view(), name="events"),
    path("ops/queues", ops.OpsQueuesApi.as_view(), name="ops-queues"),
    path("analytics/realtime", read.RealtimeApi.as_view(), name="realtime"),
    path("analytics/response-times", read.ResponseTimesApi.as_view(), name="response-times"),
    path("analytics/message-volume", read.MessageVolumeApi.as_view(), name="message-volume"),
    path("bots/", read.BotListApi.as_view(), name="bots"),
    path("bots/<str:slug>/performance", read.BotPerformanceApi.as_view(), name="bot-performance"),
    path("bots/<str:slug>/percentiles", read.BotPercentilesApi.as_view(), name="bot-percentiles"),
    path("campaigns/", read.CampaignListApi.as_view(), name="campaigns"),
    path(
        "campaigns/<str:slug>/metrics", read.CampaignMetricsApi.as_view(), name="campaign-metrics"
    ),
    path("conversations/", read.ConversationListApi.as_view(), name="conversations"),
    path(
        "conversations/<str:conversation_id>/",
        read.ConversationDetailApi.as_view(),
        name="conversation",
    ),
    path("system/health", read.SystemHealthApi.as_view(), name="system-health"),
    path("alerts/rules", alerts.AlertRuleListApi.as_view(), name="alert-rules"),
    path("alerts/rules/<int:pk>", alerts.AlertRuleDetailApi.as_view(), name="alert-rule"),
    path("alerts/rules/<int:pk>/mute", alerts.AlertRuleMuteApi.as_view(), name="alert-rule-mute"),
    path("alerts/events", alerts.AlertEventListApi.as_view(), name="alert-events"),
    path("alerts/events/<int:pk>/ack", alerts.AlertEventAckApi.as_view(), name="alert-event-ack"),
    path("customers/erase", customers.CustomerEraseApi.as_view(), name="customer-erase"),
    path("customers/export", customers.CustomerExportApi.as_view(), name="customer-export"),
]
