"""gunicorn settings for the web service (docker-compose.yml and the Dockerfile run `gunicorn -c
python:herald.gunicorn_conf`): access and error logs go through herald.logmask, so neither a full phone number
nor a live signed URL's sig= reaches them."""

from herald.logmask import gunicorn_logger_class

logger_class = gunicorn_logger_class()
accesslog = "-"  # stdout, as the process manager collects it
