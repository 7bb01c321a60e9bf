"""A conversation's transcript with its metrics (stored, or computed from the messages).

Wrapped in org_view (404 for anyone outside the org); the conversation is looked up in the org
only, so another org's id is a 404 like one that does not exist.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from analytics.models import Conversation, Message
from dashboard.views import org_view

TRANSCRIPT_LIMIT = 2_000


@org_view(perm="conversations.view")
@require_GET
def conversation_detail(request, org, conversation_id):
    conversation = get_object_or_404(
        Conversation.objects.for_org(org).select_related("bot", "campaign"), pk=conversation_id
    )
    messages = list(
        Message.objects.for_org(org)
        .filter(conversation_id=conversation.pk)
        .order_by("created_at", "id")[: TRANSCRIPT_LIMIT + 1]
    )
    metrics = getattr(conversation, "metrics", None) if _has_metrics(conversation) else None
    replies = [m for m in messages if m.direction == "outbound"]
    timed = [m.response_time_ms for m in replies if m.response_time_ms is not None]
    computed = {
        "messages": len(messages[:TRANSCRIPT_LIMIT]),
        "avg_response_ms": sum(timed) / len(timed) if timed else None,
        "tokens": sum(m.tokens for m in messages),
        "cost_usd": sum(m.cost_usd for m in messages),
        "kb_hits": sum(1 for m in messages if m.kb_hit),
    }
    return render(
        request,
        "dashboard/conversation_detail.html",
        {
            "org": org,
            "conversation": conversation,
            # Not "messages": base.html shows the messages framework's flash messages under that name.
            "transcript": messages[:TRANSCRIPT_LIMIT],
            "truncated": len(messages) > TRANSCRIPT_LIMIT,
            "metrics": metrics,
            "computed": computed,
        },
    )


def _has_metrics(conversation: Conversation) -> bool:
    try:
        conversation.metrics  # noqa: B018 - a reverse one-to-one raises when missing
    except Conversation.metrics.RelatedObjectDoesNotExist:
        return False
    return True
