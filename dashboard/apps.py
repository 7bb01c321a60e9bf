from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self):
        from dashboard import signals

        signals.connect()  # access ends when it should: sockets closed on revocation
