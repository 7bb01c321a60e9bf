"""WebSocket routes. Consumers authenticate in connect() and join only their org's groups."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from dashboard import consumers

websocket_urlpatterns = [
    # The page's socket: session auth, and only from our own origin.
    path(
        "ws/o/<slug:org_slug>/live/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(consumers.DashboardConsumer.as_asgi())),
    ),
    # API clients send no Origin; an API key authenticates them.
    path("ws/v1/stream", consumers.StreamConsumer.as_asgi()),
]
