"""Baseline (b) for bench/live.py, the floor: plain `websockets` broadcasting each frame published
on one Redis channel to every open socket (no Django, no ASGI, no per-socket task of ours).

Run:  python bench/baseline_websockets.py PORT REDIS_URL CHANNEL
"""

import asyncio
import sys

import redis.asyncio as aioredis
from websockets.asyncio.server import broadcast, serve


async def main(port: int, redis_url: str, channel: str) -> None:
    sockets = set()

    async def handler(ws):
        sockets.add(ws)
        try:
            await ws.wait_closed()
        finally:
            sockets.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, backlog=4096):
        client = aioredis.Redis.from_url(redis_url)
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                if message["type"] == "message":
                    broadcast(sockets, message["data"].decode())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
