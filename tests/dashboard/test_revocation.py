"""Access ends when it should: a socket whose session, membership or API key ends is closed
within 2 s (4401 / 4403), on every web process, and receives nothing more."""

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from analytics.models import Membership, Role
from analytics.services.api_keys import api_key_create, api_key_revoke
from config.asgi import application
from dashboard.broadcast import org_group, publish, stream_group
from dashboard.hub import get_hub
from dashboard.revocation import get_revoker, user_group
from tests.dashboard.test_consumers import run
from tests.e2e.live_servers import Servers
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 2.0  # seconds from the revocation to the close, as the issue requires


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_headers(client: Client) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"testserver"),
        (b"origin", b"http://testserver"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]


async def open_page(client: Client, slug: str = "acme") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/o/{slug}/live/", page_headers(client))
    connected, code = await communicator.connect(timeout=5)
    assert connected, code
    return communicator


async def open_stream(secret: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, "/ws/v1/stream", [(b"authorization", f"Bearer {secret}".encode())]
    )
    connected, code = await communicator.connect(timeout=5)
    assert connected, code
    return communicator


async def frames_flow(communicator, group: str) -> None:
    """A frame published now reaches the socket (it is open and subscribed)."""
    await asyncio.wait_for(get_hub().ready.wait(), 5)
    await sync_to_async(publish)(group, "<p>still live</p>")
    assert "still live" in await communicator.receive_from(timeout=5)


async def closed_within(communicator, seconds: float, started: float) -> int:
    """The close code the socket got; asserts no frame came before it and it came in time."""
    output = await communicator.receive_output(timeout=seconds + 1)
    assert output["type"] == "websocket.close", output
    assert time.monotonic() - started <= seconds, time.monotonic() - started
    return output["code"]


async def publish_and_expect_nothing(communicator, group: str) -> None:
    for _ in range(3):
        await sync_to_async(publish)(group, "<p>after the end</p>")
    assert await communicator.receive_nothing(timeout=0.5)


def test_it_closes_the_page_with_4401_on_sign_out_and_sends_nothing_after(org, alice):
    browser, other_browser = signed_in(alice), signed_in(alice)
    group = org_group(org.pk)

    async def scenario():
        page = await open_page(browser)
        other_page = await open_page(other_browser)
        await frames_flow(page, group)
        assert "still live" in await other_page.receive_from(timeout=5)
        started = time.monotonic()
        await sync_to_async(browser.post)("/accounts/logout/")
        assert await closed_within(page, DEADLINE, started) == 4401
        await publish_and_expect_nothing(page, group)
        # The same user's other session is not signed out: its page stays live.
        assert "after the end" in await other_page.receive_from(timeout=5)
        await other_page.disconnect()

    run(scenario)


def test_it_closes_the_page_with_4401_when_its_session_is_deleted(org, alice):
    from django.contrib.sessions.models import Session

    browser = signed_in(alice)

    async def scenario():
        page = await open_page(browser)
        started = time.monotonic()
        key = browser.cookies["sessionid"].value
        await sync_to_async(
            Session.objects.filter(session_key=key).delete
        )()  # admin, clearsessions
        assert await closed_within(page, DEADLINE, started) == 4401

    run(scenario)


def test_it_closes_the_page_with_4403_when_the_member_is_removed(org, other_org, alice):
    MembershipFactory(organization=other_org, user=alice, role=Role.VIEWER)
    browser = signed_in(alice)

    async def scenario():
        acme = await open_page(browser, "acme")
        globex = await open_page(browser, "globex")
        started = time.monotonic()
        await sync_to_async(Membership.objects.filter(organization=org, user=alice).delete)()
        assert await closed_within(acme, DEADLINE, started) == 4403
        await publish_and_expect_nothing(acme, org_group(org.pk))
        await frames_flow(globex, org_group(other_org.pk))  # still a member there
        await globex.disconnect()
        # And a new socket is refused.
        refused = WebsocketCommunicator(application, "/ws/o/acme/live/", page_headers(browser))
        assert await refused.connect(timeout=5) == (False, 4403)

    run(scenario)


def test_it_rechecks_the_page_on_a_role_change(org, alice, bob):
    """Every role may watch the dashboard: a changed role keeps its page, checked again."""
    browser = signed_in(bob)
    membership = Membership.objects.get(organization=org, user=bob)

    async def scenario():
        page = await open_page(browser)
        membership.role = Role.ANALYST
        await sync_to_async(membership.save)()
        await asyncio.sleep(0.5)  # the re-check has run
        await frames_flow(page, org_group(org.pk))
        await page.disconnect()

    run(scenario)


def test_it_closes_the_page_with_4401_when_the_user_is_deactivated_or_deleted(org, alice, bob):
    alice_browser, bob_browser = signed_in(alice), signed_in(bob)

    async def scenario():
        alice_page = await open_page(alice_browser)
        bob_page = await open_page(bob_browser)
        started = time.monotonic()
        alice.is_active = False
        await sync_to_async(alice.save)()
        assert await closed_within(alice_page, DEADLINE, started) == 4401
        started = time.monotonic()
        await sync_to_async(bob.delete)()
        assert await closed_within(bob_page, DEADLINE, started) == 4401

    run(scenario)


def test_it_closes_the_page_with_4401_when_the_password_changes_elsewhere(org, alice):
    browser = signed_in(alice)

    async def scenario():
        page = await open_page(browser)
        started = time.monotonic()
        alice.set_password("a-new-password-456")
        await sync_to_async(alice.save)()
        assert await closed_within(page, DEADLINE, started) == 4401

    run(scenario)


def test_it_closes_the_stream_with_4401_when_its_key_is_revoked(org):
    created = api_key_create(organization=org, name="reader", scopes="read")
    other = api_key_create(organization=org, name="other reader", scopes="read")

    async def scenario():
        stream = await open_stream(created.secret)
        other_stream = await open_stream(other.secret)
        await frames_flow(stream, stream_group(org.pk))
        await other_stream.receive_from(timeout=5)
        await asyncio.sleep(6)  # idle past the layer's 5 s blocking read: still listening
        started = time.monotonic()
        await sync_to_async(api_key_revoke)(api_key=created.api_key)
        assert await closed_within(stream, DEADLINE, started) == 4401
        await publish_and_expect_nothing(stream, stream_group(org.pk))
        for _ in range(3):  # another key's stream is unaffected
            assert "after the end" in await other_stream.receive_from(timeout=5)
        # The key is refused at once, even from this process's 2 s key cache.
        refused = WebsocketCommunicator(
            application, "/ws/v1/stream", [(b"authorization", f"Bearer {created.secret}".encode())]
        )
        assert await refused.connect(timeout=5) == (False, 4403)
        await other_stream.disconnect()

    run(scenario)


def test_it_closes_the_stream_when_its_key_is_deleted_or_loses_read(org):
    deleted = api_key_create(organization=org, name="deleted", scopes="read")
    narrowed = api_key_create(organization=org, name="narrowed", scopes="read,ingest")

    async def scenario():
        first, second = await open_stream(deleted.secret), await open_stream(narrowed.secret)
        started = time.monotonic()
        await sync_to_async(deleted.api_key.delete)()
        assert await closed_within(first, DEADLINE, started) == 4401
        narrowed.api_key.scopes = ["ingest"]
        started = time.monotonic()
        await sync_to_async(narrowed.api_key.save)()
        assert await closed_within(second, DEADLINE, started) == 4403

    run(scenario)


def test_a_burst_of_one_users_sockets_joins_the_users_group_once(org, alice):
    browser = signed_in(alice)
    calls = []

    async def scenario():
        layer = get_revoker().layer
        real_add = layer.group_add

        async def counting_add(group, channel):
            calls.append(group)
            await real_add(group, channel)

        layer.group_add = counting_add
        try:
            pages = await asyncio.gather(*(open_page(browser) for _ in range(20)))
        finally:
            del layer.group_add
        assert calls == [user_group(alice.pk)]
        revoker = get_revoker()
        assert len(revoker.watches[user_group(alice.pk)]) == 20
        for page in pages:
            await page.disconnect()
        await asyncio.sleep(0.2)
        assert user_group(alice.pk) not in revoker.joined  # left once the last socket went

    run(scenario)


def test_the_layer_keeps_waiting_past_its_blocking_read():
    """channels-redis blocks 5 s per BZPOPMIN; redis-py 8 reads with a 5 s timeout by default,
    so an idle receive() raised TimeoutError (and a revoker would miss revocations)."""

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel("idle")

        async def later():
            await asyncio.sleep(6)
            await layer.send(channel, {"type": "force_disconnect"})

        sender = asyncio.create_task(later())
        message = await asyncio.wait_for(layer.receive(channel), 10)
        await sender
        assert message == {"type": "force_disconnect"}

    run(scenario)


def test_a_revocation_in_another_process_closes_sockets_on_a_real_server(org, alice):
    """daphne in its own process; sign-out and key revocation happen in this one."""
    browser = signed_in(alice)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    key = api_key_create(organization=org, name="cross", scopes="read")
    servers = Servers()
    servers.start_web()

    def end_access_from_a_thread():
        browser.post("/accounts/logout/")
        api_key_revoke(api_key=key.api_key)

    async def close_code(socket) -> int | None:
        try:
            while True:
                await asyncio.wait_for(socket.recv(), DEADLINE + 1)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def scenario():
        base = servers.url.replace("http://", "ws://")
        page = await ws_connect(
            f"{base}/ws/o/acme/live/", additional_headers={"Cookie": cookie}, origin=servers.url
        )
        stream = await ws_connect(
            f"{base}/ws/v1/stream", additional_headers={"Authorization": f"Bearer {key.secret}"}
        )
        await asyncio.sleep(0.5)
        await asyncio.to_thread(publish, org_group(org.pk), "<p>before</p>")
        assert "before" in await asyncio.wait_for(page.recv(), 5)
        started = time.monotonic()
        thread = threading.Thread(target=end_access_from_a_thread)
        thread.start()
        codes = await asyncio.gather(close_code(page), close_code(stream))
        thread.join()
        assert codes == [4401, 4401]
        assert time.monotonic() - started <= DEADLINE + 0.5  # both, one after the other

    try:
        run(scenario)
    finally:
        servers.stop()


@pytest.mark.timeout(60)  # before the fix this test hung at the loop's close, like that CI run
def test_the_revoker_stops_when_cancelled_whatever_the_layer_raises(org, alice):
    """A CI run hung for good at an event loop's close: a task that turns its cancellation into
    another error inside a `while True` loop with `except Exception` is never cancelled. The
    layer is made to do that here (channels-redis can raise KeyError from its cancel path)."""

    async def scenario():
        revoker = get_revoker()
        real_receive = revoker.layer.receive

        async def receive_that_mangles_cancel(channel):
            try:
                return await real_receive(channel)
            except asyncio.CancelledError:
                raise KeyError(channel) from None

        revoker.layer.receive = receive_that_mangles_cancel
        page = await open_page(signed_in(alice))
        await page.disconnect()
        await asyncio.sleep(0.2)  # the listener is waiting in receive()
        revoker.task.cancel()
        done, _ = await asyncio.wait({revoker.task}, timeout=3)
        assert done, "the revoker's listener ignored its cancellation"

    run(scenario)
