"""The idempotency receipts become monthly RANGE partitions too (issue 14), on `occurred_month`:
the UTC month of the event's own timestamp, so a receipt lives in the month of the message or
activity it produced and leaves when that month is dropped, instead of by a DELETE of millions
of rows.

The table is rebuilt in place by 0009's `_partition` (the same copy month by month, primary key
(id, occurred_month), `id` counting on from the same value). Its unique key becomes
(organization, event id, occurred_month) — a partitioned table's unique key must hold the
partition key. The key is the month, not the exact timestamp: an event sent without a timestamp
gets "now", so two concurrent attempts of it differ in time but (almost always) not in month,
and the unique index still makes one of them wait and see the other. The BRIN index on
received_at goes: retention no longer deletes receipts by age.

Existing receipts get the month of their `received_at`: no message, activity or conversation row
holds an event id, so the event's own timestamp is not known any more. An event is received at
or after its timestamp (but for the 5 minutes of future tolerance), so such a receipt sits in its
event's month or a later one and is kept about as long as the event. What this cannot know: a
late event (received in a later month than its timestamp's) retried after this migration gets a
receipt in its own month and is stored a second time; retries come within minutes, so only
events received just before the deployment could be affected.

Reversible: backwards, the receipts are copied into a plain table again (the earliest receipt of
an id kept), with the unique (organization, event id) and the BRIN index of 0009.
"""

import importlib

from django.db import migrations, models

import analytics.partitioning

TABLE = "analytics_eventreceipt"
COLUMN = "occurred_month"
UNIQUE = "receipt_unique_event_month"


def forwards(apps, schema_editor):
    partition = importlib.import_module("analytics.migrations.0009_partitioned_events")._partition
    with schema_editor.connection.cursor() as cursor:
        cursor.execute('DROP INDEX IF EXISTS "receipt_received_brin"')
        cursor.execute(f'ALTER TABLE "{TABLE}" DROP CONSTRAINT "receipt_unique_event"')
        cursor.execute(f'ALTER TABLE "{TABLE}" ADD COLUMN {COLUMN} date')
        cursor.execute(
            f'UPDATE "{TABLE}" SET {COLUMN} = '  # noqa: S608
            "date_trunc('month', received_at AT TIME ZONE 'UTC')::date"
        )
        cursor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN {COLUMN} SET NOT NULL')
        partition(cursor, TABLE, COLUMN)
        cursor.execute(
            f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{UNIQUE}" '
            f"UNIQUE (organization_id, event_id, {COLUMN})"
        )


def backwards(apps, schema_editor):
    old = f"{TABLE}_partitioned"
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{TABLE}" RENAME TO "{old}"')
        cursor.execute(f'ALTER SEQUENCE "{TABLE}_id_seq" OWNED BY NONE')
        cursor.execute(f'CREATE TABLE "{TABLE}" (LIKE "{old}" INCLUDING DEFAULTS)')
        cursor.execute(f'ALTER SEQUENCE "{TABLE}_id_seq" OWNED BY "{TABLE}".id')
        cursor.execute(
            f'INSERT INTO "{TABLE}" SELECT DISTINCT ON (organization_id, event_id) * '  # noqa: S608
            f'FROM "{old}" ORDER BY organization_id, event_id, received_at, id'
        )
        cursor.execute(f'DROP TABLE "{old}"')
        cursor.execute(f'ALTER TABLE "{TABLE}" DROP COLUMN {COLUMN}')
        cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{TABLE}_pkey" PRIMARY KEY (id)')
        cursor.execute(
            f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "receipt_unique_event" '
            "UNIQUE (organization_id, event_id)"
        )
        cursor.execute(f'CREATE INDEX "receipt_received_brin" ON "{TABLE}" USING brin (received_at)')
        cursor.execute(f'ANALYZE "{TABLE}"')


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0010_customer_erasure"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards, elidable=False)],
            state_operations=[
                migrations.RemoveIndex(model_name="eventreceipt", name="receipt_received_brin"),
                migrations.RemoveConstraint(model_name="eventreceipt", name="receipt_unique_event"),
                migrations.AddField(
                    model_name="eventreceipt",
                    name="occurred_month",
                    field=models.DateField(default=analytics.partitioning.current_month),
                ),
                migrations.AddConstraint(
                    model_name="eventreceipt",
                    constraint=models.UniqueConstraint(
                        fields=("organization", "event_id", "occurred_month"), name=UNIQUE
                    ),
                ),
            ],
        ),
    ]
