"""Provider registry: a dict from account kind to class. No discovery, no imports built from input."""

from __future__ import annotations

from telephony.models import TelephonyAccount
from telephony.providers.base import Provider, ProviderError
from telephony.providers.sip import SipProvider
from telephony.providers.twilio import TwilioProvider

PROVIDERS: dict[str, type[Provider]] = {
    "twilio": TwilioProvider,
    "sip": SipProvider,
}


def get_provider(account: TelephonyAccount) -> Provider:
    try:
        cls = PROVIDERS[account.kind]
    except KeyError:
        raise ProviderError(f"no provider for account kind {account.kind!r} yet", permanent=True) from None
    return cls(account)
