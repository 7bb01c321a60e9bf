"""Baseline (a) for bench/live.py: a bare Channels consumer that only forwards `group_send` frames.

Served by daphne (`daphne bench.baseline_channels:application`), on the project's channel layer
settings (channels-redis core layer) under a private prefix. No authentication, no hub: every
socket joins one group and each frame goes through `group_send` -> one handler call per socket,
the standard Channels path.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

GROUP = "bench-baseline"
# A roomy pool so the baseline's connect burst measures the fan-out, not redis-py's 100-connection
# default (which fails group_add at once when exhausted).
settings.CHANNEL_LAYERS["default"]["CONFIG"].update(
    hosts=[{"address": settings.REDIS_URL, "max_connections": 10_000}],
    prefix=os.environ["BENCH_LAYER_PREFIX"],
)


class ForwardConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def frame(self, message):
        await self.send(text_data=message["text"])


application = ProtocolTypeRouter({"websocket": ForwardConsumer.as_asgi()})
