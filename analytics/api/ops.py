"""`GET /api/v1/ops/queues`: Celery queues and recent task outcomes, for org admins and staff."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import redis
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import authentication, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.errors import error_response
from analytics.tenancy import admin_org_ids


class IsStaffOrOrgAdmin(permissions.BasePermission):
    message = "Only platform staff and organization owners or admins may see the task queues."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (user.is_staff or admin_org_ids(user)))


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


class OpsQueuesApi(APIView):
    """Tasks waiting per queue, running now, and the latest outcomes (no task arguments)."""

    authentication_classes = [authentication.SessionAuthentication]
    permission_classes = [IsStaffOrOrgAdmin]

    @extend_schema(
        operation_id="ops_queues",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="queues, active, recent, totals"),
            403: OpenApiResponse(description="not signed in, or neither staff nor an org admin"),
            503: OpenApiResponse(description="Redis or the broker is unreachable"),
        },
    )
    def get(self, request):
        from analytics.services.ops import ops_snapshot

        try:
            snapshot = ops_snapshot()
        except (redis.RedisError, OSError) as exc:
            return error_response(f"Task state is unavailable ({exc.__class__.__name__}).", 503)
        totals = Counter()
        for (_, state), n in snapshot.task_runs.items():
            totals[state] += n
        return Response(
            {
                "queues": [{"name": q, "waiting": n} for q, n in snapshot.queues.items()],
                "active": [
                    {"name": a["name"], "started_at": _when(a["at"])} for a in snapshot.active_tasks
                ],
                "recent": [
                    {
                        "name": r["name"],
                        "state": r["state"],
                        "seconds": r["seconds"],
                        "finished_at": _when(r["at"]),
                    }
                    for r in snapshot.recent_tasks
                ],  # fmt: skip
                "totals": {
                    "waiting": sum(snapshot.queues.values()),
                    "active": len(snapshot.active_tasks),
                    "succeeded": totals["succeeded"],
                    "failed": totals["failed"],
                    "retried": totals["retried"],
                },
            }
        )
