"""The rollup schedules for django-celery-beat (visible and editable in admin: Periodic tasks)."""

from django.db import migrations

SCHEDULES = [
    {
        "name": "Rollups: hourly (at :05)",
        "task": "analytics.tasks.rollup_hourly_dispatch",
        "crontab": {"minute": "5", "hour": "*"},
        "queue": "rollups",
        "expire_seconds": 50 * 60,
        "description": "Rebuilds the hourly bot rollups and org usage of every complete hour "
        "marked dirty by ingestion: the hour that just ended, late data, and hours a missed run "
        "left behind.",
    },
    {
        "name": "Rollups: daily bot metrics (01:00 in each org's time zone)",
        "task": "analytics.tasks.rollup_daily_dispatch",
        "crontab": {"minute": "0", "hour": "*"},
        "queue": "rollups",
        "expire_seconds": 50 * 60,
        "description": "Runs every hour and builds the daily bot metrics of each org whose day is "
        "due: 01:00 of the next day in the org's time zone has passed (UTC for orgs without one). "
        "Days that received late data are rebuilt the same way.",
    },
    {
        "name": "Conversation metrics: sweep (every 10 minutes)",
        "task": "analytics.tasks.conversation_metrics_sweep",
        "interval": {"every": 10, "period": "minutes"},
        "queue": "rollups",
        "expire_seconds": 9 * 60,
        "description": "Metrics are built when a conversation ends; this catches the ones whose "
        "task was lost and keeps long-running active conversations current.",
    },
]


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for spec in SCHEDULES:
        schedule = {}
        if "crontab" in spec:
            schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(
                day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC",
                **spec["crontab"],
            )  # fmt: skip
        else:
            schedule["interval"], _ = IntervalSchedule.objects.get_or_create(**spec["interval"])
        PeriodicTask.objects.update_or_create(
            name=spec["name"],
            defaults={
                "task": spec["task"],
                "queue": spec["queue"],
                "expire_seconds": spec["expire_seconds"],
                "description": spec["description"],
                "enabled": True,
                **schedule,
            },
        )
    # beat notices changed schedules through this row
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[s["name"] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_conversation_search"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
