"""`GET /api/v1/ops/queues`: Celery queues, recent task outcomes and the host's load, for platform
staff only: the figures are every org's, so to anyone else the route does not exist (404)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import redis
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import authentication, exceptions, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.errors import error_response
from analytics.services.ops import host_load, ops_snapshot


class IsPlatformStaff(permissions.BasePermission):
    """Staff sessions only: signed-in non-staff get the 404 of a route that is not there (as an
    org they are not in), anonymous clients the 403 of every API route without credentials."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not user.is_staff:
            raise exceptions.NotFound("Not found.")
        return True


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


class OpsQueuesApi(APIView):
    """Tasks waiting per queue, running now, and the latest outcomes (no task arguments)."""

    authentication_classes = [authentication.SessionAuthentication]
    permission_classes = [IsPlatformStaff]

    @extend_schema(
        operation_id="ops_queues",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="queues, active, recent, totals"),
            403: OpenApiResponse(description="not signed in"),
            404: OpenApiResponse(description="signed in, but not platform staff"),
            503: OpenApiResponse(description="Redis or the broker is unreachable"),
        },
    )
    def get(self, request):
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
                ],
                "host": host_load(),
                "totals": {
                    "waiting": sum(snapshot.queues.values()),
                    "active": len(snapshot.active_tasks),
                    "succeeded": totals["succeeded"],
                    "failed": totals["failed"],
                    "retried": totals["retried"],
                },
            }
        )
