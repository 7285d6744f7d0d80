from django.urls import path

from telephony import views

app_name = "telephony"
urlpatterns = [
    path("twilio/<int:attempt_id>/status", views.twilio_status, name="twilio-status"),
    path("twilio/<int:attempt_id>/gather", views.twilio_gather, name="twilio-gather"),
    path("twilio/<int:attempt_id>/amd", views.twilio_amd, name="twilio-amd"),
    path("twilio/<int:attempt_id>/transfer", views.twilio_transfer, name="twilio-transfer"),
]
