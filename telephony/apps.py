from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = gettext_lazy("Telephony")
    default_auto_field = "django.db.models.BigAutoField"
