from django.urls import path

from analytics.api import ops, views

app_name = "api"

urlpatterns = [
    path("events", views.EventIngestApi.as_view(), name="events"),
    path("ops/queues", ops.OpsQueuesApi.as_view(), name="ops-queues"),
]
