"""Admin for tenant models, scoped once in OrgScopedAdmin (analytics.admin.base): org admins see
only their own orgs, and change only what their role allows there. Importing the package
registers every model admin."""

from analytics.admin import alerts, catalog, events, tenancy
from analytics.admin.base import OrgScopedAdmin, ReadOnlyOrgAdmin
from analytics.admin.tenancy import MembershipForm

__all__ = [
    "MembershipForm",
    "OrgScopedAdmin",
    "ReadOnlyOrgAdmin",
    "alerts",
    "catalog",
    "events",
    "tenancy",
]
