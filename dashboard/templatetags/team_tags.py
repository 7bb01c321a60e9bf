"""Template helpers of the team and audit pages."""

from django import template

register = template.Library()


@register.filter
def join_if_list(value) -> str:
    """An audit detail for display: lists as `a, b`."""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


@register.filter
def kind_label(value) -> str:
    """A receipt's count name for display: `live_feed_entries` -> `Live feed entries`."""
    return str(value).replace("_", " ").capitalize()
