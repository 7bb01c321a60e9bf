"""Where a webhook may go (every address its host resolves to must be public) and how a
notification is sent there: signed, pinned to the address that was checked, no redirects."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from analytics.alert_checks import IPAddress, webhook_addresses_check, webhook_url_parts


def webhook_url_check(url: str, *, resolve: bool = True) -> list[str]:
    """Why a webhook URL is refused (empty: accepted): not http(s), credentials in it, or a host
    with any resolved address that is not globally routable (unless the operator allowed it)."""
    try:
        webhook_target(url, resolve=resolve)
    except ValueError as exc:
        return [str(exc)]
    return []


def webhook_target(url: str, *, resolve: bool = True):
    """(url parts, port, the address to connect to) for a webhook URL; ValueError says why not.

    Every address the host resolves to must pass `address_allowed`: one internal answer among
    public ones is refused, since the connection could be steered to it (DNS rebinding)."""
    parts, port = webhook_url_parts(url)
    if not resolve:
        return parts, port, None
    try:
        addresses = _resolve(parts.hostname, port)
    except (OSError, UnicodeError, ValueError):
        raise ValueError(f"The host {parts.hostname!r} does not resolve.") from None
    webhook_addresses_check(addresses)
    return parts, port, addresses[0]


def webhook_url_masked(url: str) -> str:
    """`scheme://host/***`: where a webhook goes, without the path or query that often hold its
    secret (shown in full only to keys with the `alerts` scope and to org admins)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/***"


def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`: receivers recompute and compare."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever DNS answers a moment later."""

    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self._address = address

    def connect(self):
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def webhook_post(url: str, body: bytes, headers: dict, *, timeout: float) -> int:
    """POST `body` to `url`, checked again now (DNS may have changed since the rule was saved) and
    connected to the very address that was checked; returns the status (redirects not followed:
    a 3xx is an answer like any other)."""
    parts, port, address = webhook_target(url)
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = cls(parts.hostname, port, address, timeout=timeout)
    try:
        path = parts.path or "/"
        conn.request(
            "POST",
            path + (f"?{parts.query}" if parts.query else ""),
            body=body,
            headers={**headers, "Content-Length": str(len(body))},
        )
        response = conn.getresponse()
        response.read(65536)
        return response.status
    finally:
        conn.close()
