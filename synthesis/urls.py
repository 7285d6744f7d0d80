from django.urls import path

from synthesis import views

app_name = "synthesis"
urlpatterns = [
    path("<str:render_key>.wav", views.audio, name="audio"),
]
