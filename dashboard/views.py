"""Pages. Org pages are wrapped in org_view, the one place that resolves and checks the org."""

from __future__ import annotations

import functools

import redis
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from analytics.redis import get_redis_probe
from analytics.roles import role_allows, role_perms
from analytics.selectors import bot_today_list
from analytics.services.ops import broker_ping, ops_liveness
from analytics.tenancy import get_membership, orgs_for_user
from analytics.timeutil import org_day_start
from dashboard import charts
from dashboard.presenters import live_context, scope_choices, scope_from_query


def org_view(view=None, *, perm: str = "org.view", post_perm: str | None = None):
    """Sign-in required; resolves `org_slug` to the member's org (404 for anyone else) and checks
    the role matrix (403 for a member without `perm`; for a POST, without `post_perm` when it is
    given). `@org_view`, `@org_view(perm="...")` or `@org_view(perm="...", post_perm="...")`."""
    if view is None:
        return functools.partial(org_view, perm=perm, post_perm=post_perm)

    @login_required
    @functools.wraps(view)
    def wrapper(request, org_slug, *args, **kwargs):
        membership = get_membership(request.user, org_slug)
        org = membership.organization
        request.org = org
        request.membership = membership
        request.can = role_perms(membership.role)  # templates hide what the role cannot use
        needed = wrapper.post_perm if request.method == "POST" else perm
        if not role_allows(membership.role, needed):
            raise PermissionDenied(f"Your role ({membership.role}) does not allow this.")
        return view(request, org, *args, **kwargs)

    wrapper.org_scoped = True
    wrapper.perm = perm
    wrapper.post_perm = post_perm or perm
    return wrapper


def permission_denied(request, exception=None):
    """The 403 page (handler403): says which role the user has and that it does not allow this."""
    membership = getattr(request, "membership", None)
    return render(
        request,
        "403.html",
        {
            "org": getattr(request, "org", None),
            "role": membership.get_role_display() if membership else None,
            "reason": str(exception) if exception else "",
        },
        status=403,
    )


@login_required
def home(request):
    """Send the user to their org, or let them pick one."""
    orgs = orgs_for_user(request.user)
    if len(orgs) == 1:
        return redirect("dashboard:org_dashboard", org_slug=orgs[0].slug)
    return render(request, "dashboard/org_picker.html", {"orgs": orgs})


@org_view(perm="org.view")
@require_GET
def live_metrics(request, org):
    """The live fragments alone (whole org, `?bot=` or `?campaign=`): the polling fallback while
    the socket is down, and the fresh snapshot after a reconnect or a change of scope."""
    scope, scope_error = scope_from_query(org, request.GET)
    return render(
        request,
        "dashboard/partials/_live.html",
        {**live_context(org, scope), "scope_error": scope_error},
    )


@org_view(perm="org.view")
@require_GET
def org_dashboard(request, org):
    scope, scope_error = scope_from_query(org, request.GET)
    rows = bot_today_list(org=org)
    totals = {
        "conversations": sum(r.conversations for r in rows),
        "messages": sum(r.messages_in + r.messages_out for r in rows),
        "activities": sum(r.activities for r in rows),
        "revenue": sum(r.revenue for r in rows),
    }
    return render(
        request,
        "dashboard/org_dashboard.html",
        {
            "org": org,
            "rows": rows,
            "totals": totals,
            "day_start": org_day_start(org),
            "scope_error": scope_error,
            "scope_choices": scope_choices(org),
            **live_context(org, scope),
            **charts.period_charts(org, request.GET.get("period"), bot=scope.figures_bot),
        },
    )


@org_view(perm="org.view")
@require_GET
def period_charts(request, org):
    """The response-time and volume charts' data for `?period=24h|7d|30d` (anything else: 24h)
    and the page's scope, as out-of-band fragments; the charts are redrawn in place."""
    scope, _error = scope_from_query(org, request.GET)
    return render(
        request,
        "dashboard/partials/_period_charts.html#fragment",
        {"org": org, **charts.period_charts(org, request.GET.get("period"), bot=scope.figures_bot)},
    )


@never_cache
@require_GET
def healthz(request):
    """Health of what this web process needs (PostgreSQL, Redis, Celery's broker) and the last
    signs of life of the background processes (pulse's tick, the freshest worker heartbeat).

    503 names a service that does not answer: the process cannot serve, take it out of rotation.
    A late or never-seen pulse or worker makes the status "degraded" but keeps 200: the site still
    serves (figures from PostgreSQL, a dashboard that says Stale), and a load balancer must not
    drop every web process because one background process died — alert on the ages instead
    (also in /metrics). Each check has a short timeout, and a failing one is reported, never
    raised."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    liveness = None
    try:
        client = get_redis_probe()
        client.ping()
        checks["redis"] = "ok"
        liveness = ops_liveness(client)
    except (redis.RedisError, OSError) as exc:
        checks.setdefault("redis", f"error: {exc.__class__.__name__}")
    checks["broker"] = broker_ping()
    serving = all(v == "ok" for v in checks.values())
    background = {
        "pulse": {
            "status": liveness.pulse_status if liveness else "unknown",
            "last_tick_age_seconds": _seconds(liveness and liveness.pulse_age),
        },
        "worker": {
            "status": liveness.worker_status if liveness else "unknown",
            "last_heartbeat_age_seconds": _seconds(liveness and liveness.worker_age),
            "alive": liveness.workers_alive if liveness else None,
        },
    }
    healthy = serving and all(b["status"] == "ok" for b in background.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", **checks, **background},
        status=200 if serving else 503,
    )


def _seconds(age: float | None) -> float | None:
    return None if age is None else round(age, 1)
