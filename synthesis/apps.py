from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class SynthesisConfig(AppConfig):
    name = "synthesis"
    verbose_name = gettext_lazy("Synthesis")
    default_auto_field = "django.db.models.BigAutoField"
