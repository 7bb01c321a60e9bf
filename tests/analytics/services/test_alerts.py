"""Alert rules against real Redis live counters, real PostgreSQL, a real local webhook server."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from analytics.live_keys import bot_key, epoch_minute, org_key
from analytics.models import AlertEvent, AlertNotification, AlertRule
from analytics.redis import get_redis
from analytics.services import alerts as svc
from analytics.tasks.alerts import alert_notification_deliver_task
from dashboard.broadcast import org_group, stream_group
from dashboard.hub import channel_prefix
from tests import factories as f

pytestmark = pytest.mark.django_db


class _Receiver(BaseHTTPRequestHandler):
    status = 200
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server(settings):
    """A real HTTP server on 127.0.0.1 (allowed for this test only: loopback is refused by default)."""
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.ALERT_NOTIFY_BACKOFF = 1
    settings.ALERT_WEBHOOK_TIMEOUT = 2
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def put_messages(org, n: int, *, bot=None, minutes_ago: int = 0, failed: int = 0):
    """n inbound messages (and `failed` failed replies) in one live minute, as ingestion writes."""
    minute = epoch_minute(timezone.now()) - minutes_ago
    pipe = get_redis().pipeline()
    keys = [org_key(org.pk, "m", minute)] + ([bot_key(org.pk, bot.pk, "m", minute)] if bot else [])
    for key in keys:
        pipe.hincrby(key, "in", n)
        if failed:
            pipe.hincrby(key, "out", failed)
            pipe.hincrby(key, "fail", failed)
        pipe.expire(key, 3600)
    pipe.execute()


def clear_minutes(org, bot=None, span: int = 30):
    now = epoch_minute(timezone.now())
    keys = [org_key(org.pk, "m", m) for m in range(now - span, now + 2)]
    if bot:
        keys += [bot_key(org.pk, bot.pk, "m", m) for m in range(now - span, now + 2)]
    get_redis().delete(*keys)


def deliver_all():
    for pk in AlertNotification.objects.filter(status="pending").values_list("pk", flat=True):
        alert_notification_deliver_task.apply(args=[pk])


def test_it_fires_notifies_cools_down_and_recovers(
    org, webhook_server, django_capture_on_commit_callbacks
):
    receiver, url = webhook_server
    rule = svc.alert_rule_prepare(
        f.AlertRuleFactory.build(
            organization=org,
            name="Traffic",
            metric="volume",
            warning_threshold=100,
            critical_threshold=200,
            window_minutes=5,
            cooldown_minutes=30,
            email_recipients="ops@example.com",
            webhook_url=url,
        )
    )
    rule.full_clean()
    rule.save()
    put_messages(org, 150)

    with django_capture_on_commit_callbacks(execute=False):
        stats = svc.alert_rules_evaluate(org_ids=[org.pk])
    assert stats.fired == 1
    event = AlertEvent.objects.for_org(org).get()
    assert (event.status, event.severity, event.value, event.notified) == (
        "firing",
        "warning",
        150,
        True,
    )
    deliver_all()
    assert len(mail.outbox) == 1 and "Traffic" in mail.outbox[0].subject
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    stamp, signature = (part.split("=", 1)[1] for part in headers["x-botflow-signature"].split(","))
    expected = hmac.new(rule.webhook_secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(signature, expected.hexdigest())
    assert json.loads(body)["alert"]["severity"] == "warning"

    # 95 is under the threshold but inside the 10% hysteresis band: still firing, nothing sent
    clear_minutes(org)
    put_messages(org, 95)
    with django_capture_on_commit_callbacks(execute=False):
        svc.alert_rules_evaluate(org_ids=[org.pk])
    assert AlertEvent.objects.for_org(org).get().status == "firing"
    assert AlertNotification.objects.for_org(org).count() == 2

    # well below: recovered, and the recovery is sent to the same channels
    clear_minutes(org)
    put_messages(org, 20)
    with django_capture_on_commit_callbacks(execute=False):
        stats = svc.alert_rules_evaluate(org_ids=[org.pk])
    assert stats.resolved == 1
    event.refresh_from_db()
    assert (event.status, event.resolution) == ("resolved", "recovered")
    deliver_all()
    assert len(mail.outbox) == 2 and "RESOLVED" in mail.outbox[1].subject
    assert json.loads(receiver.received[1][1])["type"] == "alert.resolved"

    # fires again within the cooldown: recorded, not notified
    put_messages(org, 300)
    with django_capture_on_commit_callbacks(execute=False):
        svc.alert_rules_evaluate(org_ids=[org.pk])
    again = AlertEvent.objects.for_org(org).filter(status="firing").get()
    assert again.severity == "critical" and again.notified is False
    assert AlertNotification.objects.for_org(org).count() == 4


def test_a_flapping_metric_notifies_once(org, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    f.AlertRuleFactory(
        organization=org,
        metric="volume",
        warning_threshold=100,
        critical_threshold=None,
        email_recipients="a@example.com",
        cooldown_minutes=60,
    )
    for value in (120, 80, 130, 70, 125, 60):
        clear_minutes(org)
        put_messages(org, value)
        svc.alert_rules_evaluate(org_ids=[org.pk])
    assert AlertEvent.objects.for_org(org).count() == 3  # each firing is in the history
    assert AlertNotification.objects.for_org(org).filter(kind="firing").count() == 1


def test_another_org_never_triggers_or_sees_it(org, other_org):
    rule = f.AlertRuleFactory(
        organization=org, metric="volume", warning_threshold=10, critical_threshold=None
    )
    put_messages(other_org, 500)
    svc.alert_rules_evaluate()
    rule.refresh_from_db()
    assert rule.state == "ok" and not AlertEvent.objects.exists()
    put_messages(org, 50)
    svc.alert_rules_evaluate()
    assert AlertEvent.objects.for_org(org).count() == 1
    assert AlertEvent.objects.for_org(other_org).count() == 0
    assert svc.firing_alerts(org=other_org) == []


def test_a_bot_rule_reads_only_that_bot(org, bot):
    other_bot = f.BotFactory(organization=org, slug="sales")
    f.AlertRuleFactory(
        organization=org, bot=bot, metric="error_rate", warning_threshold=10, critical_threshold=50
    )
    put_messages(org, 5, bot=other_bot, failed=40)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    assert not AlertEvent.objects.exists()
    put_messages(org, 5, bot=bot, failed=40)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    assert AlertEvent.objects.for_org(org).get().severity == "critical"


def test_no_data_fires_after_n_silent_minutes(org):
    f.AlertRuleFactory(
        organization=org,
        metric="no_data",
        warning_threshold=10,
        critical_threshold=None,
        window_minutes=5,
    )
    put_messages(org, 3, minutes_ago=4)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    assert not AlertEvent.objects.exists()
    clear_minutes(org)
    put_messages(org, 3, minutes_ago=12)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    assert AlertEvent.objects.for_org(org).get().value >= 10  # silent for (at least) 10 minutes


def test_a_rule_deleted_while_firing_resolves_cleanly(org):
    rule = f.AlertRuleFactory(organization=org, warning_threshold=10, critical_threshold=None)
    put_messages(org, 50)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    svc.alert_rule_delete(rule=rule)
    event = AlertEvent.objects.for_org(org).get()
    assert (event.status, event.resolution, event.rule_id) == ("resolved", "rule deleted", None)
    svc.alert_rules_evaluate(org_ids=[org.pk])  # nothing left to trip over
    assert svc.firing_alerts(org=org) == []


def test_muted_and_acknowledged_alerts_send_nothing(org):
    rule = f.AlertRuleFactory(
        organization=org,
        warning_threshold=10,
        critical_threshold=100,
        email_recipients="a@example.com",
    )
    svc.alert_rule_mute(rule=rule, duration=timedelta(hours=1))
    put_messages(org, 50)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    event = AlertEvent.objects.for_org(org).get()
    assert event.notified is False and not AlertNotification.objects.exists()
    assert svc.firing_alerts(org=org) == []  # a muted rule leaves the banner alone
    svc.alert_rule_mute(rule=rule, duration=None)
    svc.alert_event_acknowledge(event=event, user=None)
    put_messages(org, 100)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    event.refresh_from_db()
    assert event.severity == "critical" and not AlertNotification.objects.exists()


def test_a_failing_webhook_is_retried_then_recorded_as_failed(org, webhook_server, settings):
    receiver, url = webhook_server
    receiver.status = 500
    settings.ALERT_NOTIFY_MAX_ATTEMPTS = 3
    f.AlertRuleFactory(
        organization=org,
        warning_threshold=10,
        critical_threshold=None,
        webhook_url=url,
        webhook_secret="s3cret",
    )
    put_messages(org, 50)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    notification = AlertNotification.objects.for_org(org).get()
    alert_notification_deliver_task.apply(args=[notification.pk])  # eager retries, no waiting
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("failed", 3)
    assert notification.last_error == "HTTP 500"
    assert len(receiver.received) == 3
    assert AlertEvent.objects.for_org(org).get().status == "firing"  # the alert is never lost
    assert [svc.retry_delay(n) for n in (1, 2, 3)] == [1, 3, 9]


def test_an_unreachable_webhook_fails_without_losing_the_alert(org, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    settings.ALERT_NOTIFY_MAX_ATTEMPTS = 2
    f.AlertRuleFactory(
        organization=org,
        warning_threshold=10,
        critical_threshold=None,
        webhook_url="http://127.0.0.1:9/hook",
        webhook_secret="x",
    )
    put_messages(org, 50)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    n = AlertNotification.objects.for_org(org).get()
    alert_notification_deliver_task.apply(args=[n.pk])
    n.refresh_from_db()
    assert n.status == "failed" and "Connection" in n.last_error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8000/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://10.0.0.5/",
        "ftp://example.com/x",
        "http://u:p@example.com/",
    ],
)
def test_it_refuses_internal_and_non_http_webhooks(url, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    assert svc.webhook_url_check(url)
    with pytest.raises(ValueError):
        svc.webhook_post(url, b"{}", {}, timeout=1)


def test_it_refuses_rules_that_make_no_sense(org):
    cases = [
        ({"warning_threshold": 300, "critical_threshold": 200}, "warning_threshold"),
        (
            {"comparison": "below", "warning_threshold": 10, "critical_threshold": 20},
            "warning_threshold",
        ),
        ({"warning_threshold": None, "critical_threshold": None}, "critical_threshold"),
        ({"window_minutes": 0}, "window_minutes"),
        ({"metric": "nonsense"}, "metric"),
        ({"webhook_url": "gopher://example.com"}, "webhook_url"),
        ({"email_recipients": "not-an-address"}, "email_recipients"),
    ]
    for changes, field in cases:
        rule = f.AlertRuleFactory.build(organization=org, **changes)
        with pytest.raises(ValidationError) as exc:
            rule.full_clean()
        assert field in exc.value.message_dict, changes
    assert not AlertRule.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_pushes_the_banner_and_a_stream_event_when_an_alert_fires(org):
    pubsub = get_redis().pubsub()
    pubsub.subscribe(channel_prefix() + org_group(org.pk), channel_prefix() + stream_group(org.pk))
    pubsub.get_message(timeout=1)
    pubsub.get_message(timeout=1)
    f.AlertRuleFactory(
        organization=org, name="Busy <b>", warning_threshold=10, critical_threshold=None
    )
    put_messages(org, 50)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    frames = {}
    for _ in range(2):
        message = pubsub.get_message(timeout=3)
        frames[message["channel"].decode().removeprefix(channel_prefix())] = message[
            "data"
        ].decode()
    banner = frames[org_group(org.pk)]
    assert 'id="alert-banner"' in banner and 'hx-swap-oob="true"' in banner
    assert "Busy &lt;b&gt;" in banner and "1 alert firing" in banner
    event = json.loads(frames[stream_group(org.pk)])
    assert event["type"] == "alert" and event["data"]["change"] == "firing"
    pubsub.close()


# --- webhook targets: an allow-list of globally routable addresses (issue 11) -----------------

NOT_PUBLIC = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped, hex
    "http://[::a9fe:a9fe]/",  # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 around the metadata address
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/",  # 127.0.0.1 in hex, short form
    "http://017700000001/",  # octal
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0:8000/",
    "http://192.0.0.8/",
    "http://198.18.0.1/",  # benchmarking
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://[fd00::1]/",  # unique local
    "http://[fe80::1]/",
    "http://localhost:8000/",  # a name that resolves to loopback
]
PUBLIC = [
    "http://93.184.215.14/hook",
    "https://[2606:4700:4700::1111]/x",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/",
]


@pytest.mark.parametrize("url", NOT_PUBLIC)
def test_it_refuses_a_webhook_that_is_not_globally_routable_on_save_and_on_send(url, org, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    rule = f.AlertRuleFactory.build(organization=org, webhook_url=url)
    with pytest.raises(ValidationError) as exc:
        rule.full_clean()
    # (Django's URL check already refuses some spellings, such as a decimal host)
    assert exc.value.message_dict["webhook_url"][0] in (
        "Enter a valid URL.",
        svc.webhook_url_check(url)[0],
    )
    assert "not public" in svc.webhook_url_check(url)[0]
    with pytest.raises(ValueError, match="not public"):
        svc.webhook_post(url, b"{}", {}, timeout=1)


@pytest.mark.parametrize("url", PUBLIC)
def test_it_accepts_a_webhook_on_a_public_address(url, org, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    f.AlertRuleFactory.build(organization=org, webhook_url=url).full_clean()


def test_it_checks_the_address_again_at_delivery_and_sends_nothing_to_a_private_one(org, settings):
    """Saved while public, then the host's answer changed (rebinding): nothing reaches it."""
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rule = svc.alert_rule_prepare(
            f.AlertRuleFactory.build(
                organization=org,
                warning_threshold=10,
                critical_threshold=None,
                webhook_url="http://93.184.215.14/hook",
            )
        )
        rule.full_clean()
        rule.save()
        AlertRule.objects.filter(pk=rule.pk).update(
            webhook_url=f"http://localhost:{server.server_address[1]}/hook"
        )
        put_messages(org, 50)
        svc.alert_rules_evaluate(org_ids=[org.pk])
        deliver_all()
    finally:
        server.shutdown()
        server.server_close()
    n = AlertNotification.objects.for_org(org).get()
    assert n.status == "failed" and "not public (127.0.0.1)" in n.last_error
    assert handler.received == []


def test_it_follows_no_redirect(org, webhook_server, settings):
    receiver, url = webhook_server
    receiver.status = 302  # Location-less here; a 3xx is the answer, whatever it points to
    settings.ALERT_NOTIFY_MAX_ATTEMPTS = 1
    f.AlertRuleFactory(
        organization=org,
        warning_threshold=10,
        critical_threshold=None,
        webhook_url=url,
        webhook_secret="s",
    )
    put_messages(org, 50)
    svc.alert_rules_evaluate(org_ids=[org.pk])
    deliver_all()
    n = AlertNotification.objects.for_org(org).get()
    assert (n.status, n.last_error, len(receiver.received)) == ("failed", "HTTP 302", 1)


def test_it_sends_the_host_name_it_was_given_to_the_address_it_checked(org, webhook_server):
    receiver, url = webhook_server
    port = url.split(":")[2].split("/")[0]  # loopback is allowed by the fixture
    assert svc.webhook_post(f"http://localhost:{port}/hook", b"{}", {}, timeout=2) == 200
    assert receiver.received[0][0]["host"] == f"localhost:{port}"


def test_it_caps_the_email_recipients_of_a_rule(org, settings):
    settings.ALERT_MAX_RECIPIENTS = 50
    fifty = ",".join(f"ops{i}@example.com" for i in range(50))
    f.AlertRuleFactory.build(organization=org, email_recipients=fifty).full_clean()
    thousands = "\n".join(f"ops{i}@example.com" for i in range(5000))
    with pytest.raises(ValidationError) as exc:
        f.AlertRuleFactory.build(organization=org, email_recipients=thousands).full_clean()
    assert exc.value.message_dict["email_recipients"] == [
        "At most 50 email addresses per rule (5000 given); use a mailing list for more."
    ]


def test_model_validation_looks_nothing_up_and_the_service_checks_where_a_webhook_goes(
    org, monkeypatch, settings
):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = []
    looked_up, real = [], socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "hooks.internal.example":
            return real(host, port, *args, **kwargs)
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    rule = f.AlertRuleFactory.build(
        organization=org, webhook_url="https://hooks.internal.example/x"
    )
    rule.full_clean()  # thresholds, window, URL shape: no I/O
    assert looked_up == []
    with pytest.raises(ValidationError) as exc:
        svc.alert_rule_create(rule=rule)
    assert "not public (10.1.2.3)" in exc.value.message_dict["webhook_url"][0]
    assert looked_up == ["hooks.internal.example"] and not AlertRule.objects.exists()
