"""python manage.py create_api_key --org acme --name ci --scopes ingest,read  (prints only the key)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from analytics.models import Organization
from analytics.services.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it (the only time the full key is shown)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--name", required=True, help="a name to recognise the key by")
        parser.add_argument(
            "--scopes",
            default="ingest,read",
            help="comma-separated: ingest, read, alerts, admin (erase and export customer data)",
        )

    def handle(self, *args, org, name, scopes, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"--org: no organization with slug {org!r}.")
        try:
            created = api_key_create(organization=organization, name=name, scopes=scopes)
        except ValidationError as exc:
            problems = "; ".join(
                f"--{field if field != '__all__' else 'name'}: {' '.join(msgs)}"
                for field, msgs in exc.message_dict.items()
            )
            raise CommandError(problems) from None
        self.stdout.write(created.secret)
