from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class VoicesConfig(AppConfig):
    name = "voices"
    verbose_name = gettext_lazy("Voices")
    default_auto_field = "django.db.models.BigAutoField"
