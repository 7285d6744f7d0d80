"""Test-only overrides: everything else is herald.settings as production reads it."""

import os

os.environ.setdefault("HERALD_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test"))

from herald.settings import *  # noqa: E402,F403
from herald.settings import DATABASES, STATIC_ROOT, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
MEDIA_ROOT = VAR_DIR / "media"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so real Celery worker processes see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-herald.sqlite3")}

# The process under test publishes to real Redis; worker processes started by tests/conftest.py consume it.
CELERY_BROKER_URL = os.environ.get("HERALD_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# Streamed speech goes through the broker's Redis when nothing else is named, as in production with a Redis broker
# (herald.settings read the broker from the environment, before the line above).
TTS_REDIS_URL = os.environ.get("HERALD_TTS_REDIS_URL") or os.environ.get("HERALD_PACING_REDIS_URL") or CELERY_BROKER_URL
SWEEP_INTERVAL = 0.5
# Tests dial the local Twilio sandbox over http, as a demo machine does (the checks of api_base_url set it off).
TWILIO_SANDBOX = True
# Tests post result webhooks to receivers on 127.0.0.1 over http.
WEBHOOK_LOCAL_HTTP = True
