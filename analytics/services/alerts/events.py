"""`alert_changed`: sent after the commit whenever what an org's alert banner shows may have
changed. The live layer (dashboard.signals) renders the banner and publishes it, with one JSON
stream event per change; the services never render or publish themselves."""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

#: kwargs: org (Organization), changed (list of (AlertEvent, "firing" | "escalated" |
#: "deescalated" | "resolved")); empty when only mutes or acknowledgements changed
alert_changed = Signal()


def alert_changed_on_commit(*, org, changed: list) -> None:
    """Send `alert_changed` once the current transaction commits (at once outside one)."""

    def send_now():
        try:
            alert_changed.send(sender=None, org=org, changed=changed)
        except Exception:  # noqa: BLE001 - a live push never fails the evaluation
            log.warning("could not publish alerts of org %s", org.pk, exc_info=True)

    transaction.on_commit(send_now)
