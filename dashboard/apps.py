from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self):
        from dashboard import signals

        signals.connect()  # sockets closed on revocation; alert banners published on change
