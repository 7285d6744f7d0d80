# One image for every Herald process; the synthesis worker image adds the GPU extra (torch).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HERALD_VAR_DIR=/var/lib/herald
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY herald herald
COPY campaigns campaigns
COPY voices voices
COPY synthesis synthesis
COPY telephony telephony
COPY sandbox sandbox
COPY manage.py ./
ARG EXTRAS=prod,embedded
RUN pip install --no-cache-dir -c constraints.txt ".[${EXTRAS}]" \
    && useradd --system --home /var/lib/herald herald && mkdir -p /var/lib/herald && chown herald /var/lib/herald
USER herald
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-real-secret-key-0123456789abcdef python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "-c", "python:herald.gunicorn_conf", "herald.wsgi", "-b", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]
