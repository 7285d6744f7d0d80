from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_safe

from campaigns import dashboard, getting_started, preferences

# "Herald", the product's name, stays as it is in every language (and as a msgid it would only repeat itself).
admin.site.site_header = "Herald"
admin.site.site_title = "Herald"
admin.site.index_title = gettext_lazy("Voice-notification campaigns")
admin.site.index_template = "admin/campaigns/index.html"  # the dashboard's link first


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and the getting-started check of HERALD_PUBLIC_URL: this process answers."""
    return JsonResponse({"ok": True})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/language/", admin.site.admin_view(preferences.language_page), name="language"),
    path("admin/getting-started/", admin.site.admin_view(getting_started.page), name="getting_started"),
    path("admin/dashboard/", admin.site.admin_view(dashboard.dashboard_page), name="dashboard"),
    path("admin/dashboard.json", admin.site.admin_view(dashboard.dashboard_json), name="dashboard_json"),
    path("admin/", admin.site.urls),
    path("telephony/", include("telephony.urls")),
    path("audio/", include("synthesis.urls")),
    path("api/v1/", include("campaigns.api_urls")),
]
