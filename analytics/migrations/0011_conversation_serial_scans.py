"""The explorer's search walks the newest conversations of a range and probes each one's
messages until a page is full. Since `analytics_message` is partitioned (0009) the planner
prices each probe higher and starts two parallel workers for the walk: each reads its own share
of conversations to the end of its batch, and worker start-up dominates — 78 ms instead of 3 ms
for the first page of a common term on the 10M-message database (8 ms with this setting). The
conversation table is always read by (organization, time) ranges that a single process serves
best, so it is never scanned in parallel."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("analytics", "0010_customer_erasure")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE analytics_conversation SET (parallel_workers = 0)",
            "ALTER TABLE analytics_conversation RESET (parallel_workers)",
        )
    ]
