"""The per-process hub: every socket gets every frame, a stalled one is dropped, bursts leave no
members behind."""

import asyncio

import pytest
import redis.asyncio
from asgiref.sync import sync_to_async

from dashboard.broadcast import org_group, publish
from dashboard.hub import QUEUE_SIZE, Hub, Subscriber, channel_prefix, get_hub
from dashboard.presence import group_members
from tests.dashboard.test_consumers import connect, run, session_headers


def recorder(into: list):
    async def send(frame: str) -> None:
        into.append(frame)

    return send


def test_a_stalled_socket_is_dropped_while_the_others_get_every_frame():
    async def scenario():
        hub = Hub()
        never = asyncio.Event()

        async def stalled(frame: str) -> None:
            await never.wait()  # the client stopped reading

        closed = []
        received = [[] for _ in range(3)]
        slow = Subscriber(on_overflow=lambda: closed.append("slow"), send=stalled)
        fast = [
            Subscriber(on_overflow=lambda: closed.append("fast"), send=recorder(r))
            for r in received
        ]
        hub.groups["org.1"] |= {slow, *fast}
        frames = [f"frame {i}" for i in range(QUEUE_SIZE + 10)]
        for frame in frames:
            hub.dispatch("org.1", frame)
        assert closed == ["slow"] and slow.dropped
        assert all(r == frames for r in received)  # every frame, in order, nobody waited
        assert all(s.sending is None for s in fast)  # written in place: no task per frame
        slow.close()
        await asyncio.sleep(0)
        assert slow.sending is None or slow.sending.cancelled()

    run(scenario)


def test_frames_queued_behind_a_waiting_send_follow_it_in_order():
    async def scenario():
        gate = asyncio.Event()
        written = []

        async def send(frame: str) -> None:
            if frame == "f0":
                await gate.wait()  # back-pressure on the first frame
            written.append(frame)

        subscriber = Subscriber(on_overflow=lambda: None, send=send)
        for i in range(3):
            subscriber.offer(f"f{i}")
        assert written == [] and subscriber.sending is not None
        gate.set()
        await asyncio.wait_for(subscriber.sending, 1)
        assert written == ["f0", "f1", "f2"] and not subscriber.dropped
        subscriber.offer("f3")  # the socket keeps up again: written at once
        assert written[-1] == "f3" and subscriber.sending is None

    run(scenario)


def test_a_socket_that_is_gone_gets_no_more_frames_and_others_are_unaffected():
    async def scenario():
        hub = Hub()

        async def gone(frame: str) -> None:
            raise ConnectionError("closed a moment ago")

        dead = Subscriber(on_overflow=lambda: None, send=gone)
        received = []
        alive = Subscriber(on_overflow=lambda: None, send=recorder(received))
        hub.groups["org.1"] |= {dead, alive}
        hub.dispatch("org.1", "a")
        hub.dispatch("org.1", "b")
        assert dead.dropped and received == ["a", "b"]

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_sockets_all_connect_receive_and_leave_no_members(org, alice):
    headers = session_headers(alice)
    n = 250

    async def scenario():
        opened = await asyncio.gather(*(connect("/ws/o/acme/live/", headers) for _ in range(n)))
        assert all(connected for _, connected, _ in opened)  # no failed handshakes
        hub = get_hub()
        group = org_group(org.pk)
        assert len(hub.groups[group]) == n
        await asyncio.wait_for(hub.ready.wait(), 5)
        await sync_to_async(publish)(group, "<div id='x'>one</div>")
        frames = await asyncio.gather(*(c.receive_from(timeout=5) for c, _, _ in opened))
        assert frames == ["<div id='x'>one</div>"] * n
        await asyncio.gather(*(c.disconnect() for c, _, _ in opened))
        assert group not in hub.groups
        for _ in range(50):  # the hub reports the empty process within ~1 s, not at expiry
            if (await sync_to_async(group_members)())[group] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await sync_to_async(group_members)())[group] == 0

    run(scenario)


@pytest.fixture
def own_redis():
    """A Redis server of this test's own, so the test can stop and start it."""
    import socket
    import subprocess
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        proc = None

        def start(self):
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            for _ in range(100):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        return
                time.sleep(0.05)
            raise RuntimeError("redis-server did not start")

        def stop(self):
            self.proc.kill()
            self.proc.wait()

    server = Server()
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_without_redis_sockets_are_told_to_retry_and_come_back_with_it(
    org, alice, own_redis, settings
):
    """Redis lost: open dashboards are closed with 4013 (the page then polls and reconnects),
    new ones are refused until Redis answers again; then frames flow again."""
    settings.REDIS_URL = own_redis.url
    headers = session_headers(alice)

    async def scenario():
        communicator, connected, _ = await connect("/ws/o/acme/live/", headers)
        assert connected
        hub = get_hub()
        await asyncio.wait_for(hub.ready.wait(), 5)

        await sync_to_async(own_redis.stop)()
        closed = await communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4013}
        refused, connected, code = await connect("/ws/o/acme/live/", headers)
        assert not connected and code == 4013  # nothing would be pushed: the page keeps polling

        await sync_to_async(own_redis.start)()
        again, connected, _ = await connect("/ws/o/acme/live/", headers)
        assert connected
        await asyncio.wait_for(hub.ready.wait(), 10)
        client = redis.asyncio.Redis.from_url(own_redis.url)
        await client.publish(channel_prefix() + org_group(org.pk), "<p id='x'>back</p>")
        await client.aclose()
        assert await again.receive_from(timeout=5) == "<p id='x'>back</p>"
        await again.disconnect()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_without_redis_a_stream_socket_is_told_to_retry_too(org, own_redis, settings):
    """An API client's stream would otherwise sit open and silent while nothing can reach it."""
    from analytics.services.api_keys import api_key_create

    settings.REDIS_URL = own_redis.url
    secret = api_key_create(organization=org, name="stream", scopes="read").secret

    async def scenario():
        stream, connected, _ = await connect(
            "/ws/v1/stream", [(b"authorization", f"Bearer {secret}".encode())]
        )
        assert connected
        await asyncio.wait_for(get_hub().ready.wait(), 5)
        await sync_to_async(own_redis.stop)()
        assert await stream.receive_output(timeout=5) == {"type": "websocket.close", "code": 4013}

    run(scenario)
