"""The read-only report API, mounted at /api/v1/ (see campaigns.api)."""

from django.urls import path

from campaigns import api

app_name = "api"
urlpatterns = [
    path("campaigns", api.campaigns, name="campaigns"),
    path("campaigns/<int:campaign_id>/report", api.campaign_report, name="campaign-report"),
    path("campaigns/<int:campaign_id>/heatmap", api.campaign_heatmap, name="campaign-heatmap"),
    path("voices", api.voices, name="voices"),
]
