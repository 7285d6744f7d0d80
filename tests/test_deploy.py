"""Production configuration: settings fail loudly, `check --deploy` is clean, compose file is valid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from herald.env import env_bool, env_int, env_ip, env_list, env_port_range, env_str

ROOT = Path(__file__).resolve().parent.parent


def test_env_helpers_fail_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL='maybe' is not a boolean"):
        env_bool("X_BOOL", False)
    monkeypatch.setenv("X_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_INT='ten' is not an integer"):
        env_int("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("X_INT", 5, minimum=1)
    monkeypatch.delenv("X_REQUIRED", raising=False)
    with pytest.raises(ImproperlyConfigured, match="X_REQUIRED is required"):
        env_str("X_REQUIRED")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env_list("X_LIST", []) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [("10000", "is not a port range like 10000-20000"), ("a-b", "is not a port range"),
     ("20000-10000", "must run upwards"), ("80-90", "within 1024-65535"), ("10000-10000", "at least two ports")],
)
def test_an_rtp_port_range_is_checked(monkeypatch, raw, message):
    monkeypatch.setenv("X_PORTS", raw)
    with pytest.raises(ImproperlyConfigured, match=message):
        env_port_range("X_PORTS")


def test_nat_settings_parse(monkeypatch):
    monkeypatch.setenv("X_PORTS", " 10000-20000 ")
    assert env_port_range("X_PORTS") == (10000, 20000)
    monkeypatch.setenv("X_PORTS", "")
    assert env_port_range("X_PORTS") is None
    monkeypatch.setenv("X_IP", "203.0.113.5")
    assert env_ip("X_IP") == "203.0.113.5"
    monkeypatch.setenv("X_IP", "nat.example.com")
    with pytest.raises(ImproperlyConfigured, match="X_IP='nat.example.com' is not an IP address"):
        env_ip("X_IP")


def test_secrets_can_come_from_files(monkeypatch, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("X_TOKEN_FILE", str(secret))
    assert env_str("X_TOKEN") == "s3cret"
    monkeypatch.setenv("X_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_str("X_TOKEN")


def _production_env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HERALD_", "DATABASE_URL"))},
        "DJANGO_SETTINGS_MODULE": "herald.settings",
        "DJANGO_SECRET_KEY": "x" * 20 + "production-like-secret-key-for-the-deploy-check-0123",
        "DJANGO_ALLOWED_HOSTS": "herald.example.com",
        "HERALD_PUBLIC_URL": "https://herald.example.com",
        "HERALD_HTTPS": "1",
        "HERALD_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://herald@db.internal:5432/herald",
        "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    }


def test_check_deploy_reports_only_the_justified_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=_production_env(tmp_path), capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    issues = [line for line in output.splitlines() if "(security." in line or "(" in line and ".W0" in line]
    # HSTS preload is opt-in (HERALD_HSTS_PRELOAD=1): see README "Security checks".
    assert [i.split(")")[0].split("(")[-1] for i in issues] == ["security.W021"], output


def test_check_deploy_is_clean_with_preload(tmp_path):
    env = {**_production_env(tmp_path), "HERALD_HSTS_PRELOAD": "1"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_short_secret_key_is_refused(tmp_path):
    env = {**_production_env(tmp_path), "DJANGO_SECRET_KEY": "short"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "at least 50 characters" in result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) not installed; CI installs it")
def test_compose_file_is_valid():
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
