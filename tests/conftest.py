"""Shared fixtures: real Celery worker processes over Redis, the Twilio sandbox, demo-shaped data; strict mode."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import time as clock_time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from campaigns.demo import daytime_zone
from campaigns.models import Campaign, Contact, ContactList, ScriptTemplate, Variant
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from tests.strict import pytest_configure  # noqa: F401  (strict mode: HERALD_STRICT_TESTS=1 fails skips)
from tests.wait import wait_until
from tests.webhook_receiver import LocalReceiver
from voices.models import Voice

ROOT = Path(__file__).resolve().parent.parent


def worker_database_url() -> str:
    """DATABASE_URL of the test database, for worker processes started by tests."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture
def celery_worker(transactional_db, live_server, settings) -> Iterator[subprocess.Popen]:
    """A real `celery worker` process on the test database and Redis, serving all three queues."""
    settings.PUBLIC_URL = live_server.url
    broker = settings.CELERY_BROKER_URL
    redis.Redis.from_url(broker).flushdb()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": worker_database_url(),
        "HERALD_TEST_BROKER_URL": broker,
        "HERALD_PUBLIC_URL": live_server.url,
        "HERALD_VAR_DIR": str(settings.VAR_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = Path(settings.VAR_DIR) / f"worker-{os.getpid()}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "herald", "worker", "-Q", "synthesis,telephony,default",
         "-c", "2", "--pool", "threads", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"test-{secrets.token_hex(3)}@%h", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited:\n{log_path.read_text(errors='replace')[-3000:]}")
        return "ready." in log_path.read_text(errors="replace")

    try:
        wait_until(ready, lambda: f"the celery worker to start:\n{log_path.read_text(errors='replace')[-3000:]}",
                   timeout=60, interval=0.2)
    except BaseException:
        proc.kill()
        raise
    proc.log_path = log_path  # type: ignore[attr-defined]
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def twilio_account_credentials() -> tuple[str, str]:
    return "AC" + secrets.token_hex(16), secrets.token_hex(16)


@pytest.fixture
def account(db) -> TelephonyAccount:
    acct = TelephonyAccount.objects.create(
        name="test", account_sid="AC" + secrets.token_hex(16), caller_ids=["+862161234567"],
        calls_per_second=100, max_concurrent_calls=100,
    )
    set_auth_token(acct, secrets.token_hex(16))
    return acct


@pytest.fixture
def voices(db) -> tuple[Voice, Voice]:
    return (
        Voice.objects.create(name="high", parameters={"voice": "cmn", "pitch": 60}),
        Voice.objects.create(name="low", parameters={"voice": "cmn", "pitch": 35}),
    )


@pytest.fixture
def make_campaign(db, account, voices):
    """A draft campaign over `n` contacts whose local time is daytime now."""

    def make(n: int = 10, *, text: str = "您好{name}，您的订单{order_id}明天送达。", weights=(1, 1), fields=None,
             **campaign_kwargs) -> Campaign:
        tz = daytime_zone(timezone.now())
        contact_list = ContactList.objects.create(name=f"list-{secrets.token_hex(4)}")
        Contact.objects.bulk_create(
            Contact(
                contact_list=contact_list, phone=f"+86138{i:08d}", name=f"张{i}号", timezone=tz,
                fields=fields(i) if fields else {"order_id": f"SF{i:010d}"},
            )
            for i in range(n)
        )
        script = ScriptTemplate.objects.create(name=f"s-{secrets.token_hex(4)}", text=text)
        defaults = dict(window_start=clock_time(0, 0), window_end=clock_time(23, 59), calls_per_second=100,
                        max_concurrent_calls=100)
        defaults.update(campaign_kwargs)
        campaign = Campaign.objects.create(
            name=f"c-{secrets.token_hex(4)}", contact_list=contact_list, telephony_account=account,
            caller_id="+862161234567", **defaults,
        )
        for voice, weight, name in zip(voices, weights, "AB", strict=False):
            Variant.objects.create(campaign=campaign, name=name, voice=voice, script=script, weight=weight)
        return campaign

    return make


@pytest.fixture
def receivers(monkeypatch) -> Iterator:
    """Start result webhook receivers (the README's, on 127.0.0.1: tests/webhook_receiver.py); all stopped after."""
    started: list[LocalReceiver] = []

    def make(**kwargs) -> LocalReceiver:
        receiver = LocalReceiver(monkeypatch, **kwargs).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        if receiver.server is not None:
            receiver.stop()


# --- headless Chromium for admin pages -------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_MISSING = f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)"


def headless_chromium(tmp_path: Path, *extra_args: str, page_load_strategy: str = "normal"):
    """Debian's headless Chromium driven through its chromedriver, with `extra_args` after the common ones.
    `page_load_strategy="none"`: commands do not wait for a navigation to finish (to watch a page while it posts)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    # With both the browser and the driver path given, Selenium Manager never looks for (or downloads) either.
    options.binary_location = CHROMIUM
    options.page_load_strategy = page_load_strategy
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *extra_args,
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    """Headless Chromium for admin pages (skips the test when it is not installed)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(CHROMIUM_MISSING)
    driver = headless_chromium(tmp_path, "--window-size=1400,1100")
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


@pytest.fixture
def chromium_with_fake_microphone(tmp_path: Path) -> Iterator:
    """Headless Chromium whose microphone is Chromium's own test signal, granted without a prompt."""
    driver = headless_chromium(
        tmp_path,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    )
    driver.set_script_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def chinese_staff(client, db):
    """A superuser logged in with `client` who chose Simplified Chinese on admin → Language."""
    from django.contrib.auth.models import User
    from django.urls import reverse

    from campaigns.models import StaffPreference

    user = User.objects.create_superuser("运营", "ops@example.test", "pw")
    client.force_login(user)
    response = client.post(reverse("language"), {"language": "zh-hans", "next": reverse("admin:index")}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:index")
    assert StaffPreference.objects.get(user=user).language == "zh-hans"
    return user
