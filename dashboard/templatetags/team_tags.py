"""Template helpers of the team pages: the role matrix for links and buttons (views enforce it)."""

from django import template

from analytics.roles import role_allows

register = template.Library()


@register.filter
def can(role: str | None, perm: str) -> bool:
    """`{% if request.membership.role|can:"members.manage" %}`"""
    return role_allows(role, perm)


@register.filter
def join_if_list(value) -> str:
    """An audit detail for display: lists as `a, b`."""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
