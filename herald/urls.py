from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Herald"
admin.site.site_title = "Herald"
admin.site.index_title = "Voice-notification campaigns"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("telephony/", include("telephony.urls")),
    path("audio/", include("synthesis.urls")),
    path("api/v1/", include("campaigns.api_urls")),
]
