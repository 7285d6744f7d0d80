"""The Celery app: three queues (default, synthesis, telephony) and the dialer sweep on beat."""

import os

from celery import Celery

from herald import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "herald.settings")

broker.register()  # the embedded default broker URL is herald-fs://
app = Celery("herald")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
