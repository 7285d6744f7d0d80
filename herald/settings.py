"""Herald settings: one file, every knob from the environment (see README "Configuration").

Defaults give the embedded setup (SQLite + filesystem broker under var/, eSpeak voice, local sandbox);
production sets DATABASE_URL, CELERY_BROKER_URL, DJANGO_SECRET_KEY and HERALD_PUBLIC_URL.
"""

from __future__ import annotations

import secrets
from datetime import time as _time
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from herald.env import env_bool, env_float, env_int, env_ip, env_list, env_port_range, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HERALD_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY(_FILE) in production; the embedded setup keeps a generated one under var/."""
    configured = env_str("DJANGO_SECRET_KEY", "")
    if configured:
        if len(configured) < 50:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters")
        return configured
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(64), encoding="utf-8")
    return key_file.read_text(encoding="utf-8").strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "voices",
    "synthesis",
    "telephony",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "herald.middleware.UserLanguageMiddleware",  # each staff member's own language (campaigns.StaffPreference)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "herald.urls"
WSGI_APPLICATION = "herald.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "herald" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'herald.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        # A kept connection is checked before a request or task reuses it, so one the database dropped (a restart)
        # fails nobody's webhook; with DATABASE_CONN_MAX_AGE=0 there is none to check.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process share the file: wait for locks, take them up front, WAL for readers.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- i18n, static, media --------------------------------------------------------------------------
LANGUAGE_CODE = env_str("DJANGO_LANGUAGE_CODE", "en-us")
# The languages staff can choose (admin → Language); English is the default and the source text.
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(env_str("HERALD_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"  # never served publicly: audio goes out only through signed URLs
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- uploads --------------------------------------------------------------------------------------
# An uploaded file over 2.5 MB is streamed to a temporary file, never held in memory; the other fields of a
# request may total 2.5 MB (Django's defaults: admin forms are far smaller). Nothing here bounds a whole
# request body, which gunicorn does not either: the proxy in front of `web` should (see README "Production").
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Voice files larger than these are refused before anything reads them. Official full-size GPT-SoVITS files
# are about 155 MB (GPT) and up to 180 MB (SoVITS v2ProPlus, fp16); 10 s of 48 kHz stereo WAV is under 4 MB.
MAX_CHECKPOINT_UPLOAD_BYTES = env_int("HERALD_MAX_CHECKPOINT_UPLOAD_MB", 400, minimum=1) * 1024 * 1024
MAX_REFERENCE_UPLOAD_BYTES = env_int("HERALD_MAX_REFERENCE_UPLOAD_MB", 20, minimum=1) * 1024 * 1024

# --- security -------------------------------------------------------------------------------------
HTTPS = env_bool("HERALD_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("HERALD_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env_bool("HERALD_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("HERALD_BEHIND_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
LOGIN_URL = "admin:login"

# --- Celery -----------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "herald-fs://")
if CELERY_BROKER_URL.startswith(("herald-fs://", "filesystem://")):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    _QUIET_LOGGERS = {"kombu.connection": {"level": "ERROR"}}  # "no hostname supplied" is expected here
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
    _QUIET_LOGGERS = {}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Synthesis workers hold models (one process per GPU); telephony workers hold calls: separate queues.
CELERY_TASK_ROUTES = {
    "synthesis.tasks.*": {"queue": "synthesis"},
    "telephony.tasks.*": {"queue": "telephony"},
    "campaigns.tasks.*": {"queue": "default"},
    "voices.tasks.train_voice": {"queue": "training"},
    "voices.tasks.*": {"queue": "default"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
SWEEP_INTERVAL = env_float("HERALD_SWEEP_INTERVAL", 2.0, minimum=0.1)
# Worker heartbeats (campaigns.workers): each worker writes one this often, and what it holds each time it
# takes a task; one silent for WORKER_DEAD_SECONDS (or stopped) has its claims handed on by the
# recovery sweep, which beat runs every heartbeat. Worst case from a kill to recovery: DEAD + HEARTBEAT seconds.
WORKER_HEARTBEAT_SECONDS = env_float("HERALD_WORKER_HEARTBEAT_SECONDS", 10.0, minimum=0.2)
WORKER_DEAD_SECONDS = env_float(
    "HERALD_WORKER_DEAD_SECONDS", 3 * WORKER_HEARTBEAT_SECONDS, minimum=2 * WORKER_HEARTBEAT_SECONDS
)
# Result webhooks out (campaigns.webhooks): beat sends due deliveries this often; a new event waits at most this
# long, and a delivery whose worker died or whose message was lost is taken up again when its lease runs out.
WEBHOOK_SWEEP_INTERVAL = env_float("HERALD_WEBHOOK_SWEEP_INTERVAL", 2.0, minimum=0.1)
# SIP trunks with several servers (telephony.trunks): OPTIONS to each this often (0: never), and the DNS servers
# SRV lookups ask ("ip[:port]", comma-separated; blank: the system's resolver).
SIP_HEALTH_SECONDS = env_float("HERALD_SIP_HEALTH_SECONDS", 30.0, minimum=0.0)
SIP_DNS_SERVERS = tuple(env_list("HERALD_SIP_DNS_SERVERS", []))
# SIP from behind a NAT or firewall (telephony.sip): the public address put in Contact and SDP (or a STUN server,
# host[:port], to learn it from), the UDP port range RTP and RTCP may use (FIRST-LAST), and symmetric RTP.
SIP_EXTERNAL_ADDRESS = env_ip("HERALD_SIP_EXTERNAL_ADDRESS")
SIP_STUN_SERVER = env_str("HERALD_SIP_STUN_SERVER", "")
SIP_RTP_PORTS = env_port_range("HERALD_SIP_RTP_PORTS")
SIP_SYMMETRIC_RTP = env_bool("HERALD_SIP_SYMMETRIC_RTP", True)
CELERY_BEAT_SCHEDULE = {
    "worker-recovery": {
        "task": "campaigns.tasks.recover_workers",
        "schedule": WORKER_HEARTBEAT_SECONDS,
        "options": {"expires": WORKER_HEARTBEAT_SECONDS},
    },
    "dialer-sweep": {"task": "campaigns.tasks.sweep", "schedule": SWEEP_INTERVAL},
    "housekeeping": {"task": "campaigns.tasks.housekeeping", "schedule": 60.0},
    "training-watchdog": {"task": "voices.tasks.resume_stale_training", "schedule": 60.0},
    "webhooks-out": {
        "task": "campaigns.tasks.send_webhooks",
        "schedule": WEBHOOK_SWEEP_INTERVAL,
        "options": {"expires": WEBHOOK_SWEEP_INTERVAL},
    },
}
if SIP_HEALTH_SECONDS:
    CELERY_BEAT_SCHEDULE["sip-trunk-health"] = {
        "task": "telephony.tasks.check_trunks",
        "schedule": SIP_HEALTH_SECONDS,
        "options": {"expires": SIP_HEALTH_SECONDS},
    }

# --- Herald -------------------------------------------------------------------------------------
# Base URL at which carriers reach this deployment (webhooks and signed audio URLs).
PUBLIC_URL = env_str("HERALD_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
DEFAULT_REGION = env_str("HERALD_DEFAULT_REGION", "CN").upper()
AUDIO_URL_TTL = env_int("HERALD_AUDIO_URL_TTL", 6 * 3600, minimum=60)
# Fernet key for telephony credentials stored in the database; derived from SECRET_KEY when unset.
CREDENTIALS_KEY = env_str("HERALD_CREDENTIALS_KEY", "")
RENDER_BATCH_SIZE = env_int("HERALD_RENDER_BATCH_SIZE", 16, minimum=1)
RENDER_STALE_SECONDS = env_int("HERALD_RENDER_STALE_SECONDS", 600, minimum=30)
# Preflight estimates (admin -> campaign -> Preflight): clips a deployment's synthesis workers render per
# second all together, and the length of an average call. The default is one 2-core CPU worker: 8 s clips at
# 4.58x real time (README "GPT-SoVITS speed", fp32 batch 32) = 0.57 clips/s; set yours from bench/gptsovits.py.
PREFLIGHT_RENDERS_PER_SECOND = env_float("HERALD_PREFLIGHT_RENDERS_PER_SECOND", 0.5, minimum=0.001)
PREFLIGHT_CALL_SECONDS = env_float("HERALD_PREFLIGHT_CALL_SECONDS", 40.0, minimum=1.0)
# One test call (Preflight page) per staff member per this many seconds.
PREFLIGHT_TEST_CALL_INTERVAL = env_float("HERALD_PREFLIGHT_TEST_CALL_INTERVAL", 60.0, minimum=1.0)
DIAL_STALE_SECONDS = env_int("HERALD_DIAL_STALE_SECONDS", 300, minimum=30)
# Telephony workers: on shutdown, how long SIP calls in flight may go on before they are hung up (keep the
# process manager's stop timeout above this).
SIP_DRAIN_SECONDS = env_float("HERALD_SIP_DRAIN_SECONDS", 30.0, minimum=0.0)
# SIP calls listen for carrier announcements ("您拨打的号码是空号", "已关机", …) matched against these recordings: a
# directory with one folder per outcome (invalid_number, suspended, powered_off, unreachable, busy) of 8 kHz WAVs,
# e.g. powered_off/china-mobile.wav. Empty: only SIT tones are listened for.
ANNOUNCEMENT_DIR = env_str("HERALD_ANNOUNCEMENT_DIR", "")
# Dialling limits: each telephony account's calls per second and channels are shared by every telephony worker
# through this Redis (the broker's by default); with none (the embedded setup, one machine) through locked
# state files under var/pacing. A person is called at most this many times in any 24 hours, all campaigns together.
PACING_REDIS_URL = env_str(
    "HERALD_PACING_REDIS_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
# Voice studio: fine-tuning runs on workers of the `training` queue (GPU: cuda, fp16; CPU for tiny models).
# Their per-epoch state lives under TRAINING_DIR (shared storage when training workers are on several machines).
TRAINING_DIR = Path(env_str("HERALD_TRAINING_DIR", str(VAR_DIR / "training")))
TRAINING_DEVICE = env_str("HERALD_TRAINING_DEVICE", "")  # empty: cuda when present, else cpu
TRAINING_STALE_SECONDS = env_int("HERALD_TRAINING_STALE_SECONDS", 300, minimum=10)
# The consent speaker must sound like the training speaker: cosine similarity of ERes2NetV2 embeddings.
CONSENT_MIN_SIMILARITY = env_float("HERALD_CONSENT_MIN_SIMILARITY", 0.5, minimum=-1.0)
MAX_CALLS_PER_NUMBER_24H = env_int("HERALD_MAX_CALLS_PER_NUMBER_24H", 3, minimum=1)
# Carrier webhooks are small form posts (Twilio's are under 4 KB): a larger body is refused with 413 before
# anything reads it, so an unsigned flood cannot make web workers buffer or parse megabytes.
WEBHOOK_MAX_BODY_BYTES = env_int("HERALD_WEBHOOK_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
# Hosts a Twilio account's api_base_url may name (https only): the stored token is sent there. The local
# sandbox (http on 127.0.0.1/localhost) is allowed only where HERALD_TWILIO_SANDBOX says so (demo machines).
TWILIO_API_HOSTS = [host.lower() for host in env_list("HERALD_TWILIO_API_HOSTS", ["api.twilio.com"])]
TWILIO_SANDBOX = env_bool("HERALD_TWILIO_SANDBOX", False)
# Result webhook endpoints must be https; http to this machine (127.0.0.1/localhost) only where this is on (demo
# machines, tests).
WEBHOOK_LOCAL_HTTP = env_bool("HERALD_WEBHOOK_LOCAL_HTTP", False)


# --- the API (/api/v1/, campaigns.api): Django REST framework, OpenAPI 3 by drf-spectacular -------------
# Requests a token (or a staff session) may make a minute, counted in the cache: Redis when there is one, so
# every web process shares the count; in-process when embedded (one process).
API_RATE_PER_MINUTE = env_int("HERALD_API_RATE_PER_MINUTE", 600, minimum=1)
# A bulk upsert of 10,000 contacts with a few variables each is 2-4 MB of JSON; larger bodies get 413 unread.
API_MAX_BODY_BYTES = env_int("HERALD_API_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
CACHE_URL = env_str("HERALD_CACHE_URL", PACING_REDIS_URL)
# Streamed speech (POST /api/v1/tts, synthesis.streaming): a synthesis worker hands the audio to the web process
# through a Redis list (the pacing Redis by default; none: the endpoint answers 503). The web process waits this
# long for the worker's first audio (then 504), and as long again for each next piece.
TTS_REDIS_URL = env_str("HERALD_TTS_REDIS_URL", PACING_REDIS_URL)
TTS_WAIT_SECONDS = env_float("HERALD_TTS_WAIT_SECONDS", 15.0, minimum=0.1)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "herald"}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "herald"}
    )
}
REST_FRAMEWORK = {
    # Views take their authentication, permissions, renderers and throttles from campaigns.api's base view;
    # these are the defaults for anything that does not (the schema view among them).
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "campaigns.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": "Contact lists and contacts for order systems; reports for BI tools. "
    "Send `Authorization: Bearer hrld_…` (tokens are made in the admin).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- calling hours: a hard callee-local cap of 08:00–21:00; these may only narrow it ------------------
def _hard_cap_time(name: str, default: str) -> _time:
    raw = env_str(name, default).strip()
    try:
        hours, minutes = (int(part) for part in raw.split(":"))
        value = _time(hours, minutes)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a time; use HH:MM, e.g. 09:00") from None
    if not _time(8, 0) <= value <= _time(21, 0):
        raise ImproperlyConfigured(
            f"{name}={raw} is outside 08:00–21:00: the hard calling-hours cap can be narrowed, never widened"
        )
    return value


HARD_EARLIEST = _hard_cap_time("HERALD_HARD_EARLIEST", "08:00")
HARD_LATEST = _hard_cap_time("HERALD_HARD_LATEST", "21:00")
if HARD_EARLIEST >= HARD_LATEST:
    raise ImproperlyConfigured(
        f"HERALD_HARD_EARLIEST ({HARD_EARLIEST:%H:%M}) must be before HERALD_HARD_LATEST ({HARD_LATEST:%H:%M})"
    )

# --- logging: phone numbers are masked in every log line --------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_phones": {"()": "herald.logmask.MaskPhoneNumbers"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["mask_phones"], "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_str("HERALD_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # twilio's HTTP client logs request bodies (phone numbers) at INFO.
        "twilio.http_client": {"level": "WARNING"},
        **_QUIET_LOGGERS,
    },
}
