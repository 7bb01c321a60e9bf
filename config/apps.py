from django.contrib.admin.apps import AdminConfig


class BotFlowAdminConfig(AdminConfig):
    """Django admin with BotFlow's site: org admins manage their own organization."""

    default_site = "config.admin_site.BotFlowAdminSite"
