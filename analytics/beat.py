"""Celery beat's scheduler: django-celery-beat's DatabaseScheduler, riding out a PostgreSQL outage
the way every other long-running loop does (config.outage) — one WARNING when the database goes,
one INFO with the outage's length when it is back — instead of a traceback on every tick (the
library logs `Database gave error` with its traceback each time it cannot read the schedule).
While the database is away beat keeps the schedule it last read and keeps sending what is due.

The rows name their queue without settings.CELERY_QUEUE_PREFIX; each entry gets the prefix here,
so a prefixed deployment's beat sends to the queues its workers consume.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django_celery_beat.schedulers import DatabaseScheduler as LibraryDatabaseScheduler
from django_celery_beat.schedulers import ModelEntry

from config.outage import DATABASE_ERRORS, Outage

log = logging.getLogger("botflow.beat")


class PrefixedEntry(ModelEntry):
    """A schedule row whose queue, exchange and routing key get settings.CELERY_QUEUE_PREFIX."""

    def __init__(self, model, app=None) -> None:
        super().__init__(model, app=app)
        prefix = settings.CELERY_QUEUE_PREFIX
        for option in ("queue", "exchange", "routing_key"):
            value = self.options.get(option)
            if prefix and value and not value.startswith(prefix):
                self.options[option] = prefix + value


class DatabaseScheduler(LibraryDatabaseScheduler):
    Entry = PrefixedEntry
    outage: Outage | None = None

    def _database_answers(self) -> bool:
        if self.outage is None:
            self.outage = Outage("beat", logger=log)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DATABASE_ERRORS as exc:
            self.outage.failed(exc)  # logs once per outage, drops the broken connection
            return False
        self.outage.ok()
        return True

    def schedule_changed(self) -> bool:
        return self._database_answers() and super().schedule_changed()

    def sync(self) -> None:
        if self._database_answers():  # else the changed entries stay marked for the next sync
            super().sync()
