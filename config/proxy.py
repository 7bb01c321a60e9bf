"""The client's address and scheme behind a reverse proxy, believed only from TRUSTED_PROXIES.

daphne's own `--proxy-headers` believes `X-Forwarded-For` from anyone and takes its left-most
entry, which the client writes itself. Here the forwarding headers count only when the direct
peer is a configured proxy; the client is then the right-most address that is not one of ours
(each proxy appends the address it saw, so everything left of that is the client's own word).
From any other peer the headers are dropped and the request is marked as forwarded by an
unknown hop, so a proxy we were not told about cannot make a remote client look local.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"x-real-ip")
UNTRUSTED_HOP = "botflow.forwarded_by_untrusted_hop"  # scope key: forwarding headers ignored

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """An address as proxies write it ("a.b.c.d", "a.b.c.d:port", "[v6]:port", "v6"), or None."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: Address | None, networks) -> bool:
    return address is not None and any(
        address in net for net in networks if net.version == address.version
    )


def forwarded_scope(scope: dict, networks) -> dict:
    """`scope` with the real client and scheme, and without the forwarding headers."""
    forwarded_for, proto = [], None
    headers = []
    for name, value in scope.get("headers", ()):
        if name in FORWARDED_HEADERS:
            if name == b"x-forwarded-for":
                forwarded_for.extend(value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
            continue
        headers.append((name, value))
    if len(headers) == len(scope.get("headers", ())):
        return scope  # nothing forwarded: the peer is the client
    scope = {**scope, "headers": headers}
    client = scope.get("client")
    peer = parse_address(client[0]) if client else None
    if not _trusted(peer, networks):
        scope[UNTRUSTED_HOP] = True
        return scope
    if forwarded_for:
        real = None
        for entry in reversed(forwarded_for):
            real = parse_address(entry)
            if not _trusted(real, networks):
                break  # the right-most address that is not one of our proxies (None: unreadable)
        scope["client"] = (str(real), 0) if real is not None else None
    if proto in ("http", "https"):
        secure = proto == "https"
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = proto
    return scope


class TrustedProxyMiddleware:
    """ASGI middleware applying `forwarded_scope` to every HTTP request and WebSocket."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = forwarded_scope(scope, settings.TRUSTED_PROXY_NETWORKS)
        return await self.app(scope, receive, send)


def request_is_direct(request) -> bool:
    """The request's REMOTE_ADDR is the client's own: no hop we do not trust forwarded it."""
    scope = getattr(request, "scope", None)
    if scope is not None:
        return not scope.get(UNTRUSTED_HOP, False)
    return not any(  # a WSGI request (tests' client): the headers are still there
        f"HTTP_{name.decode().upper().replace('-', '_')}" in request.META
        for name in FORWARDED_HEADERS
    )
