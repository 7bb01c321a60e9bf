"""Reads. Every function takes the organization explicitly and returns plain data or querysets.

Selectors never import services: key names come from analytics.live_keys and time maths from
analytics.timeutil. The modules, by what they read:
  bots       the bots a read covers
  live       the live state in Redis (cards, feeds, gauges, AI-employee cards, minute series)
  today      today's figures of every bot
  periods    the chart periods and their buckets
  rollups    which hours are rolled up and current; merged histograms of rolled-up rows
  series     chart series (rollups for completed hours, live minutes for the rest)
  summaries  period summaries and rollup series of bots
  campaigns  campaign status, summaries and outcome series
"""

from analytics.selectors.bots import org_bot_ids
from analytics.selectors.campaigns import (
    CALL_OUTCOME_ORDER,
    CampaignPoint,
    CampaignStatus,
    CampaignSummary,
    campaign_outcome_series,
    campaign_period_summary,
    campaign_status_list,
)
from analytics.selectors.live import (
    EmployeeCard,
    LiveFigure,
    LiveSnapshot,
    MinutePoint,
    ai_employee_cards,
    ingest_rate_per_minute,
    live_activities,
    live_feed,
    live_gauges,
    live_minute_series,
    live_snapshot,
    live_stream_window,
)
from analytics.selectors.periods import (
    DEFAULT_PERIOD,
    PERIOD_LENGTHS,
    PERIODS,
    Bucket,
    Period,
    period_buckets,
    period_get,
)
from analytics.selectors.rollups import daily_hist_days, rollup_pending_hours
from analytics.selectors.series import (
    ResponseTimePoint,
    VolumePoint,
    message_volume_series,
    period_series,
    response_time_series,
)
from analytics.selectors.summaries import (
    PeriodSummary,
    RollupPoint,
    bot_period_summaries,
    bot_period_summary,
    bot_rollup_series,
)
from analytics.selectors.today import BotToday, bot_today_list
from analytics.timeutil import HOUR, org_day_start

__all__ = [
    "CALL_OUTCOME_ORDER",
    "DEFAULT_PERIOD",
    "HOUR",
    "PERIODS",
    "PERIOD_LENGTHS",
    "BotToday",
    "Bucket",
    "CampaignPoint",
    "CampaignStatus",
    "CampaignSummary",
    "EmployeeCard",
    "LiveFigure",
    "LiveSnapshot",
    "MinutePoint",
    "Period",
    "PeriodSummary",
    "ResponseTimePoint",
    "RollupPoint",
    "VolumePoint",
    "ai_employee_cards",
    "bot_period_summaries",
    "bot_period_summary",
    "bot_rollup_series",
    "bot_today_list",
    "campaign_outcome_series",
    "campaign_period_summary",
    "campaign_status_list",
    "daily_hist_days",
    "ingest_rate_per_minute",
    "live_activities",
    "live_feed",
    "live_stream_window",
    "live_gauges",
    "live_minute_series",
    "live_snapshot",
    "message_volume_series",
    "org_bot_ids",
    "org_day_start",
    "period_buckets",
    "period_get",
    "period_series",
    "response_time_series",
    "rollup_pending_hours",
]
