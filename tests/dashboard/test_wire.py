"""Under daphne, the hub writes each frame, framed once, straight to every socket's transport."""

import asyncio
import time

import pytest
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dashboard.broadcast import org_group, publish
from dashboard.hub import WIRE_BUFFER_LIMIT, text_frame
from dashboard.presence import group_members
from tests.dashboard.test_consumers import run
from tests.e2e.live_servers import Servers


def test_text_frames_use_every_length_encoding():
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 300)[:4] == b"\x81\x7e\x01\x2c"
    assert text_frame(b"y" * 70_000)[:10] == b"\x81\x7f" + (70_000).to_bytes(8, "big")


@pytest.mark.django_db(transaction=True)
def test_every_socket_gets_exact_frames_and_a_stalled_reader_is_dropped(org, alice):
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    servers = Servers()
    servers.start_web()
    group = org_group(org.pk)

    async def scenario():
        url = servers.url.replace("http://", "ws://") + "/ws/o/acme/live/"
        options = {
            "additional_headers": {"Cookie": cookie},
            "origin": servers.url,
            "compression": None,
            "max_size": None,
        }
        async with connect(url, **options) as fast, connect(url, max_queue=1, **options) as stalled:
            deadline = time.monotonic() + 10
            while group_members()[group] < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert group_members()[group] == 2
            await asyncio.sleep(0.3)  # the hub's subscription is up (it reported the group)

            frames = ["<p id='a'>café ✓</p>", "x" * 300, "y" * 70_000]  # 7-, 16- and 64-bit lengths
            for frame in frames:
                publish(group, frame)
            assert [await asyncio.wait_for(fast.recv(), 5) for _ in frames] == frames
            assert [await asyncio.wait_for(stalled.recv(), 5) for _ in frames] == frames

            # `stalled` stops reading; 400 frames of 60 KB (24 MB) overrun its buffers.
            big = "z" * 60_000
            sent = 400

            async def publish_all():  # paced, so a reader that keeps up can (same event loop)
                for _ in range(sent):
                    await asyncio.to_thread(publish, group, big)
                    await asyncio.sleep(0.005)

            async def read_all():
                return [await asyncio.wait_for(fast.recv(), 10) for _ in range(sent)]

            _, got = await asyncio.gather(publish_all(), read_all())
            assert len(got) == sent and set(got) == {big}  # the reader that keeps up gets all

            stalled_got = 0
            try:
                while True:
                    await asyncio.wait_for(stalled.recv(), 10)
                    stalled_got += 1
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            assert stalled_got < sent  # dropped, not served forever
            assert stalled_got * 60_000 < sent * 60_000 - WIRE_BUFFER_LIMIT
            assert code in (4408, None)  # our close, or the TCP connection cut after it

    try:
        run(scenario)
    finally:
        servers.stop()
