"""Full-text search over message text: a GIN index on the English tsvector of each message.

The index is an expression index written in SQL (the model state is unchanged), so queries must
use the very same expression: analytics.filters.MESSAGE_TSVECTOR. Built CONCURRENTLY so a
deployment does not lock the message table while it indexes.
"""

from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("analytics", "0002_rollup_bookkeeping"),
    ]

    operations = [
        migrations.RunSQL(
            sql=(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS msg_text_search "
                "ON analytics_message USING gin (to_tsvector('english'::regconfig, text))"
            ),
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS msg_text_search",
        ),
    ]
