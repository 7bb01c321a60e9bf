"""Which bots a read covers: every bot of the org, or the ones asked for (checked to be its own)."""

from __future__ import annotations

from analytics.models import Bot, Organization


def org_bot_ids(org: Organization) -> list[int]:
    return list(Bot.objects.for_org(org).values_list("id", flat=True))


def scoped_bot_ids(org: Organization, bots) -> tuple[list[int], list[int] | None]:
    """All bot ids of the org, and the ids asked for (None: the whole org)."""
    all_ids = org_bot_ids(org)
    if bots is None:
        return all_ids, None
    wanted = [b if isinstance(b, int) else b.pk for b in bots]
    if not set(wanted) <= set(all_ids):
        raise ValueError("bot is not in this organization")
    return all_ids, wanted
