"""The page's socket is accepted only from the page's own origin: scheme, host and port."""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin such as `https://app.example:8443`; None if malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.username is not None or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def own_origin(scope) -> tuple[str, str, int] | None:
    """The origin the socket was asked of: its scheme and its Host header (one of ALLOWED_HOSTS)."""
    host = None
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
    if host is None:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if scope.get("scheme", "ws") in ("wss", "https") else "http"
    return normalize_origin(f"{scheme}://{host}")


class SameOriginValidator:
    """Lets a socket through only if its `Origin` is the page's own origin (same scheme, host and
    port as the request) or one of settings.WS_ALLOWED_ORIGINS; anything else, or no Origin,
    is refused at the handshake (HTTP 403)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if self.allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    @staticmethod
    def allowed(scope) -> bool:
        origins = [v for n, v in scope.get("headers", ()) if n == b"origin"]
        if len(origins) != 1:
            return False
        origin = normalize_origin(origins[0].decode("latin-1"))
        if origin is None:
            return False
        if origin == own_origin(scope):
            return True
        return origin in {normalize_origin(o) for o in settings.WS_ALLOWED_ORIGINS}
