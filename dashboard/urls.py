"""Org pages: every route here is under /o/<org_slug>/ and resolves the org with org_view."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.org_dashboard, name="org_dashboard"),
    path("live/metrics", views.live_metrics, name="live_metrics"),
    path("charts/period", views.period_charts, name="period_charts"),
]
