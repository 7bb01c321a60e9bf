"""The role matrix: what each org role may do, in one place.

Roles are ordered (viewer < analyst < admin < owner); each permission names the lowest role that
holds it, and every higher role holds it too. Views, API routes and admin ask `role_allows()`
(through `get_org_for_user(..., perm=)`, `org_view(perm=)` or `membership_can()`); a member
without the permission gets 403, anyone outside the org 404 (as if it did not exist).
"""

from __future__ import annotations

from analytics.models import Role

RANK: dict[str, int] = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2, Role.OWNER: 3}

#: permission -> the lowest role that holds it
PERMISSIONS: dict[str, str] = {
    # viewer: dashboards, pages and transcripts
    "org.view": Role.VIEWER,
    "conversations.view": Role.VIEWER,
    # analyst: also explores, exports CSV, acknowledges alerts, manages their own saved things
    "conversations.explore": Role.ANALYST,
    "conversations.export": Role.ANALYST,
    "alerts.ack": Role.ANALYST,
    "saved.manage_own": Role.ANALYST,
    # admin: also bots, campaigns, alert rules, API keys, members below owner and customer erasure
    "bots.manage": Role.ADMIN,
    "campaigns.manage": Role.ADMIN,
    "alerts.manage": Role.ADMIN,
    "apikeys.manage": Role.ADMIN,
    "members.manage": Role.ADMIN,
    "customers.erase": Role.ADMIN,
    "customers.export": Role.ADMIN,
    # owner: also owners, retention, deletion and the audit log
    "owners.manage": Role.OWNER,
    "org.settings": Role.OWNER,
    "retention.manage": Role.OWNER,
    "org.delete": Role.OWNER,
    "audit.view": Role.OWNER,
}

#: What each permission means, for the README's matrix and the team page.
DESCRIPTIONS: dict[str, str] = {
    "org.view": "See the live dashboard, bot, campaign, insights and alerts pages",
    "conversations.view": "Read a conversation's transcript",
    "conversations.explore": "Use the conversation explorer (search, filters)",
    "conversations.export": "Export CSV and download export files",
    "alerts.ack": "Acknowledge firing alerts",
    "saved.manage_own": "Manage their own saved things",
    "bots.manage": "Manage bots",
    "campaigns.manage": "Manage campaigns",
    "alerts.manage": "Create, change, mute and delete alert rules",
    "apikeys.manage": "Create and revoke API keys",
    "members.manage": "Invite members, change roles and remove members below owner",
    "customers.erase": "Erase one customer's data (a GDPR-style erasure request)",
    "customers.export": "Export everything held about one customer (an access request)",
    "owners.manage": "Make and remove owners",
    "org.settings": "Change the organization's name and time zone",
    "retention.manage": "Set data retention",
    "org.delete": "Delete data in admin (conversations, the org)",
    "audit.view": "Read the audit log",
}


def role_rank(role: str | None) -> int:
    """The role's place in the order; -1 for no role (not a member)."""
    return RANK.get(role, -1) if role else -1


def role_allows(role: str | None, perm: str) -> bool:
    """Whether `role` holds `perm`. An unknown permission is a programming error (KeyError)."""
    return role_rank(role) >= RANK[PERMISSIONS[perm]]


def roles_with(perm: str) -> list[str]:
    return [role for role in RANK if role_allows(role, perm)]


def grantable_roles(role: str | None) -> list[str]:
    """The roles someone with `role` may give: never above their own; only owners make owners."""
    if not role_allows(role, "members.manage"):
        return []
    if role_allows(role, "owners.manage"):
        return list(RANK)
    return [r for r in RANK if RANK[r] <= RANK[role] and r != Role.OWNER]


def can_manage_member(
    actor_role: str | None, target_role: str, new_role: str | None = None
) -> bool:
    """Whether `actor_role` may change a member holding `target_role` (to `new_role`, or remove
    them when `new_role` is None): admins manage members below owner; owners manage everyone."""
    if not role_allows(actor_role, "members.manage"):
        return False
    if target_role == Role.OWNER and not role_allows(actor_role, "owners.manage"):
        return False
    return new_role is None or new_role in grantable_roles(actor_role)


def role_perms(role: str | None) -> dict[str, dict[str, bool]]:
    """What `role` may do, nested for templates: `{{ request.can.conversations.export }}`."""
    can: dict[str, dict[str, bool]] = {}
    for perm in PERMISSIONS:
        area, action = perm.split(".")
        can.setdefault(area, {})[action] = role_allows(role, perm)
    return can


def matrix_rows() -> list[tuple[str, str, list[bool]]]:
    """(permission, description, [allowed for viewer, analyst, admin, owner]) for display."""
    return [
        (perm, DESCRIPTIONS[perm], [role_allows(r, perm) for r in RANK]) for perm in PERMISSIONS
    ]
