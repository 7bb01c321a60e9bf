"""WebSocket routes. Consumers authenticate in connect() and join only their org's groups."""

from channels.sessions import SessionMiddlewareStack
from django.urls import path

from dashboard import consumers
from dashboard.origin import SameOriginValidator

websocket_urlpatterns = [
    # The page's socket: its session signs it in (dashboard.access), and only from the page's
    # own origin (scheme, host, port).
    path(
        "ws/o/<slug:org_slug>/live/",
        SameOriginValidator(SessionMiddlewareStack(consumers.DashboardConsumer.as_asgi())),
    ),
    # API clients send no Origin; an API key authenticates them.
    path("ws/v1/stream", consumers.StreamConsumer.as_asgi()),
]
