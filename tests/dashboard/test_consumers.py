"""The dashboard socket: who may connect, and what a member receives when pulse publishes."""

import asyncio
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from analytics.services.ingest import events_ingest
from config.asgi import application
from dashboard.broadcast import org_group, publish, pulse_tick
from dashboard.hub import get_hub
from dashboard.presence import connected_viewers


def session_headers(user, origin=b"http://testserver"):
    client = Client()
    client.force_login(user)
    headers = [(b"host", b"testserver"), (b"origin", origin)]
    if user is not None:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def run(coroutine_function):
    # A fresh event loop in its own thread: the browser tests' sync Playwright keeps a loop
    # running in the main thread for the whole session.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_run_then_end_the_rest, coroutine_function).result()


def _run_then_end_the_rest(coroutine_function):
    """asyncio.run, except that it waits at most 5 s for the tasks it cancels at the end, and
    names the ones that ignored their cancellation in a warning: twice on 2026-12-03 a CI run
    hung for good in asyncio.run's close, after the scenario had passed (not reproduced alone)."""
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(coroutine_function())
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        stuck = loop.run_until_complete(asyncio.wait(rest, timeout=5))[1] if rest else set()
        if stuck:
            warnings.warn(f"tasks that ignored their cancellation: {stuck!r}", stacklevel=1)
        else:
            loop.run_until_complete(loop.shutdown_asyncgens())
        return result
    finally:
        loop.close()


def messages(n, conv="c1"):
    return [
        {
            "id": str(uuid.uuid4()),
            "type": "message",
            "bot": "support-bot",
            "conversation": conv,
            "direction": "inbound" if i % 2 == 0 else "outbound",
            "text": f"<b>m{i}</b>",
            **({"response_time_ms": 700, "outcome": "success"} if i % 2 else {}),
        }
        for i in range(n)
    ]


async def connect(path, headers):
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_socket_without_a_session(org):
    async def scenario():
        communicator, connected, code = await connect(
            "/ws/o/acme/live/", [(b"host", b"testserver"), (b"origin", b"http://testserver")]
        )
        assert not connected and code == 4403
        await communicator.disconnect()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_an_outsider(org, charlie):
    headers = session_headers(charlie)

    async def scenario():
        communicator, connected, code = await connect("/ws/o/acme/live/", headers)
        assert not connected and code == 4403
        assert org_group(org.pk) not in get_hub().groups  # never joined

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_foreign_origin(org, alice):
    headers = session_headers(alice, origin=b"https://evil.example")

    async def scenario():
        communicator, connected, _ = await connect("/ws/o/acme/live/", headers)
        assert not connected

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_member_receives_the_rendered_cards_after_a_batch(org, other_org, bot, alice):
    headers = session_headers(alice)

    async def scenario():
        communicator, connected, _ = await connect("/ws/o/acme/live/", headers)
        assert connected
        await asyncio.wait_for(get_hub().ready.wait(), 5)
        await sync_to_async(events_ingest)(org=org, events=messages(6))
        published = await sync_to_async(pulse_tick)()
        assert published >= 1
        frame = await communicator.receive_from(timeout=5)
        assert 'id="live-metrics" hx-swap-oob="true"' in frame
        assert (
            '<span class="label">Messages / hour</span>\n    <span class="value">6</span>' in frame
        )
        assert "700 ms" in frame
        assert 'id="live-feed" hx-swap-oob="true"' in frame
        assert (
            "&lt;b&gt;m5&lt;/b&gt;" in frame and "<b>m5</b>" not in frame
        )  # customer text escaped
        for root in (
            "ai-employees",
            "activity-feed",
            "chart-activity-data",
            "campaign-panel",
            "system-health",
        ):
            assert f'id="{root}" hx-swap-oob="true"' in frame, root
        assert await sync_to_async(connected_viewers)(org.pk) == 1  # reported by this process's hub
        # another org's frame never reaches this socket
        await sync_to_async(publish)(org_group(other_org.pk), "<div>globex</div>")
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        assert org_group(org.pk) not in get_hub().groups

    run(scenario)


def test_a_client_that_stops_reading_is_dropped_not_waited_for():
    from dashboard.hub import QUEUE_SIZE, Subscriber

    async def scenario():
        closed = []
        slow, fast = (
            Subscriber(on_overflow=lambda: closed.append("slow")),
            Subscriber(on_overflow=lambda: None),
        )
        hub = get_hub()
        hub.groups["org.test"] |= {slow, fast}
        for i in range(QUEUE_SIZE + 5):
            hub.dispatch("org.test", f"frame {i}")
            if not fast.queue.empty():
                fast.queue.get_nowait()  # the fast client keeps up
        assert closed == ["slow"] and slow.dropped
        assert not fast.dropped
        hub.groups.clear()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_page_narrowed_to_one_bot_receives_only_that_bots_figures(org, other_org, bot, alice):
    from dashboard import broadcast
    from dashboard.broadcast import scoped_group
    from tests.dashboard.test_stream import wait_for_group
    from tests.factories import BotFactory

    sales = BotFactory(organization=org, slug="sales-bot", name="Sales")
    BotFactory(organization=other_org, slug="claims-bot")
    headers = session_headers(alice)

    async def notice(communicator, message):
        await communicator.send_to(text_data=message)
        frame = await communicator.receive_from(timeout=5)
        assert frame.startswith('<p id="live-notice"')
        return frame

    async def scenario():
        communicator, connected, _ = await connect("/ws/o/acme/live/", headers)
        assert connected
        refused = await notice(communicator, '{"action": "subscribe", "bot": "claims-bot"}')
        assert "No bot with slug &#x27;claims-bot&#x27; in this organization." in refused
        assert "Not valid JSON." in await notice(communicator, "<script>alert(1)</script>")
        assert "at most 65,536 bytes" in await notice(communicator, "x" * 1_000_000)
        assert "Unknown action." in await notice(communicator, '{"action": "dance"}')
        ok = await notice(communicator, '{"action": "subscribe", "bot": "sales-bot"}')
        assert 'class="notice is-empty"' in ok
        group = scoped_group(org.pk, bot_id=sales.pk)
        assert group in get_hub().groups and org_group(org.pk) not in get_hub().groups
        await wait_for_group(group)
        sales_messages = [{**m, "bot": "sales-bot"} for m in messages(2, conv="s1")]
        await sync_to_async(events_ingest)(org=org, events=messages(6) + sales_messages)
        await sync_to_async(pulse_tick)()
        frame = await communicator.receive_from(timeout=5)
        assert 'data-scope="bot:sales-bot"' in frame
        assert (
            '<span class="label">Messages / hour</span>\n    <span class="value">2</span>' in frame
        )
        assert "support-bot" not in frame and "Support Assistant" not in frame  # feed: Sales only
        assert await communicator.receive_nothing(timeout=0.5)  # not the whole org's frame
        back = await notice(communicator, '{"action": "unsubscribe"}')
        assert 'class="notice is-empty"' in back
        await sync_to_async(events_ingest)(org=org, events=messages(1, conv="c2"))
        broadcast._last_rendered.clear()
        await sync_to_async(pulse_tick)()
        frame = await communicator.receive_from(timeout=5)
        assert 'data-scope=""' in frame
        assert (
            '<span class="label">Messages / hour</span>\n    <span class="value">9</span>' in frame
        )
        await communicator.disconnect()
        assert not get_hub().groups

    run(scenario)
