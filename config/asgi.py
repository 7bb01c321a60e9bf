"""ASGI entry point: HTTP through Django, WebSockets through Channels (see dashboard.routing)."""

import os

from autobahn.websocket import protocol as autobahn_protocol
from django.core.asgi import get_asgi_application

# autobahn pretty-prints every new WebSocket's ~40 settings for a debug line it builds eagerly,
# logged or not: in a burst of 1,000 connects that pformat was ~14% of the web process's time
# (py-spy, docs/BENCHMARKS.md "Issue 15: connect time"). repr says the same, in C.
autobahn_protocol.pformat = repr

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.proxy import TrustedProxyMiddleware  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
# X-Forwarded-For / -Proto only from TRUSTED_PROXIES (daphne runs without --proxy-headers)
application = TrustedProxyMiddleware(application)
