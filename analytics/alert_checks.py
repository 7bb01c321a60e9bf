"""Checks of an alert rule that need no I/O: thresholds, window, recipients, and the shape and
literal address of its webhook URL. The model's clean() runs them; where a webhook host name
resolves is checked by the alerts service before a rule is saved and again before each delivery.

This module sits below the models (they import it), so metric names are their stored values.
"""

from __future__ import annotations

import ipaddress
import math
from collections import defaultdict
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

NO_DATA, QUEUE_DEPTH = "no_data", "queue_depth"  # AlertMetric values
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not reachable on the public internet, whatever `is_global` of this Python says about them.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# RFC 6761: localhost names are the loopback address by definition, no look-up needed to judge
_LOOPBACK = ipaddress.ip_address("127.0.0.1")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, IPv4-compatible, 6to4, Teredo, NAT64):
    a packet to it may end up at them."""
    found = []
    if address.ipv4_mapped:
        found.append(address.ipv4_mapped)
    if address.sixtofour:
        found.append(address.sixtofour)
    if address.teredo:
        found.extend(address.teredo)  # (server, client)
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or any(address in net for net in _NOT_PUBLIC if net.version == address.version)
    )


def address_allowed(address: IPAddress) -> bool:
    """A webhook may reach `address`: an operator-allowed network, or globally routable with
    every IPv4 address it carries globally routable too (an allow-list, not a deny-list)."""
    inner = embedded_ipv4(address) if address.version == 6 else []
    allowed = settings.ALERT_WEBHOOK_ALLOWED_NETWORKS
    if any(a in net for a in (address, *inner) for net in allowed if net.version == a.version):
        return True
    if inner:
        # mapped, IPv4-compatible and NAT64 forms are the IPv4 address itself; 6to4 and Teredo
        # are judged both as IPv6 (a relay prefix) and by what they carry
        if address.ipv4_mapped or address in _IPV4_COMPATIBLE or address in _NAT64:
            return all(_public(a) for a in inner)
        return all(_public(a) for a in inner) and _public(address)
    return _public(address)


def webhook_url_parts(url: str) -> tuple[SplitResult, int]:
    """(url parts, port) of an acceptable webhook URL; ValueError says why it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("The webhook URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValueError("The webhook URL has no host.")
    if parts.username or parts.password:
        raise ValueError("The webhook URL must not contain credentials; use the signing secret.")
    return parts, port


def webhook_addresses_check(addresses: list[IPAddress]) -> None:
    """ValueError unless there is an address and every one of them passes `address_allowed`."""
    refused = [str(a) for a in addresses if not address_allowed(a)]
    if refused or not addresses:
        raise ValueError(
            f"The webhook URL points to an address that is not public ({', '.join(refused)}); "
            "webhooks reach only globally routable addresses "
            "(an operator may allow a network with ALERT_WEBHOOK_ALLOWED_NETWORKS)."
        )


def _known_address(host: str) -> IPAddress | None:
    """The address a host stands for without a look-up: an IP literal or a localhost name."""
    if host == "localhost" or host.endswith(".localhost"):
        return _LOOPBACK
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def webhook_url_problems(url: str) -> list[str]:
    """Why a webhook URL is refused without resolving its host (empty: nothing found)."""
    try:
        parts, _ = webhook_url_parts(url)
        address = _known_address(parts.hostname)
        if address is not None:
            webhook_addresses_check([address])
    except ValueError as exc:
        return [str(exc)]
    return []


def email_recipients(raw: str) -> list[str]:
    return [a.strip() for a in raw.replace("\n", ",").replace(";", ",").split(",") if a.strip()]


def alert_rule_check(rule) -> None:
    """Cross-field checks of an AlertRule, raised as one ValidationError (no I/O)."""
    errors: dict[str, list[str]] = defaultdict(list)
    warning, critical = rule.warning_threshold, rule.critical_threshold
    if warning is None and critical is None:
        errors["critical_threshold"].append("Set a warning or a critical threshold (or both).")
    if warning is not None and critical is not None:
        above = rule.comparison == rule.Comparison.ABOVE
        if (above and warning >= critical) or (not above and warning <= critical):
            side = "below" if above else "above"
            condition = rule.get_comparison_display()
            errors["warning_threshold"].append(
                f"The warning threshold must be {side} the critical one for “{condition}”."
            )
    for name, value in (("warning_threshold", warning), ("critical_threshold", critical)):
        if value is not None and not math.isfinite(value):
            errors[name].append("Enter a finite number.")
    if rule.metric == NO_DATA:
        if rule.comparison != rule.Comparison.ABOVE:
            errors["comparison"].append(
                "“No data” alerts fire when the silence is above N minutes."
            )
        for name, value in (("warning_threshold", warning), ("critical_threshold", critical)):
            if value is not None and not 1 <= value <= 1440:
                errors[name].append("For “no data”, thresholds are minutes between 1 and 1440.")
    if rule.metric == QUEUE_DEPTH and rule.bot_id:
        errors["bot"].append("Queue depth is a campaign gauge: choose a campaign or the whole org.")
    if rule.bot_id and rule.campaign_id:
        errors["campaign"].append("Choose a bot or a campaign, not both.")
    if not rule.window_minutes:
        errors["window_minutes"].append("The window must be at least 1 minute.")
    recipients = email_recipients(rule.email_recipients)
    if len(recipients) > settings.ALERT_MAX_RECIPIENTS:
        errors["email_recipients"].append(
            f"At most {settings.ALERT_MAX_RECIPIENTS} email addresses per rule "
            f"({len(recipients)} given); use a mailing list for more."
        )
        recipients = []  # not worth checking one by one
    for address in recipients:
        try:
            validate_email(address)
        except ValidationError:
            errors["email_recipients"].append(f"{address!r} is not an email address.")
    if rule.webhook_url and (problems := webhook_url_problems(rule.webhook_url)):
        errors["webhook_url"].extend(problems)
    if errors:
        raise ValidationError(dict(errors))
