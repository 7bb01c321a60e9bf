"""Customer erasure (issue 14): the CustomerErasure audit trail, the `admin` API key scope, and
indexes on (organization, customer) of conversations and activities, so erasure and access
requests find one customer's rows without scanning the org's. The conversation index is built
CONCURRENTLY (hence a non-atomic migration), so a deployment does not block ingestion; the
activity one cannot be (a partitioned table, see 0009) and locks that table while it builds.
"""

import django.contrib.postgres.fields
from django.contrib.postgres.operations import AddIndexConcurrently
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('analytics', '0009_partitioned_events'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CustomerErasure',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('actor_label', models.CharField(max_length=150)),
                ('fingerprint', models.CharField(editable=False, max_length=64)),
                ('counts', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.AlterField(
            model_name='apikey',
            name='scopes',
            field=django.contrib.postgres.fields.ArrayField(base_field=models.CharField(choices=[('ingest', 'Ingest events'), ('read', 'Read analytics'), ('alerts', 'Manage alert rules'), ('admin', 'Erase and export customer data')], max_length=10), default=list, size=None),
        ),
        # Not concurrently: activity is a partitioned table (0009), and PostgreSQL builds an index
        # on a partitioned table only in the plain way (one build per month partition).
        migrations.AddIndex(
            model_name='activity',
            index=models.Index(fields=['organization', 'customer'], name='act_org_customer'),
        ),
        AddIndexConcurrently(
            model_name='conversation',
            index=models.Index(fields=['organization', 'customer'], name='conv_org_customer'),
        ),
        migrations.AddField(
            model_name='customererasure',
            name='organization',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='analytics.organization'),
        ),
        migrations.AddField(
            model_name='customererasure',
            name='requested_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='customererasure',
            index=models.Index(fields=['organization', 'fingerprint'], name='erasure_org_fingerprint'),
        ),
        migrations.AddIndex(
            model_name='customererasure',
            index=models.Index(fields=['organization', '-created_at'], name='erasure_org_created'),
        ),
    ]
