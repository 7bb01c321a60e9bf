"""Raw events get a life cycle (issue 14): per-org retention, and `analytics_message` and
`analytics_activity` become monthly RANGE partitions on created_at (analytics/partitioning.py).

Each table is rebuilt once: its rows are copied into the partitioned table month by month, then
its indexes, foreign keys and checks are created again from their own definitions (so whatever
earlier migrations built, the GIN text-search index included, comes back as it was). The
primary key becomes (id, created_at) — PostgreSQL requires the partition key in it — and `id`
keeps counting from the same sequence value (a plain sequence: PostgreSQL 15 has no identity
columns on partitioned tables). On the 10M-message benchmark database this takes a few minutes;
on an empty database, a moment.
"""

from datetime import UTC, datetime, timedelta

import django.contrib.postgres.indexes
import django.core.validators
from django.db import migrations, models

from analytics import partitioning

# Partitions made up front: two years back (the longest retention) and the months ahead.
MONTHS_BACK = 25
# The tables this migration partitions, frozen here: analytics.partitioning.PARTITIONED grows
# with later migrations (0011 adds the receipts, whose partition key does not exist yet here).
TABLES = {"analytics_message": "created_at", "analytics_activity": "created_at"}


def _partition(cursor, table: str, column: str) -> None:
    old = f"{table}_unpartitioned"
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisprimary FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
        [table],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('f', 'c', 'p')",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(f'SELECT coalesce(max(id), 0), min({column}) FROM "{table}"')
    max_id, oldest = cursor.fetchone()

    cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    for name, _definition, kind in constraints:
        cursor.execute(f'ALTER TABLE "{old}" DROP CONSTRAINT "{name}"')
    for name, _definition, primary in indexes:
        if not primary:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
    cursor.execute(f'ALTER TABLE "{old}" ALTER COLUMN id DROP IDENTITY IF EXISTS')
    cursor.execute(f'ALTER TABLE "{old}" ALTER COLUMN id DROP DEFAULT')
    cursor.execute(f'DROP SEQUENCE IF EXISTS "{table}_id_seq"')
    cursor.execute(
        f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS) PARTITION BY RANGE ({column})'
    )
    cursor.execute(f'CREATE SEQUENCE "{table}_id_seq" START {max_id + 1} OWNED BY "{table}".id')
    cursor.execute(f"ALTER TABLE \"{table}\" ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")

    now = datetime.now(UTC)
    first = now - timedelta(days=31 * MONTHS_BACK)
    # (by month: the partition key may be a date, 0011's receipts)
    if oldest is not None and partitioning.month_start(oldest) < partitioning.month_start(first):
        first = oldest
    months = partitioning.months_between(
        first, partitioning.add_months(partitioning.month_start(now), partitioning.MONTHS_AHEAD)
    )
    for month in months:
        cursor.execute(partitioning.create_partition_sql(table, month))
    cursor.execute(partitioning.create_default_sql(table))
    cursor.execute(f'INSERT INTO "{table}" SELECT * FROM "{old}" ORDER BY {column}')
    cursor.execute(f'DROP TABLE "{old}"')

    cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY (id, {column})')
    for name, definition, primary in indexes:
        if not primary:
            cursor.execute(definition.replace(f" ON public.{old} ", f" ON public.{table} "))
    for name, definition, kind in constraints:
        if kind != "p":
            cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    cursor.execute(f'ANALYZE "{table}"')


def forwards(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for table, column in TABLES.items():
            _partition(cursor, table, column)


SCHEDULE = {
    "name": "Retention: partitions ahead, expired data removed (daily, 03:15 UTC)",
    "task": "analytics.tasks.retention_enforce_task",
    "queue": "rollups",
    "expire_seconds": 23 * 3600,
    "description": "Creates the coming months' partitions of the raw event tables, detaches and "
    "drops months past every org's retention, and removes each org's expired rows in batches.",
}


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="15", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.update_or_create(
        name=SCHEDULE["name"],
        defaults={
            "task": SCHEDULE["task"],
            "queue": SCHEDULE["queue"],
            "expire_seconds": SCHEDULE["expire_seconds"],
            "description": SCHEDULE["description"],
            "enabled": True,
            "crontab": crontab,
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": datetime.now(UTC)})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=SCHEDULE["name"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0008_team_audit"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="raw_retention_days",
            field=models.PositiveSmallIntegerField(
                default=395,
                help_text="Days raw events (conversations, messages, activities) are kept: 30-730.",
                validators=[
                    django.core.validators.MinValueValidator(30),
                    django.core.validators.MaxValueValidator(730),
                ],
                verbose_name="raw event retention (days)",
            ),
        ),
        migrations.AddField(
            model_name="organization",
            name="rollup_retention_days",
            field=models.PositiveSmallIntegerField(
                default=1825,
                help_text="Days hourly and daily rollups are kept: 365-3650 (5 years by default).",
                validators=[
                    django.core.validators.MinValueValidator(365),
                    django.core.validators.MaxValueValidator(3650),
                ],
                verbose_name="rollup retention (days)",
            ),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False),
        migrations.AddIndex(
            model_name="eventreceipt",
            index=django.contrib.postgres.indexes.BrinIndex(
                fields=["received_at"], name="receipt_received_brin"
            ),
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
