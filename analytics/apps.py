from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        # Imported once the models are loaded (Django's rule for ready()): connecting the Celery
        # signals, and registering the tasks so that one sent by name from any process
        # (analytics.services.enqueue) gets the options it is declared with, as apply_async did.
        from analytics import celery_signals, tasks  # noqa: F401

        celery_signals.connect()
