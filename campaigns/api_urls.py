"""The API, mounted at /api/v1/ (see campaigns.api): reports, contact lists, campaigns, streamed speech, the OpenAPI
schema and its page."""

from django.urls import path, re_path

from campaigns import api, api_campaigns, api_contacts, api_docs, api_tts

app_name = "api"
urlpatterns = [
    path("campaigns", api_campaigns.CampaignsView.as_view(), name="campaigns"),
    path("campaigns/<int:campaign_id>/report", api.CampaignReportView.as_view(), name="campaign-report"),
    path("campaigns/<int:campaign_id>/calls", api.CampaignCallsView.as_view(), name="campaign-calls"),
    path("campaigns/<int:campaign_id>/heatmap", api.CampaignHeatmapView.as_view(), name="campaign-heatmap"),
    *(
        path(
            f"campaigns/<int:campaign_id>/{verb}",
            api_campaigns.CampaignVerbView.as_view(verb=verb),
            name=f"campaign-{verb}",
        )
        for verb in ("launch", "pause", "resume", "cancel")
    ),
    path("campaigns/<int:campaign_id>/contacts", api_campaigns.CampaignContactsView.as_view(), name="campaign-contacts"),
    path("calls", api.CallsView.as_view(), name="calls"),
    path("voices", api.VoicesView.as_view(), name="voices"),
    path("contact-lists", api_contacts.ContactListsView.as_view(), name="contact-lists"),
    path("contact-lists/<int:list_id>", api_contacts.ContactListView.as_view(), name="contact-list"),
    path("contact-lists/<int:list_id>/contacts", api_contacts.ContactsView.as_view(), name="contacts"),
    path("tts", api_tts.SpeechView.as_view(), name="tts"),
    path("schema", api_docs.SchemaView.as_view(), name="schema"),
    path("docs", api_docs.docs, name="docs"),
    # Anything else under /api/v1/ (a mistyped path, an id that is not a number): a JSON 404, not an HTML page.
    re_path(r"", api.not_found),
]
