"""Every route and admin action × every role answers what analytics/roles.py says.

The tables below name, for each org page, session API route and admin model, the permission each
method (or admin operation, or action) needs. The walks compare them with the code (`org_view`'s
`perm`/`post_perm`, the admin's permission methods) and then ask as a viewer, an analyst, an
admin, an owner and an outsider: allowed is 2xx/3xx, a member without the permission gets 403,
an outsider 404. A new route or admin action fails the suite until it is declared here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib import admin
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, include, path, reverse
from django.utils import timezone

from analytics.models import (
    AlertEvent,
    Invitation,
    Membership,
    Organization,
    Role,
    TenantModel,
)
from analytics.roles import PERMISSIONS, RANK, matrix_rows, role_allows
from analytics.services.export import ExportJob, _job_save
from tests import factories as f

ROLES = list(RANK)  # viewer, analyst, admin, owner
WHERE = "tests/test_role_matrix.py"


# --- the tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What a route needs per method; `body` builds a minimal valid POST for one request."""

    get: str | None = None
    post: str | None = None
    body: object = field(default=None, compare=False)


def _rule_form(ctx):
    return {
        "name": f"Rule by {ctx.user}",
        "metric": "volume",
        "comparison": "above",
        "warning_threshold": "100",
        "critical_threshold": "200",
        "window_minutes": "5",
        "cooldown_minutes": "30",
        "hysteresis_percent": "10",
        "email_recipients": "",
        "webhook_url": "",
        "enabled": "on",
    }


#: dashboard route name (under /o/<org>/) -> the permission per method it accepts
PAGES: dict[str, Rule] = {
    "dashboard:org_dashboard": Rule(get="org.view"),
    "dashboard:live_metrics": Rule(get="org.view"),
    "dashboard:period_charts": Rule(get="org.view"),
    "dashboard:conversations": Rule(get="conversations.explore"),
    "dashboard:conversations_export": Rule(get="conversations.export"),
    "dashboard:conversation_detail": Rule(get="conversations.view"),
    "dashboard:export_job": Rule(get="conversations.export"),
    "dashboard:export_job_download": Rule(get="conversations.export"),
    "dashboard:bot_detail": Rule(get="org.view"),
    "dashboard:bot_daily_export": Rule(get="conversations.export"),
    "dashboard:campaign_detail": Rule(get="org.view"),
    "dashboard:insights": Rule(get="org.view"),
    "dashboard:alerts": Rule(get="org.view", post="alerts.manage", body=_rule_form),
    "dashboard:alert_banner": Rule(get="org.view"),
    "dashboard:alert_rule_action": Rule(
        post="alerts.manage", body=lambda ctx: {"action": "disable"}
    ),
    "dashboard:alert_event_ack": Rule(post="alerts.ack", body=lambda ctx: {}),
    "dashboard:team": Rule(
        get="members.manage",
        post="members.manage",
        body=lambda ctx: {
            "email": f"new-{ctx.user.pk}-{uuid.uuid4().hex[:6]}@example.com",
            "role": "viewer",
        },
    ),
    "dashboard:team_member": Rule(
        post="members.manage", body=lambda ctx: {"action": "role", "role": "analyst"}
    ),
    "dashboard:team_invitation_revoke": Rule(post="members.manage", body=lambda ctx: {}),
    "dashboard:audit": Rule(get="audit.view"),
    "dashboard:customer_erase": Rule(
        get="customers.erase",
        post="customers.erase",
        body=lambda ctx: {"customer": f"nobody-{ctx.user.pk}", "action": "erase"},
    ),
}


@dataclass(frozen=True)
class ApiRule:
    """What a signed-in (session) user's role needs per method; API keys use scopes instead."""

    methods: dict[str, str]
    query: str = ""
    body: object = field(default=None, compare=False)


#: API route name -> per method the permission a session user needs (API keys: scopes)
API: dict[str, ApiRule] = {
    "api:realtime": ApiRule({"GET": "org.view"}),
    "api:response-times": ApiRule({"GET": "org.view"}),
    "api:message-volume": ApiRule({"GET": "org.view"}),
    "api:bots": ApiRule({"GET": "org.view"}),
    "api:bot-performance": ApiRule({"GET": "org.view"}),
    "api:bot-percentiles": ApiRule({"GET": "org.view"}),
    "api:campaigns": ApiRule({"GET": "org.view"}),
    "api:campaign-metrics": ApiRule({"GET": "org.view"}),
    "api:conversations": ApiRule({"GET": "conversations.explore"}),
    "api:conversation": ApiRule({"GET": "conversations.view"}),
    "api:system-health": ApiRule({"GET": "org.view"}),
    "api:alert-rules": ApiRule(
        {"GET": "org.view", "POST": "alerts.manage"},
        body=lambda ctx: {
            "name": f"API rule by {ctx.user}",
            "metric": "volume",
            "warning_threshold": 5,
            "window_minutes": 10,
        },
    ),
    "api:alert-rule": ApiRule(
        {"GET": "org.view", "PATCH": "alerts.manage", "DELETE": "alerts.manage"},
        body=lambda ctx: {"enabled": False},
    ),
    "api:alert-rule-mute": ApiRule({"POST": "alerts.manage"}, body=lambda ctx: {"minutes": 30}),
    "api:alert-events": ApiRule({"GET": "org.view"}),
    "api:alert-event-ack": ApiRule({"POST": "alerts.ack"}, body=lambda ctx: {}),
    "api:customer-erase": ApiRule(
        {"POST": "customers.erase"}, body=lambda ctx: {"customer": f"nobody-{ctx.user.pk}"}
    ),
    "api:customer-export": ApiRule({"GET": "customers.export"}, query="&customer=nobody"),
}
#: CSV answers are exports, whatever the route's JSON needs
API_CSV: dict[str, str] = {
    "api:bots": "conversations.export",
    "api:campaigns": "conversations.export",
    "api:conversations": "conversations.export",
}
#: API routes that a session user's org role does not open (keys or platform staff only)
API_NOT_FOR_SESSIONS = {"api:events", "api:ops-queues"}

#: admin model -> the permission for add, change, delete and each action (None: no org role)
ADMIN: dict[str, dict[str, str | None]] = {
    "organization": {"add": None, "change": "org.settings", "delete": None},
    "membership": {
        "add": "members.manage",
        "change": "members.manage",
        "delete": "members.manage",
        "delete_selected": "members.manage",
    },
    "apikey": {
        "add": "apikeys.manage",
        "change": "apikeys.manage",
        "delete": "apikeys.manage",
        "delete_selected": "apikeys.manage",
        "revoke": "apikeys.manage",
    },
    "bot": {
        "add": "bots.manage",
        "change": "bots.manage",
        "delete": "bots.manage",
        "delete_selected": "bots.manage",
    },
    "campaign": {
        "add": "campaigns.manage",
        "change": "campaigns.manage",
        "delete": "campaigns.manage",
        "delete_selected": "campaigns.manage",
    },
    "conversation": {
        "add": "bots.manage",
        "change": "bots.manage",
        "delete": "org.delete",
        "delete_selected": "org.delete",
        "erase_customers": "customers.erase",
    },
    "alertrule": {
        "add": "alerts.manage",
        "change": "alerts.manage",
        "delete": "alerts.manage",
        "delete_selected": "alerts.manage",
        "mute_one_hour": "alerts.manage",
        "unmute": "alerts.manage",
    },
    "alertevent": {"add": None, "change": None, "delete": None, "acknowledge": "alerts.ack"},
    **{
        name: {"add": None, "change": None, "delete": None}
        for name in (
            "message",
            "activity",
            "gauge",
            "eventreceipt",
            "customererasure",
            "conversationmetrics",
            "bothourlyrollup",
            "botdailymetrics",
            "orghourlyusage",
            "alertnotification",
        )
    },
}


# --- walking the URLconf ----------------------------------------------------------------------


def named_routes(prefix: str) -> list[tuple[str, str]]:
    """(route, "namespace:name") for every URL pattern whose route starts with `prefix`."""
    found = []

    def walk(patterns, route_prefix, namespace):
        for p in patterns:
            route = route_prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
                walk(p.url_patterns, route, ns)
            elif isinstance(p, URLPattern) and route.startswith(prefix):
                found.append((route, f"{namespace}{p.name}" if p.name else route))

    walk(get_resolver().url_patterns, "", "")
    return found


def test_it_finds_the_routes_it_walks():
    names = {name for _, name in named_routes("o/")}
    assert "dashboard:alert_event_ack" in names
    assert "api:alert-event-ack" in {name for _, name in named_routes("api/v1/")}


def undeclared_org_routes() -> list[str]:
    """What is missing or different between the org routes, their views and PAGES."""
    problems = []
    for route, name in named_routes("o/<slug:org_slug>/"):
        view = get_resolver().resolve(_fill(route, _DUMMY)).func
        if name not in PAGES:
            problems.append(
                f"{name} ({route}) has no rule: add it to PAGES in {WHERE} with the permission "
                f"each method needs (analytics/roles.py), and wrap the view in org_view(perm=...)"
            )
            continue
        rule = PAGES[name]
        declared = getattr(view, "perm", None)
        expected_get = rule.get or rule.post
        if declared != expected_get or getattr(view, "post_perm", None) != (rule.post or declared):
            problems.append(
                f"{name}: the view says perm={declared!r} post_perm="
                f"{getattr(view, 'post_perm', None)!r}, {WHERE} says get={rule.get!r} "
                f"post={rule.post!r}"
            )
    return problems


def test_every_org_route_declares_its_permissions_here_and_in_the_view():
    assert undeclared_org_routes() == []


def _new_page(request, org_slug):
    return HttpResponse("a page someone just added")


urlpatterns = [
    path("o/<slug:org_slug>/reports/", _new_page, name="reports"),
    path("o/<slug:org_slug>/", include("dashboard.urls")),
]


@pytest.mark.urls(__name__)
def test_it_fails_loudly_for_a_route_nobody_declared():
    problems = undeclared_org_routes()
    assert problems == [
        (
            f"reports (o/<slug:org_slug>/reports/) has no rule: add it to PAGES in {WHERE} with the "
            f"permission each method needs (analytics/roles.py), and wrap the view in "
            f"org_view(perm=...)"
        )
    ]


def test_every_api_route_declares_what_a_session_needs():
    names = {name for _, name in named_routes("api/v1/")}
    problems = [
        f"{name} has no rule: add it to API (or API_NOT_FOR_SESSIONS) in {WHERE}, with the "
        f"permission a signed-in user needs per method"
        for name in sorted(names - set(API) - API_NOT_FOR_SESSIONS)
    ]
    assert problems == []
    assert all(perm in PERMISSIONS for rule in API.values() for perm in rule.methods.values())


# --- requests as each role --------------------------------------------------------------------


@dataclass
class Ctx:
    org: Organization
    user: object
    values: dict[str, str]


@pytest.fixture
def world(org, alice, bot):
    """One row of each kind the routes look up, and one user per role (plus an outsider)."""
    users = {Role.OWNER: alice}
    for role, name in ((Role.VIEWER, "vera"), (Role.ANALYST, "anna"), (Role.ADMIN, "adam")):
        users[role] = f.UserFactory(username=name)
        f.MembershipFactory(organization=org, user=users[role], role=role)
    outsider = f.UserFactory(username="otto")
    f.MembershipFactory(
        organization=f.OrganizationFactory(slug="elsewhere"), user=outsider, role=Role.OWNER
    )
    campaign = f.CampaignFactory(organization=org, slug="winter", bot=bot)
    conversation = f.ConversationFactory(bot=bot, campaign=campaign)
    return {
        "org": org,
        "users": users,
        "outsider": outsider,
        "bot": bot,
        "campaign": campaign,
        "conversation": conversation,
    }


def _ready_export(org, user, tmp_path, settings) -> str:
    """A finished export file started by `user` (its creator)."""
    settings.EXPORT_DIR = str(tmp_path)
    job = ExportJob(
        id=str(uuid.uuid4()),
        org_id=org.pk,
        kind="conversations",
        query="",
        now="2026-12-01T00:00:00+00:00",
        filename="x.csv",
        status="ready",
        rows=0,
        user_id=user.pk,
    )
    job.path.parent.mkdir(parents=True, exist_ok=True)
    job.path.write_text("id\n")
    _job_save(job)
    return job.id


def _values(world, user, route, tmp_path, settings) -> dict[str, str]:
    """Fresh objects for one request, so a POST that deletes or mutes has something to act on."""
    org = world["org"]
    rule = f.AlertRuleFactory(organization=org)
    event = f.AlertEventFactory(rule=rule)
    if "team/members/" in route:  # a fresh viewer, whom admins and owners may promote
        pk = f.MembershipFactory(organization=org, role=Role.VIEWER).pk
    elif "team/invitations/" in route:
        pk = Invitation.objects.create(
            organization=org,
            email=f"{uuid.uuid4().hex[:8]}@example.com",
            token_hash=uuid.uuid4().hex,
            expires_at=timezone.now() + timedelta(days=7),
        ).pk
    else:
        pk = event.pk if "events/" in route else rule.pk
    return {
        "org_slug": org.slug,
        "bot_slug": world["bot"].slug,
        "slug": world["campaign"].slug if "campaigns/" in route else world["bot"].slug,
        "campaign_slug": world["campaign"].slug,
        "conversation_id": world["conversation"].pk,
        "job_id": _ready_export(org, user, tmp_path, settings),
        "pk": pk,
    }


_DUMMY = {"org_slug": "acme", "job_id": "00000000-0000-0000-0000-000000000000"}


def _fill(route: str, values: dict) -> str:
    def sub(match):
        converter, name = match.group(1) or "str", match.group(2)
        if name in values:
            return str(values[name])
        return {"int": "1", "uuid": "00000000-0000-0000-0000-000000000000"}.get(converter, "x")

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", sub, route)


def _expect(perm: str, role: str | None) -> str:
    if role is None:
        return "404"
    return "ok" if role_allows(role, perm) else "403"


def _outcome(status: int) -> str:
    return "ok" if 200 <= status < 400 else str(status)


def test_every_org_route_answers_each_role_as_the_matrix_says(world, tmp_path, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    client = Client()
    failures = []
    people = [*((role, user) for role, user in world["users"].items()), (None, world["outsider"])]
    for route, name in named_routes("o/<slug:org_slug>/"):
        rule = PAGES.get(name)
        if rule is None:
            failures.append(f"{name} ({route}) is not declared in PAGES in {WHERE}")
            continue
        for method, perm in (("get", rule.get), ("post", rule.post)):
            if perm is None:
                continue
            for role, user in people:
                client.force_login(user)
                url = _fill(route, _values(world, user, route, tmp_path, settings))
                data = rule.body(Ctx(world["org"], user, {})) if method == "post" else None
                response = (
                    getattr(client, method)(url, data)
                    if data is not None
                    else (getattr(client, method)(url))
                )
                got, want = _outcome(response.status_code), _expect(perm, role)
                if got != want:
                    failures.append(
                        f"{method.upper()} {url} as {role or 'outsider'}: "
                        f"{response.status_code}, expected {want} ({perm})"
                    )
    assert failures == []


def test_a_get_only_org_route_refuses_post(world, tmp_path, settings):
    """A route that quietly accepts POST must declare what POST needs."""
    client = Client()
    client.force_login(world["users"][Role.OWNER])
    failures = []
    for route, name in named_routes("o/<slug:org_slug>/"):
        if name not in PAGES:
            failures.append(f"{name} ({route}) is not declared in PAGES in {WHERE}")
            continue
        if PAGES[name].post is not None:
            continue
        url = _fill(route, _values(world, world["users"][Role.OWNER], route, tmp_path, settings))
        status = client.post(url).status_code
        if status != 405:
            failures.append(f"POST {url} -> {status}: declare post= for {name} in {WHERE}")
    assert failures == []


def test_every_session_api_route_answers_each_role_as_the_matrix_says(world, tmp_path, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    client = Client()
    failures = []
    people = [*((role, user) for role, user in world["users"].items()), (None, world["outsider"])]
    for route, name in named_routes("api/v1/"):
        if name in API_NOT_FOR_SESSIONS:
            continue
        rule = API.get(name)
        if rule is None:
            failures.append(f"{name} ({route}) is not declared in API in {WHERE}")
            continue
        cases = [(method, perm, "") for method, perm in rule.methods.items()]
        if name in API_CSV:
            cases.append(("GET", API_CSV[name], "&format=csv"))
        for method, perm, extra in cases:
            for role, user in people:
                client.force_login(user)
                url = (
                    _fill(route, _values(world, user, route, tmp_path, settings))
                    + "?org=acme"
                    + rule.query
                    + extra
                )
                kwargs = {}
                if method != "GET" and rule.body is not None:
                    kwargs = {
                        "data": rule.body(Ctx(world["org"], user, {})),
                        "content_type": "application/json",
                    }
                response = getattr(client, method.lower())(url, **kwargs)
                got, want = _outcome(response.status_code), _expect(perm, role)
                if got != want:
                    failures.append(
                        f"{method} {url} as {role or 'outsider'}: "
                        f"{response.status_code}, expected {want} ({perm})"
                    )
    assert failures == []


# --- Django admin -----------------------------------------------------------------------------


def admin_models():
    return [m for m in admin.site._registry if issubclass(m, TenantModel) or m is Organization]


def test_every_admin_model_and_action_declares_its_permissions():
    problems = []
    for model in admin_models():
        name = model._meta.model_name
        if name not in ADMIN:
            problems.append(f"admin model {name} has no rule: add it to ADMIN in {WHERE}")
            continue
        model_admin = admin.site._registry[model]
        declared_actions = set(ADMIN[name]) - {"add", "change", "delete"}
        actions = {a if isinstance(a, str) else a.__name__ for a in (model_admin.actions or ())}
        actions.add("delete_selected")
        for action in sorted(actions - declared_actions):
            if action == "delete_selected" and ADMIN[name]["delete"] is None:
                continue  # shown only to whoever may delete: nobody with an org role
            problems.append(
                f"admin action {name}.{action} has no rule: add it to ADMIN['{name}'] in {WHERE}"
            )
    assert problems == []


@pytest.fixture
def admin_rows(world):
    org, bot = world["org"], world["bot"]
    conversation = world["conversation"]
    rule = f.AlertRuleFactory(organization=org)
    event = f.AlertEventFactory(rule=rule)
    return {
        "organization": org,
        "membership": Membership.objects.get(user=world["users"][Role.VIEWER]),
        "apikey": f.ApiKeyFactory(organization=org),
        "bot": bot,
        "campaign": world["campaign"],
        "conversation": conversation,
        "alertrule": rule,
        "alertevent": event,
        "message": f.MessageFactory(conversation=conversation),
        "activity": f.ActivityFactory(bot=bot),
        "gauge": f.GaugeFactory(bot=bot),
        "eventreceipt": f.EventReceiptFactory(organization=org),
        "customererasure": f.CustomerErasureFactory(organization=org),
        "conversationmetrics": f.ConversationMetricsFactory(conversation=conversation),
        "bothourlyrollup": f.BotHourlyRollupFactory(bot=bot),
        "botdailymetrics": f.BotDailyMetricsFactory(bot=bot),
        "orghourlyusage": f.OrgHourlyUsageFactory(organization=org),
        "alertnotification": f.AlertNotificationFactory(event=event),
    }


def _admin_outcome(client, model, row, operation) -> str:
    """ "ok", "403" (or another status), or "sign-in" when admin sends the user to its login."""
    info = (model._meta.app_label, model._meta.model_name)
    if operation in ("add", "delete", "change"):
        args = [] if operation == "add" else [row.pk]
        url = reverse("admin:{}_{}_{}".format(*info, operation), args=args)
    else:
        url = reverse("admin:{}_{}_changelist".format(*info))
    response = client.get(url)
    if response.status_code == 302 and response["Location"].startswith(reverse("admin:login")):
        return "sign-in"
    if response.status_code != 200:
        return str(response.status_code)
    page = response.content.decode()
    if operation == "change":  # without the permission the page shows the row read-only
        return "ok" if 'name="_save"' in page else "403"
    if operation not in ("add", "delete"):
        return "ok" if f'<option value="{operation}">' in page else "403"
    return "ok"


def test_every_admin_operation_and_action_answers_each_role_as_the_matrix_says(world, admin_rows):
    client = Client()
    failures = []
    for model in admin_models():
        name = model._meta.model_name
        if name not in ADMIN:
            failures.append(f"admin model {name} is not declared in ADMIN in {WHERE}")
            continue
        for operation, perm in ADMIN[name].items():
            for role, user in world["users"].items():
                client.force_login(user)
                got = _admin_outcome(client, model, admin_rows[name], operation)
                if role not in (Role.ADMIN, Role.OWNER):
                    want = "sign-in"  # admin itself is closed to viewers and analysts
                else:
                    want = "ok" if perm is not None and role_allows(role, perm) else "403"
                if got != want:
                    failures.append(f"admin {name}.{operation} as {role}: {got}, expected {want}")
    assert failures == []


def test_viewers_and_analysts_are_sent_to_the_admin_sign_in(world):
    client = Client()
    for role in (Role.VIEWER, Role.ANALYST):
        client.force_login(world["users"][role])
        response = client.get(reverse("admin:analytics_bot_add"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_an_admin_acknowledges_from_admin_and_the_event_records_it(world, admin_rows):
    client = Client()
    adam = world["users"][Role.ADMIN]
    client.force_login(adam)
    event = admin_rows["alertevent"]
    client.post(
        reverse("admin:analytics_alertevent_changelist"),
        {"action": "acknowledge", "_selected_action": [event.pk]},
    )
    assert AlertEvent.objects.get(pk=event.pk).acknowledged_by == adam


# --- the README shows the same matrix ---------------------------------------------------------


def readme_table() -> str:
    header = "| Permission | What it allows | " + " | ".join(r.capitalize() for r in ROLES) + " |"
    lines = [header, "|---|---|" + "---|" * len(ROLES)]
    for perm, description, allowed in matrix_rows():
        marks = " | ".join("✓" if a else "—" for a in allowed)
        lines.append(f"| `{perm}` | {description} | {marks} |")
    return "\n".join(lines)


def test_the_readme_roles_table_matches_roles_py():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert readme_table() in readme, (
        "README's Roles table differs from analytics/roles.py; paste this under ## Roles:\n\n"
        + readme_table()
    )
