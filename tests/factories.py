"""factory_boy factories for every tenant model; related rows always share one organization."""

import uuid
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from analytics import models as m


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-botflow-123")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    timezone = "UTC"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = m.Role.VIEWER


class BotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Bot

    organization = factory.SubFactory(OrganizationFactory)
    slug = factory.Sequence(lambda n: f"bot-{n}")
    name = factory.Sequence(lambda n: f"Bot {n}")
    kind = m.Bot.Kind.CHATBOT
    channel = m.Channel.WEB


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Campaign

    organization = factory.SubFactory(OrganizationFactory)
    slug = factory.Sequence(lambda n: f"campaign-{n}")
    name = factory.Sequence(lambda n: f"Campaign {n}")
    status = m.Campaign.Status.ACTIVE


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Conversation

    bot = factory.SubFactory(BotFactory)
    organization = factory.SelfAttribute("bot.organization")
    external_id = factory.Sequence(lambda n: f"conv-{n}")
    customer = "Ana Costa"
    channel = m.Channel.WEB


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Message

    conversation = factory.SubFactory(ConversationFactory)
    bot = factory.SelfAttribute("conversation.bot")
    organization = factory.SelfAttribute("conversation.organization")
    direction = m.Direction.OUTBOUND
    text = "Happy to help!"
    created_at = factory.LazyFunction(timezone.now)
    response_time_ms = 800
    outcome = m.Outcome.SUCCESS
    tokens = 200
    cost_usd = Decimal("0.000500")


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Activity

    bot = factory.SubFactory(BotFactory, kind=m.Bot.Kind.AI_EMPLOYEE)
    organization = factory.SelfAttribute("bot.organization")
    kind = m.Activity.Kind.BOOKING
    description = "Booked check-up"
    customer = "Ben Brown"
    value = Decimal("120.00")


class GaugeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Gauge

    bot = factory.SubFactory(BotFactory)
    organization = factory.SelfAttribute("bot.organization")
    name = "queue_depth"
    value = 42


class EventReceiptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.EventReceipt

    organization = factory.SubFactory(OrganizationFactory)
    event_id = factory.LazyFunction(uuid.uuid4)
    type = "message"


class CustomerErasureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.CustomerErasure

    organization = factory.SubFactory(OrganizationFactory)
    actor_label = "alice"
    fingerprint = factory.Sequence(lambda n: f"{n:064x}")
    counts = factory.LazyFunction(lambda: {"conversations": 1, "messages": 3})


class ApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.ApiKey

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"key-{n}")
    prefix = factory.Sequence(lambda n: f"{n:08x}")
    key_hash = "0" * 64
    scopes = factory.LazyFunction(lambda: ["ingest", "read"])


class ConversationMetricsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.ConversationMetrics

    conversation = factory.SubFactory(ConversationFactory)
    organization = factory.SelfAttribute("conversation.organization")
    bot = factory.SelfAttribute("conversation.bot")
    started_at = factory.SelfAttribute("conversation.started_at")


class BotHourlyRollupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.BotHourlyRollup

    bot = factory.SubFactory(BotFactory)
    organization = factory.SelfAttribute("bot.organization")
    hour = factory.LazyFunction(lambda: timezone.now().replace(minute=0, second=0, microsecond=0))


class BotDailyMetricsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.BotDailyMetrics

    bot = factory.SubFactory(BotFactory)
    organization = factory.SelfAttribute("bot.organization")
    date = factory.LazyFunction(lambda: timezone.now().date())


class OrgHourlyUsageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.OrgHourlyUsage

    organization = factory.SubFactory(OrganizationFactory)
    hour = factory.LazyFunction(lambda: timezone.now().replace(minute=0, second=0, microsecond=0))


class AlertRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.AlertRule

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"rule {n}")
    metric = m.AlertMetric.VOLUME
    warning_threshold = 100.0
    critical_threshold = 200.0
    window_minutes = 5


class AlertEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.AlertEvent

    rule = factory.SubFactory(AlertRuleFactory)
    organization = factory.SelfAttribute("rule.organization")
    rule_name = factory.SelfAttribute("rule.name")
    metric = factory.SelfAttribute("rule.metric")
    severity = m.AlertRule.State.WARNING
    value = 150.0
    threshold = 100.0


class AlertNotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.AlertNotification

    event = factory.SubFactory(AlertEventFactory)
    organization = factory.SelfAttribute("event.organization")
    channel = m.AlertNotification.Channel.EMAIL
    kind = m.AlertNotification.Kind.FIRING
    target = "ops@example.com"
