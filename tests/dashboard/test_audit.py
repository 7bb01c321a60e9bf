"""The audit log: what members and keys did to the org is on the owner's /o/<org>/audit/ page,
with who, what, when and from where, filterable, newest first; nobody else reads it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.models import ApiKey, AuditEvent, Membership, Role
from analytics.services.api_keys import api_key_issue_secret
from analytics.services.audit import audit_record
from tests import factories as f

IP = "203.0.113.7"


def member(org, role, username):
    return f.MembershipFactory(organization=org, user=f.UserFactory(username=username), role=role)


def audit_rows(client, org, query: str = "") -> list[dict[str, str]]:
    """The audit table as [{column: text}], as the owner sees it."""
    response = client.get(f"/o/{org.slug}/audit/{query}")
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    if 'id="audit-events"' not in html:
        return []
    table = html.split('id="audit-events"', 1)[1].split("</table>", 1)[0]
    head = [
        " ".join(re.sub(r"<[^>]+>", " ", h).split())
        for h in re.findall(r"<th[^>]*>(.*?)</th>", table.split("</thead>")[0])
    ]
    rows = []
    for tr in re.findall(r"<tr id=\"audit-\d+\".*?</tr>", table, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        rows.append(
            {
                h: " ".join(re.sub(r"<[^>]+>", " ", c).split())
                for h, c in zip(head, cells, strict=True)
            }
        )
    return rows


@pytest.fixture
def erin(org):
    return member(org, Role.ADMIN, "erin")


def test_it_shows_keys_rules_and_exports_with_actor_and_ip(client, org, alice, erin, bot):
    # erin (admin) creates and revokes an API key in admin, from 203.0.113.7
    client.force_login(erin.user)
    client.post(
        reverse("admin:analytics_apikey_add"),
        {"organization": org.pk, "name": "warehouse", "scopes": ["read"]},
        REMOTE_ADDR=IP,
    )
    key = ApiKey.objects.get(name="warehouse")
    client.post(
        reverse("admin:analytics_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
        REMOTE_ADDR=IP,
    )
    # erin disables a rule on the alerts page
    rule = f.AlertRuleFactory(organization=org, name="Slow replies")
    client.post(
        reverse("dashboard:alert_rule_action", args=[org.slug, rule.pk]),
        {"action": "disable"},
        REMOTE_ADDR=IP,
    )
    # an API key with the alerts scope changes a threshold
    alerts_key = f.ApiKeyFactory.build(organization=org, scopes=["alerts"])
    secret = api_key_issue_secret(alerts_key)
    alerts_key.save()
    response = client.patch(
        reverse("api:alert-rule", args=[rule.pk]),
        {"warning_threshold": 150},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        REMOTE_ADDR="198.51.100.4",
    )
    assert response.status_code == 200, response.content
    # an analyst downloads the conversations CSV
    ann = member(org, Role.ANALYST, "ann")
    client.force_login(ann.user)
    export = client.get(
        f"/o/{org.slug}/conversations/export.csv?period=7d&bot={bot.slug}", REMOTE_ADDR=IP
    )
    assert export.status_code == 200
    b"".join(export.streaming_content)

    export_name = re.search(r'filename="([^"]+)"', export["Content-Disposition"]).group(1)
    client.force_login(alice)
    rows = audit_rows(client, org)

    seen = [(r["Who"], r["What"].split()[0], r["Target"], r["From"]) for r in rows]
    assert seen == [
        ("ann", "export.downloaded", export_name, IP),
        (f"API key {alerts_key.prefix}", "alert_rule.changed", "Slow replies", "198.51.100.4"),
        ("erin", "alert_rule.changed", "Slow replies", IP),
        ("erin", "apikey.revoked", f"warehouse ({key.prefix})", IP),
        ("erin", "apikey.created", f"warehouse ({key.prefix})", IP),
    ]
    assert "changed: warning_threshold" in rows[1]["Details"]
    assert "action: disable" in rows[2]["Details"]
    assert "scopes: read" in rows[4]["Details"]
    assert "filters: bot, period" in rows[0]["Details"]
    assert "What" in rows[0] and "Export downloaded" in rows[0]["What"]


def test_it_records_the_api_csv_and_the_bot_daily_csv(client, org, alice, bot):
    from analytics.services.api_keys import api_key_create

    created = api_key_create(organization=org, name="bi", scopes="read")
    response = client.get(
        "/api/v1/conversations/?format=csv&period=24h",
        HTTP_AUTHORIZATION=f"Bearer {created.secret}",
        REMOTE_ADDR=IP,
    )
    assert response.status_code == 200
    b"".join(response.streaming_content)
    client.force_login(alice)
    daily = client.get(f"/o/{org.slug}/bots/{bot.slug}/daily.csv", REMOTE_ADDR=IP)
    assert daily.status_code == 200

    rows = audit_rows(client, org, "?action=export.downloaded")

    assert [(r["Who"], r["Target"].split("-")[2]) for r in rows] == [
        ("alice", "daily"),
        (f"API key {created.api_key.prefix}", "conversations"),
    ]


def test_it_records_a_background_exports_download_not_its_start(client, org, alice, bot, settings):
    from config.celery import app

    f.ConversationFactory.create_batch(2, bot=bot)
    ann = member(org, Role.ANALYST, "ann")
    client.force_login(ann.user)
    settings.EXPORT_ASYNC_ROWS = 1
    app.conf.task_always_eager = True
    try:
        started = client.get(f"/o/{org.slug}/conversations/export.csv?period=7d")
    finally:
        app.conf.task_always_eager = False
    assert started.status_code == 302
    assert not AuditEvent.objects.exists()  # nothing has left the building yet
    file = client.get(started["Location"] + "download", REMOTE_ADDR=IP)
    assert file.status_code == 200
    b"".join(file.streaming_content)

    client.force_login(alice)
    rows = audit_rows(client, org)

    assert [(r["Who"], r["What"].split()[0], r["From"]) for r in rows] == [
        ("ann", "export.downloaded", IP)
    ]
    assert "kind: conversations" in rows[0]["Details"]
    assert rows[0]["Target"].startswith("botflow-acme-conversations-")


def test_it_keeps_invitations_and_member_changes(client, org, alice, mailoutbox):
    client.force_login(alice)
    client.post(
        reverse("dashboard:team", args=[org.slug]),
        {"email": "dana@example.com", "role": "analyst"},
        REMOTE_ADDR=IP,
    )
    token = re.search(r"/invite/([\w-]+)/", mailoutbox[0].body).group(1)
    client.logout()
    client.post(
        f"/invite/{token}/",
        {"username": "dana", "password": "a-long-secret-97", "password_again": "a-long-secret-97"},
        REMOTE_ADDR="192.0.2.8",
    )
    client.force_login(alice)
    dana = Membership.objects.get(user__username="dana")
    client.post(
        reverse("dashboard:team_member", args=[org.slug, dana.pk]),
        {"action": "role", "role": "viewer"},
        REMOTE_ADDR=IP,
    )
    client.post(
        reverse("dashboard:team_member", args=[org.slug, dana.pk]),
        {"action": "remove"},
        REMOTE_ADDR=IP,
    )

    rows = audit_rows(client, org)

    assert [(r["Who"], r["What"].split()[0], r["Target"], r["From"]) for r in rows] == [
        ("alice", "member.removed", "dana", IP),
        ("alice", "member.role_changed", "dana", IP),
        ("dana", "member.joined", "dana", "192.0.2.8"),
        ("alice", "member.invited", "dana@example.com", IP),
    ]
    assert "from: analyst" in rows[1]["Details"] and "to: viewer" in rows[1]["Details"]


def test_it_is_for_owners_only(client, org, alice, erin, bob, charlie):
    audit_record(org=org, actor=alice, action="member.invited", target="x@example.com")
    url = f"/o/{org.slug}/audit/"

    client.force_login(erin.user)
    assert client.get(url).status_code == 403
    assert 'href="/o/acme/audit/"' not in client.get(f"/o/{org.slug}/alerts/").content.decode()
    client.force_login(bob)
    assert client.get(url).status_code == 403
    client.force_login(charlie)
    assert client.get(url).status_code == 404
    client.force_login(alice)
    page = client.get(url).content.decode()
    assert "x@example.com" in page and 'href="/o/acme/audit/"' in page


def test_it_never_shows_another_orgs_events(client, org, other_org, alice, charlie):
    audit_record(org=other_org, actor=charlie, action="apikey.created", target="secret-project")
    client.force_login(alice)
    assert audit_rows(client, org) == []
    assert "secret-project" not in client.get(f"/o/{org.slug}/audit/").content.decode()


def test_it_filters_by_action_actor_and_day(client, org, alice, erin):
    now = timezone.now()
    for days, actor, action in [
        (0, alice, "apikey.created"),
        (1, erin.user, "apikey.revoked"),
        (3, erin.user, "apikey.created"),
        (10, alice, "member.invited"),
    ]:
        entry = audit_record(org=org, actor=actor, action=action, target=f"t{days}")
        AuditEvent.objects.filter(pk=entry.pk).update(created_at=now - timedelta(days=days))
    client.force_login(alice)

    def targets(query):
        return [r["Target"] for r in audit_rows(client, org, query)]

    assert targets("") == ["t0", "t1", "t3", "t10"]
    assert targets("?action=apikey.created") == ["t0", "t3"]
    assert targets("?actor=erin") == ["t1", "t3"]
    assert targets("?actor=erin&action=apikey.created") == ["t3"]
    day = lambda d: (now - timedelta(days=d)).date().isoformat()  # noqa: E731
    assert targets(f"?start={day(3)}&end={day(1)}") == ["t1", "t3"]
    assert targets(f"?end={day(5)}") == ["t10"]


def test_it_refuses_bad_filters_with_a_message(client, org, alice):
    audit_record(org=org, actor=alice, action="apikey.created", target="k")
    client.force_login(alice)
    for query in ("?action=drop.table", "?start=yesterday", "?start=2026-13-40"):
        response = client.get(f"/o/{org.slug}/audit/{query}")
        assert response.status_code == 400, query
        assert "Please fix these filters" in response.content.decode()
    # A NUL never reaches the page: the input guard refuses it first (config/input_guard.py).
    response = client.get(f"/o/{org.slug}/audit/?actor=%00")
    assert response.status_code == 400
    assert "must not contain NUL" in response.content.decode()


def test_it_pages_newest_first(client, org, alice):
    now = timezone.now()
    for n in range(55):
        entry = audit_record(org=org, actor=alice, action="apikey.created", target=f"key-{n}")
        AuditEvent.objects.filter(pk=entry.pk).update(created_at=now - timedelta(minutes=n))
    client.force_login(alice)

    first = audit_rows(client, org)
    second = audit_rows(client, org, "?page=2")

    assert len(first) == 50 and first[0]["Target"] == "key-0"
    assert [r["Target"] for r in second] == [f"key-{n}" for n in range(50, 55)]
    page = client.get(f"/o/{org.slug}/audit/?page=2").content.decode()
    assert "Page 2 of 2 · 55 events" in page
    assert client.get(f"/o/{org.slug}/audit/?page=999999999999999999999").status_code == 200


def test_it_records_member_changes_made_in_django_admin(client, org, alice, erin):
    bob = member(org, Role.VIEWER, "bob")
    client.force_login(erin.user)
    client.post(
        reverse("admin:analytics_membership_change", args=[bob.pk]),
        {"role": "analyst", "created_at_0": "2026-11-01", "created_at_1": "10:00:00"},
        REMOTE_ADDR=IP,
    )
    client.post(
        reverse("admin:analytics_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [bob.pk], "post": "yes"},
        REMOTE_ADDR=IP,
    )
    assert not Membership.objects.filter(pk=bob.pk).exists()

    client.force_login(alice)
    rows = audit_rows(client, org)

    assert [(r["Who"], r["What"].split()[0], r["Target"], r["From"]) for r in rows] == [
        ("erin", "member.removed", "bob", IP),
        ("erin", "member.role_changed", "bob", IP),
    ]
    assert "to: analyst" in rows[1]["Details"]
