"""The Celery application: `celery -A config worker` / `celery -A config beat`.

Tasks live in analytics/tasks/ (autodiscovered); the signal handlers that record task runs and
the worker's heartbeat live in analytics/celery_signals.py, connected by analytics.apps.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("botflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
