"""Auth tokens: stored encrypted or named by environment variable, and errors that say which account."""

from __future__ import annotations

import pytest

from telephony.actions import set_auth_token
from telephony.credentials import CredentialsError, auth_token
from telephony.models import TelephonyAccount

pytestmark = pytest.mark.django_db
TOKEN = "f3a9c2e4b5d6a7b8c9d0e1f2a3b4c5d6"


@pytest.fixture
def bare_account() -> TelephonyAccount:
    return TelephonyAccount.objects.create(name="Shanghai trunk", account_sid="AC" + "a" * 32)


def test_stored_token_is_encrypted_and_round_trips(bare_account):
    set_auth_token(bare_account, TOKEN)

    stored = TelephonyAccount.objects.values_list("auth_token_encrypted", flat=True).get(pk=bare_account.pk)
    assert stored and TOKEN not in stored
    assert auth_token(TelephonyAccount.objects.get(pk=bare_account.pk)) == TOKEN


def test_encrypting_the_same_token_twice_gives_different_text(bare_account):
    set_auth_token(bare_account, TOKEN)
    first = bare_account.auth_token_encrypted
    set_auth_token(bare_account, TOKEN)

    assert bare_account.auth_token_encrypted != first
    assert auth_token(bare_account) == TOKEN


def test_token_from_the_environment_wins(bare_account, monkeypatch):
    set_auth_token(bare_account, "stored-token")
    bare_account.auth_token_env = "HERALD_TEST_TWILIO_TOKEN"
    monkeypatch.setenv("HERALD_TEST_TWILIO_TOKEN", TOKEN)

    assert auth_token(bare_account) == TOKEN


def test_token_from_a_file_named_in_the_environment(bare_account, monkeypatch, tmp_path):
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n", encoding="utf-8")
    bare_account.auth_token_env = "HERALD_TEST_TWILIO_TOKEN"
    monkeypatch.delenv("HERALD_TEST_TWILIO_TOKEN", raising=False)
    monkeypatch.setenv("HERALD_TEST_TWILIO_TOKEN_FILE", str(secret))

    assert auth_token(bare_account) == TOKEN


def test_unreadable_token_file_names_the_account(bare_account, monkeypatch, tmp_path):
    bare_account.auth_token_env = "HERALD_TEST_TWILIO_TOKEN"
    monkeypatch.delenv("HERALD_TEST_TWILIO_TOKEN", raising=False)
    monkeypatch.setenv("HERALD_TEST_TWILIO_TOKEN_FILE", str(tmp_path / "missing"))

    with pytest.raises(CredentialsError, match="Shanghai trunk.*cannot read the token file"):
        auth_token(bare_account)


def test_unset_environment_variable_names_account_and_variable(bare_account, monkeypatch):
    bare_account.auth_token_env = "HERALD_TEST_TWILIO_TOKEN"
    monkeypatch.delenv("HERALD_TEST_TWILIO_TOKEN", raising=False)
    monkeypatch.delenv("HERALD_TEST_TWILIO_TOKEN_FILE", raising=False)

    with pytest.raises(CredentialsError, match="Shanghai trunk.*HERALD_TEST_TWILIO_TOKEN is not set"):
        auth_token(bare_account)


def test_missing_token_names_the_account(bare_account):
    with pytest.raises(CredentialsError, match="Shanghai trunk has no auth token"):
        auth_token(bare_account)


def test_changed_key_is_a_clear_error_without_the_secret(bare_account, settings):
    settings.CREDENTIALS_KEY = "key-one"
    set_auth_token(bare_account, TOKEN)
    settings.CREDENTIALS_KEY = "key-two"

    with pytest.raises(CredentialsError, match="Shanghai trunk.*cannot be decrypted.*HERALD_CREDENTIALS_KEY") as info:
        auth_token(bare_account)
    assert TOKEN not in str(info.value)

    settings.CREDENTIALS_KEY = "key-one"
    assert auth_token(bare_account) == TOKEN


def test_tampered_ciphertext_is_a_clear_error(bare_account):
    set_auth_token(bare_account, TOKEN)
    bare_account.auth_token_encrypted = bare_account.auth_token_encrypted[:-4] + "AAAA"

    with pytest.raises(CredentialsError, match="cannot be decrypted"):
        auth_token(bare_account)


def test_the_key_defaults_to_one_derived_from_the_secret_key(bare_account, settings):
    settings.CREDENTIALS_KEY = ""
    set_auth_token(bare_account, TOKEN)
    assert auth_token(bare_account) == TOKEN

    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    with pytest.raises(CredentialsError, match="cannot be decrypted"):
        auth_token(bare_account)
