from django.urls import path

from analytics.api import views

app_name = "api"

urlpatterns = [
    path("events", views.EventIngestApi.as_view(), name="events"),
]
