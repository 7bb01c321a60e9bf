"""Celery beat's scheduler: django-celery-beat's DatabaseScheduler, riding out a PostgreSQL outage
the way every other long-running loop does (config.outage) — one WARNING when the database goes,
one INFO with the outage's length when it is back — instead of a traceback on every tick (the
library logs `Database gave error` with its traceback each time it cannot read the schedule).
While the database is away beat keeps the schedule it last read and keeps sending what is due.
"""

from __future__ import annotations

import logging

from django.db import connection
from django_celery_beat.schedulers import DatabaseScheduler as LibraryDatabaseScheduler

from config.outage import DATABASE_ERRORS, Outage

log = logging.getLogger("botflow.beat")


class DatabaseScheduler(LibraryDatabaseScheduler):
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
