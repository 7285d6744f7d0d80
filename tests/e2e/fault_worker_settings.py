"""Settings of the worker processes the dialing fault tests start: tests.settings, with a visibility timeout
of seconds, looked at every second, so that the tasks a killed worker held are delivered again within a
scenario (by default kombu looks every 10 s, scans every 10th look, and the timeout is an hour)."""

from tests.settings import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 4,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
