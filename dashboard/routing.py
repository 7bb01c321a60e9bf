"""WebSocket routes. Consumers authenticate in connect() and join only their org's groups."""

from django.urls import path

from dashboard import consumers

websocket_urlpatterns = [
    path("ws/o/<slug:org_slug>/live/", consumers.DashboardConsumer.as_asgi()),
]
