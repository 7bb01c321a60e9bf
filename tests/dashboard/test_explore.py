"""The explorer, transcript, bot and campaign pages and the CSV exports, as a member sees them."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics.models import Bot
from tests import factories as f

NOW = timezone.now()


def _csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def data(org, bot, other_org):
    """Three conversations of Acme and one of Globex that would match every filter."""
    sales = f.BotFactory(organization=org, slug="sales-bot", name="Sales Bot")
    winter = f.CampaignFactory(organization=org, slug="winter", name="Winter", bot=sales)
    refund = f.ConversationFactory(
        bot=bot,
        customer="Ana Costa",
        channel="whatsapp",
        status="resolved",
        csat=5,
        started_at=NOW - timedelta(hours=2),
    )
    f.MessageFactory(
        conversation=refund,
        direction="inbound",
        text="I want a refund for my order",
        response_time_ms=None,
        created_at=NOW - timedelta(hours=2),
    )
    f.MessageFactory(
        conversation=refund,
        text="Your refund is on its way",
        response_time_ms=900,
        created_at=NOW - timedelta(hours=2) + timedelta(seconds=5),
    )
    f.ConversationMetricsFactory(
        conversation=refund,
        total_messages=2,
        duration_seconds=300,
        avg_response_time_ms=900,
        cost_usd=Decimal("0.5"),
    )
    call = f.ConversationFactory(
        bot=sales,
        campaign=winter,
        customer='=HYPERLINK("http://evil")',
        channel="voice",
        status="escalated",
        handoff=True,
        call_outcome="converted",
        started_at=NOW - timedelta(days=3),
    )
    f.MessageFactory(
        conversation=call,
        direction="inbound",
        text='Hello, "quoted", with\nnewline',
        created_at=NOW - timedelta(days=3),
    )
    f.ConversationMetricsFactory(
        conversation=call,
        total_messages=9,
        duration_seconds=60,
        avg_response_time_ms=300,
        cost_usd=Decimal("2"),
    )
    old = f.ConversationFactory(bot=bot, customer="Old Timer", started_at=NOW - timedelta(days=20))
    f.MessageFactory(conversation=old, text="refund policy", created_at=NOW - timedelta(days=20))
    foreign_bot = f.BotFactory(organization=other_org, slug="support-bot")
    foreign = f.ConversationFactory(bot=foreign_bot, customer="Ana Costa", started_at=NOW)
    f.MessageFactory(conversation=foreign, text="refund please")
    return {
        "refund": refund,
        "call": call,
        "old": old,
        "foreign": foreign,
        "sales": sales,
        "winter": winter,
    }


def rows(response) -> list[int]:
    return [c.pk for c in response.context["rows"]]


def test_it_lists_the_orgs_conversations_of_the_last_7_days_newest_first(client, dave, data):
    client.force_login(dave)
    response = client.get("/o/acme/conversations/")
    assert response.status_code == 200
    assert rows(response) == [data["refund"].pk, data["call"].pk]
    assert "Ana Costa" in response.content.decode()
    assert response.context["total"] == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("period=30d", ["refund", "call", "old"]),
        ("period=30d&bot=support-bot", ["refund", "old"]),
        ("period=30d&bot=sales-bot&campaign=winter&handoff=true", ["call"]),
        ("channel=whatsapp&status=resolved&csat=5", ["refund"]),
        ("call_outcome=converted", ["call"]),
        ("customer=ana", ["refund"]),
        ("q=refunds", ["refund"]),  # stemmed: "refunds" finds "refund"
        ("period=30d&q=refund", ["refund", "old"]),
        ("period=30d&q=refund -policy", ["refund"]),
        ('q="on its way"', ["refund"]),
        ("q=nothingmatcheszz", []),
        ("period=30d&sort=-cost", ["call", "refund", "old"]),
        ("period=30d&sort=messages", ["refund", "call", "old"]),
    ],
)
def test_it_combines_filters_search_and_sorting(client, dave, data, query, expected):
    client.force_login(dave)
    response = client.get(f"/o/acme/conversations/?{query}")
    assert response.status_code == 200, response.context["form"].errors
    assert rows(response) == [data[name].pk for name in expected]


@pytest.mark.parametrize("plan", ["rare: GIN lists the conversations", "common: walk and probe"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("period=30d&q=refund", ["refund", "old"]),
        ("period=30d&q=refund -policy", ["refund"]),
        ('q="on its way"', ["refund"]),
        ("q=nothingmatcheszz", []),
    ],
)
def test_both_search_plans_find_the_same_conversations(
    client, dave, data, query, expected, plan, monkeypatch
):
    from analytics import filters

    if plan.startswith("common"):  # as if the planner expected more hits than a rare term has
        monkeypatch.setattr(filters, "RARE_SEARCH_HITS", -1)
    client.force_login(dave)
    response = client.get(f"/o/acme/conversations/?{query}")
    assert rows(response) == [data[name].pk for name in expected]
    summary = response.content.decode()
    assert (f"{len(expected)} conversation" if expected else "No conversations") in summary


def test_it_takes_a_custom_range_of_dates_and_date_times(client, dave, data):
    client.force_login(dave)
    day = (NOW - timedelta(days=20)).date().isoformat()
    assert rows(client.get(f"/o/acme/conversations/?start={day}&end={day}")) == [data["old"].pk]
    start = (NOW - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows(client.get(f"/o/acme/conversations/?start={start}")) == [data["refund"].pk]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("start=2026-13-45", "start", "Enter a valid date"),
        ("start=2026-11-20&end=2026-11-10", "end", "The end must be after the start"),
        ("bot=nope", "bot", "Unknown bot: nope"),
        ("bot=other-bot", "bot", "Unknown bot"),
        ("campaign=nope", "campaign", "Unknown campaign: nope"),
        ("q=" + "x" * 5000, "q", "at most 200 characters"),
        ("q=refund %26 (card | debit)", "q", "remove & ( ) |"),
        ("status=weird", "status", "Select a valid choice"),
        ("sort=-whatever", "sort", "Select a valid choice"),
    ],
)
def test_it_explains_bad_filters_in_the_page_without_a_500(
    client, dave, data, other_org, query, field, message
):
    f.BotFactory(organization=other_org, slug="other-bot")
    client.force_login(dave)
    response = client.get(f"/o/acme/conversations/?{query}")
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert "Please fix these filters" in response.content.decode()


def test_it_clamps_a_range_past_retention_and_says_so(client, dave, data, settings):
    client.force_login(dave)
    response = client.get("/o/acme/conversations/?start=2001-01-01")
    assert response.status_code == 200
    assert "clamped" in response.content.decode()


def test_it_says_when_a_page_is_past_the_end(client, dave, data):
    client.force_login(dave)
    response = client.get("/o/acme/conversations/?page=9")
    assert response.status_code == 200
    assert (
        "Page 9 is past the end of the results (the last page is 1)." in response.content.decode()
    )
    assert "not a page number" in client.get("/o/acme/conversations/?page=abc").content.decode()


def test_it_answers_htmx_with_the_results_only(client, dave, data):
    client.force_login(dave)
    response = client.get("/o/acme/conversations/?q=refund", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="results"')
    assert "<form" not in html


def test_it_shows_the_transcript_with_per_message_facts(client, dave, data):
    client.force_login(dave)
    response = client.get(f"/o/acme/conversations/{data['refund'].pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "I want a refund for my order" in html and "Your refund is on its way" in html
    assert "900 ms" in html and "$0.00050" in html
    assert 'class="flash"' not in html  # the transcript is not Django's flash messages


def test_it_escapes_customer_text(client, dave, bot):
    conversation = f.ConversationFactory(bot=bot, customer="<script>alert(1)</script>")
    f.MessageFactory(conversation=conversation, text="<img src=x onerror=alert(1)>")
    client.force_login(dave)
    html = client.get(f"/o/acme/conversations/{conversation.pk}/").content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;img src=x" in html


def test_it_404s_another_orgs_conversation_bot_and_campaign(client, dave, data, other_org):
    f.CampaignFactory(organization=other_org, slug="globex-only")
    client.force_login(dave)
    assert client.get(f"/o/acme/conversations/{data['foreign'].pk}/").status_code == 404
    assert client.get("/o/acme/campaigns/globex-only/").status_code == 404
    assert client.get("/o/acme/bots/nope/").status_code == 404


def test_the_csv_export_holds_exactly_the_filtered_view(client, dave, data):
    client.force_login(dave)
    response = client.get("/o/acme/conversations/export.csv?period=30d&sort=-cost")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    disposition = response["Content-Disposition"]
    assert 'filename="botflow-acme-conversations-' in disposition
    parsed = _csv(response)
    assert [int(r["id"]) for r in parsed] == [data[n].pk for n in ("call", "refund", "old")]
    call = parsed[0]
    assert call["customer"] == '\'=HYPERLINK("http://evil")'  # neutralised, still readable
    assert call["bot"] == "sales-bot" and call["campaign"] == "winter"
    assert call["handoff"] == "true" and call["call_outcome"] == "converted"
    assert call["started_at"].endswith("Z") and "T" in call["started_at"]
    assert call["messages"] == "9" and call["cost_usd"].startswith("2.")


def test_the_messages_export_round_trips_quotes_commas_and_newlines(client, dave, data):
    client.force_login(dave)
    response = client.get("/o/acme/conversations/export.csv?customer=HYPERLINK&kind=messages")
    parsed = _csv(response)
    assert [r["text"] for r in parsed] == ['Hello, "quoted", with\nnewline']
    assert "messages" in response["Content-Disposition"]


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_it_neutralises_every_formula_prefix(client, dave, bot, text):
    conversation = f.ConversationFactory(bot=bot, customer=text)
    client.force_login(dave)
    parsed = _csv(client.get("/o/acme/conversations/export.csv"))
    assert [r["customer"] for r in parsed if int(r["id"]) == conversation.pk] == ["'" + text]


def test_the_export_refuses_bad_filters_with_the_message(client, dave, data):
    client.force_login(dave)
    response = client.get("/o/acme/conversations/export.csv?end=yesterday")
    assert response.status_code == 400
    assert "Enter a valid date" in response.content.decode()


def test_a_large_export_becomes_a_job_with_a_download_link(client, dave, data, settings):
    from config.celery import app

    settings.EXPORT_ASYNC_ROWS = 1
    app.conf.task_always_eager = True
    try:
        client.force_login(dave)
        response = client.get("/o/acme/conversations/export.csv?period=30d")
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 302
    job_page = client.get(response["Location"])
    assert "Your export is ready." in job_page.content.decode()
    download = job_page.context["job"]
    assert download.rows == 3
    file = client.get(response["Location"] + "download")
    body = b"".join(file.streaming_content).decode()
    assert len(list(csv.DictReader(io.StringIO(body)))) == 3
    # The job is the org's: an outsider's org cannot see it.
    assert client.get(response["Location"].replace("/o/acme/", "/o/globex/")).status_code == 404


def _rollup(bot, hours_ago, **values):
    hour = (NOW - timedelta(hours=hours_ago)).replace(minute=0, second=0, microsecond=0)
    return f.BotHourlyRollupFactory(bot=bot, hour=hour, **values)


def test_the_bot_page_compares_with_the_previous_period(client, dave, bot):
    # This 24 hours: 30 in, 30 out, 27 of 30 replies ok; the 24 before: 10 in, 10 out, 5 of 10.
    _rollup(
        bot,
        3,
        messages_in=30,
        messages_out=30,
        successes=27,
        failures=3,
        tokens=3000,
        cost_usd=Decimal("3"),
        response_count=30,
        response_sum_ms=30 * 800,
        response_hist={"336": 30},
        conversations_ended=4,
        duration_sum_seconds=4 * 150,
    )
    _rollup(
        bot,
        30,
        messages_in=10,
        messages_out=10,
        successes=5,
        failures=5,
        tokens=1000,
        cost_usd=Decimal("1"),
        response_count=10,
        response_sum_ms=10 * 400,
        response_hist={"300": 10},
        conversations_ended=2,
        duration_sum_seconds=2 * 60,
    )
    client.force_login(dave)
    response = client.get("/o/acme/bots/support-bot/?period=24h")
    assert response.status_code == 200
    figures = {fig.id: fig for fig in response.context["figures"]}
    assert figures["messages"].value == "60" and figures["messages"].change == "+200.0%"
    assert (
        figures["success-rate"].value == "90.0%" and figures["success-rate"].change == "+40.0 pts"
    )
    assert figures["success-rate"].tone == "good"
    assert figures["avg-response"].value == "800 ms" and figures["avg-response"].tone == "bad"
    assert figures["cost"].value == "$3.00" and figures["cost"].previous == "$1.00"
    # durations of the conversations that ended in each period, from the same rollups
    assert figures["duration"].value == "2.5 min" and figures["duration"].previous == "60 s"
    html = response.content.decode()
    assert 'id="figure-success-rate"' in html and "+40.0 pts" in html


def test_bot_page_charts_show_hours_without_rollups_as_gaps_not_zeros(client, dave, bot):
    _rollup(bot, 3, messages_in=5, successes=1, tokens=700, cost_usd=Decimal("0.5"))
    client.force_login(dave)
    response = client.get("/o/acme/bots/support-bot/?period=24h")
    chart = next(c for c in response.context["charts"] if c["key"] == "tokens")
    tokens, cost = (trace["y"] for trace in chart["figure"]["data"])
    assert sum(v is not None for v in tokens) == 1 and 700 in tokens
    assert sum(v is not None for v in cost) == 1 and 0.5 in cost
    table = [row["values"] for row in chart["rows"]]
    assert [None, None] in table and [700, 0.5] in table  # "—" in the table, not 0


def test_bot_page_points_drill_down_to_that_bot_and_bucket(client, dave, bot):
    _rollup(bot, 3, messages_in=5, successes=1)
    client.force_login(dave)
    response = client.get("/o/acme/bots/support-bot/?period=24h")
    chart = next(c for c in response.context["charts"] if c["key"] == "volume")
    urls = chart["figure"]["data"][0]["customdata"]
    assert len(urls) == 24
    last = urls[-1]
    assert last.startswith("/o/acme/conversations/?bot=support-bot&start=")
    drilled = client.get(last)
    assert drilled.status_code == 200
    tr = drilled.context["time_range"]
    assert tr.end - tr.start <= timedelta(hours=1)
    assert f'href="{chart["rows"][-1]["url"].replace("&", "&amp;")}"' in response.content.decode()


def test_the_ai_employee_page_shows_calls_bookings_and_revenue(client, dave, org):
    luna = f.BotFactory(organization=org, slug="luna", name="Luna", kind=Bot.Kind.AI_EMPLOYEE)
    _rollup(luna, 2, calls=4, bookings=2, revenue=Decimal("240"))
    client.force_login(dave)
    response = client.get("/o/acme/bots/luna/")
    figures = {fig.id: fig.value for fig in response.context["figures"]}
    assert (
        figures["calls"] == "4" and figures["bookings"] == "2" and figures["revenue"] == "$240.00"
    )


def test_an_unknown_period_says_so(client, dave, bot):
    client.force_login(dave)
    response = client.get("/o/acme/bots/support-bot/?period=99y")
    assert response.status_code == 200
    assert "Unknown period" in response.content.decode()


def test_the_campaign_page_counts_attempts_and_outcomes_with_deltas(client, dave, data):
    sales, winter = data["sales"], data["winter"]
    for outcome in ("answered", "no_answer", "busy"):
        f.ConversationFactory(
            bot=sales, campaign=winter, call_outcome=outcome, started_at=NOW - timedelta(days=1)
        )
    f.ConversationFactory(
        bot=sales, campaign=winter, call_outcome="busy", started_at=NOW - timedelta(days=10)
    )
    client.force_login(dave)
    response = client.get("/o/acme/campaigns/winter/?period=7d")
    figures = {fig.id: fig for fig in response.context["figures"]}
    assert figures["attempts"].value == "4" and figures["attempts"].change == "+300.0%"
    assert figures["answer-rate"].value == "50.0%"  # answered + converted of 4 finished
    assert figures["conversion-rate"].value == "25.0%"
    rows_ = {r["key"]: r for r in response.context["outcome_rows"]}
    assert rows_["busy"]["count"] == 1
    assert "call_outcome=busy" in rows_["busy"]["url"] and "campaign=winter" in rows_["busy"]["url"]
    drilled = client.get(rows_["converted"]["url"])
    assert [c.pk for c in drilled.context["rows"]] == [data["call"].pk]


def test_the_daily_metrics_export(client, dave, bot):
    f.BotDailyMetricsFactory(bot=bot, total_messages=42, success_rate=97.5)
    client.force_login(dave)
    response = client.get("/o/acme/bots/support-bot/daily.csv?period=7d")
    parsed = _csv(response)
    assert parsed[0]["bot"] == "support-bot" and parsed[0]["total_messages"] == "42"


def test_the_nav_links_the_explorer_and_feed_rows_link_the_transcript(client, dave, bot):
    from django.template.loader import render_to_string

    client.force_login(dave)
    html = client.get("/o/acme/").content.decode()
    assert 'href="/o/acme/conversations/"' in html
    feed = render_to_string(
        "dashboard/partials/_feed_rows.html",
        {"feed": [{"customer": "Ana", "conversation": 42, "at": NOW, "text": "hi"}]},
    )
    assert 'href="conversations/42/"' in feed


# --- roles: a viewer reads dashboards and transcripts; exploring and exporting are an analyst's


def test_it_refuses_a_viewer_the_explorer_and_every_csv_export(client, bob, data, bot):
    client.force_login(bob)
    for url in (
        "/o/acme/conversations/",
        "/o/acme/conversations/?q=refund",
        "/o/acme/conversations/export.csv",
        "/o/acme/conversations/export.csv?kind=messages",
        "/o/acme/bots/support-bot/daily.csv",
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "text/csv" not in response["Content-Type"], url
        assert "Your role (Viewer) does not allow this." in response.content.decode(), url


def test_a_viewer_reads_transcripts_and_pages_without_explore_or_export_controls(
    client, bob, data, bot
):
    client.force_login(bob)
    transcript = client.get(f"/o/acme/conversations/{data['refund'].pk}/")
    assert transcript.status_code == 200
    html = client.get("/o/acme/bots/support-bot/").content.decode()
    assert "Daily metrics CSV" not in html and "Conversations of this period" not in html
    nav = client.get("/o/acme/").content.decode()
    assert 'href="/o/acme/conversations/"' not in nav


def test_an_analyst_sees_the_explore_and_export_controls(client, dave, bot):
    client.force_login(dave)
    html = client.get("/o/acme/bots/support-bot/").content.decode()
    assert "Daily metrics CSV" in html and "Conversations of this period" in html


def _large_export(client, user, settings) -> str:
    from config.celery import app

    settings.EXPORT_ASYNC_ROWS = 1
    app.conf.task_always_eager = True
    try:
        client.force_login(user)
        response = client.get("/o/acme/conversations/export.csv?period=30d")
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 302
    return response["Location"]


def test_an_export_file_is_its_creators_and_the_owners_only(
    client, dave, alice, erin, bob, data, settings
):
    job_url = _large_export(client, dave, settings)
    assert client.get(job_url + "download").status_code == 200
    other_analyst = f.MembershipFactory(
        organization=data["call"].organization,
        user=f.UserFactory(username="greta"),
        role="analyst",
    ).user
    for user, status in ((other_analyst, 404), (erin, 404), (bob, 403), (alice, 200)):
        client.force_login(user)
        assert client.get(job_url).status_code == status, user
        assert client.get(job_url + "download").status_code == status, user
