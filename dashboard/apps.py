from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self):
        from dashboard import signals  # once the models are loaded (Django's rule for ready())

        signals.connect()  # sockets closed on revocation; alert banners published on change
