"""WebSocket consumers: authenticate in connect(), join only the org's group, then only forward."""

from __future__ import annotations

import asyncio
import contextlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from analytics.tenancy import get_org_for_user
from dashboard.broadcast import Subscriber, get_hub, org_group

CLOSE_FORBIDDEN = 4403  # not signed in, or not a member of this org
CLOSE_TOO_SLOW = 4408  # the client fell too far behind


@database_sync_to_async
def _resolve_org(user, slug: str):
    try:
        return get_org_for_user(user, slug)
    except Http404:
        return None


class DashboardConsumer(AsyncWebsocketConsumer):
    """`/ws/o/<org>/live/`: pushes the org's rendered fragments (HTMX out-of-band swaps)."""

    group: str | None = None

    async def connect(self):
        org = await _resolve_org(
            self.scope.get("user"), self.scope["url_route"]["kwargs"]["org_slug"]
        )
        if org is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        self.group = org_group(org.pk)
        self.subscriber = Subscriber(on_overflow=self._too_slow)
        self.writer = asyncio.get_running_loop().create_task(self._write())
        get_hub().join(self.group, self.subscriber)

    async def _write(self):
        while True:
            frame = await self.subscriber.queue.get()
            await self.send(text_data=frame)

    def _too_slow(self):
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_TOO_SLOW))

    async def receive(self, text_data=None, bytes_data=None):
        # The dashboard socket is push-only; whatever a client sends is ignored.
        return

    async def disconnect(self, code):
        if self.group is not None:
            get_hub().leave(self.group, self.subscriber)
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.writer
