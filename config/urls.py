from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from analytics import metrics
from dashboard import team_views, views

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only
    path("accounts/", include("config.password_urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include("analytics.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI loads its start-up script from ?script (no inline script) but styles itself
    # inline: the one page whose CSP allows inline styles.
    path(
        "api/docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="schema")
        ),
        name="api-docs",
    ),
    path("invite/<str:token>/", team_views.invite, name="invite"),
    path("", views.home, name="home"),
    path("o/<slug:org_slug>/", include("dashboard.urls")),
]

# A member whose role lacks a permission sees the site's 403 page, naming their role.
handler403 = "dashboard.views.permission_denied"
# A database outage is a 503 "temporarily unavailable, retrying" page, not a 500 (config.unavailable).
handler500 = "config.unavailable.server_error"
