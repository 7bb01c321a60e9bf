"""The domain model, one module per seam; every model is re-exported here, so callers import
from `analytics.models` and Django's app registry finds them all.

- tenancy: the organization, the tenant base class and its queryset, members and roles,
  invitations, the audit log and the customer erasure trail
- catalog: bots, campaigns and API keys
- events: conversations, messages, activities, gauges and event receipts
- rollups: conversation metrics, hourly and daily rollups, their bookkeeping, insight reports
- alerts: alert rules, the events they fire and their notifications
"""

from analytics.models.alerts import AlertEvent, AlertMetric, AlertNotification, AlertRule
from analytics.models.catalog import ApiKey, Bot, Campaign, Channel
from analytics.models.events import (
    Activity,
    CallOutcome,
    Conversation,
    Direction,
    EventReceipt,
    Gauge,
    Message,
    Outcome,
)
from analytics.models.rollups import (
    DAILY_FIGURES,
    DAILY_MEASURES,
    HOURLY_COUNTERS,
    HOURLY_MEASURES,
    BotDailyMetrics,
    BotHourlyRollup,
    ConversationMetrics,
    InsightReport,
    OrgHourlyUsage,
    RollupBackfill,
    RollupBackfillUnit,
    RollupDirtyDay,
    RollupDirtyHour,
)
from analytics.models.tenancy import (
    ADMIN_ROLES,
    RAW_RETENTION_DEFAULT,
    RAW_RETENTION_MAX,
    RAW_RETENTION_MIN,
    AuditEvent,
    CustomerErasure,
    Invitation,
    Membership,
    Organization,
    OrgQuerySet,
    Role,
    TenantModel,
    _validate_timezone,  # migration 0001 names it as analytics.models._validate_timezone
    unenforced_fk,
)

__all__ = [
    "ADMIN_ROLES",
    "DAILY_FIGURES",
    "DAILY_MEASURES",
    "HOURLY_COUNTERS",
    "HOURLY_MEASURES",
    "RAW_RETENTION_DEFAULT",
    "RAW_RETENTION_MAX",
    "RAW_RETENTION_MIN",
    "Activity",
    "AlertEvent",
    "AlertMetric",
    "AlertNotification",
    "AlertRule",
    "ApiKey",
    "AuditEvent",
    "Bot",
    "BotDailyMetrics",
    "BotHourlyRollup",
    "CallOutcome",
    "Campaign",
    "Channel",
    "Conversation",
    "ConversationMetrics",
    "CustomerErasure",
    "Direction",
    "EventReceipt",
    "Gauge",
    "InsightReport",
    "Invitation",
    "Membership",
    "Message",
    "OrgHourlyUsage",
    "OrgQuerySet",
    "Organization",
    "Outcome",
    "Role",
    "RollupBackfill",
    "RollupBackfillUnit",
    "RollupDirtyDay",
    "RollupDirtyHour",
    "TenantModel",
    "_validate_timezone",
    "unenforced_fk",
]
