"""The provider interface: place a call, ask what became of it, verify its webhooks.

A provider reports a call's progress either through webhooks (Twilio: the views feed telephony.outcomes) or,
when it runs the call in this process (SIP), through the `CallEvents` it is handed with the call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from telephony.models import TelephonyAccount


class ProviderError(Exception):
    """A provider request failed.

    permanent: retrying cannot help (bad number, bad credentials). ambiguous: the request may have reached
    the provider, so the call may exist: never re-dial, wait for callbacks or ask the provider. account: the
    provider refused the account, not the call (credentials, caller id, permissions), before dialling anyone:
    every call of the campaign would meet it, so the message says what staff must fix.
    """

    def __init__(
        self, message: str, *, permanent: bool, ambiguous: bool = False, code: str = "", account: bool = False
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.ambiguous = ambiguous
        self.code = code
        self.account = account


@dataclass(frozen=True)
class Dial:
    attempt_id: int
    to: str
    caller_id: str
    audio_url: str
    ring_timeout: int = 30
    wait_for_beep: bool = False  # a voicemail follows: detection waits for the end of a machine's greeting
    voicemail_path: str = ""  # with wait_for_beep: the voicemail's local telephony μ-law WAV (SIP plays it itself)
    audio_path: str = ""  # the local telephony μ-law WAV that audio_url serves (SIP plays it itself)
    # A campaign with a call flow: the signed token of its first key wait (Twilio's gather action carries it)
    # and seconds to wait for a key. Blank: the call ends after the message's key.
    flow_token: str = ""
    input_timeout: int = 5
    # SIP runs the flow itself: the walk, and each clip's local telephony WAV by clip name (telephony.flows).
    flow: Any = None  # campaigns.callflow.Flow
    clip_paths: Mapping[str, str] = field(default_factory=dict)
    said: Mapping[str, str] = field(default_factory=dict)  # slot path -> the slot as said (what a reschedule records)


@dataclass(frozen=True)
class Ending:
    """What a finished call means for its attempt, in the attempt state machine's terms."""

    status: str
    duration: int | None = None
    gather: str | None = None  # the key pressed, "" = listened to the end; None = hung up during the message
    error_code: str = ""
    error_message: str = ""
    permanent: bool = False
    # The trunk refused the account, not the call (its credentials): nobody was dialled, and every call of the
    # campaign would meet the same refusal. The campaign pauses with error_message; the call keeps its place.
    account: bool = False
    answered_by: str = ""  # answering-machine detection's word, where the provider ran it within the call (SIP)


class CallEvents(Protocol):
    """Where a provider that runs a call itself reports it (telephony.outcomes.EVENTS)."""

    def progressed(self, attempt_id: int, status: str) -> None: ...

    def ended(self, attempt_id: int, ending: Ending) -> None: ...


@dataclass(frozen=True)
class ProviderStatus:
    status: str
    answered_by: str = ""
    duration: int | None = None


@dataclass(frozen=True)
class FoundCall:
    """A call the provider has on record, found by looking it up rather than by its id."""

    provider_call_id: str
    status: str
    created_at: datetime
    answered_by: str = ""
    duration: int | None = None


class Provider(ABC):
    kind: ClassVar[str]
    # Answering-machine detection reported while the message plays (a webhook), so that the call can be hung
    # up or a voicemail left through hang_up()/play_and_hang_up(); False: the provider decides in the call.
    async_amd: ClassVar[bool] = False

    def __init__(self, account: TelephonyAccount) -> None:
        self.account = account

    @abstractmethod
    def place(self, dial: Dial, events: CallEvents) -> str:
        """Ask the provider to dial; returns its call id. Raises ProviderError. A provider that runs the call
        itself reports its progress and end to `events`; one with webhooks ignores it."""

    @abstractmethod
    def fetch(self, provider_call_id: str) -> ProviderStatus:
        """What the provider says became of a call. Raises ProviderError."""

    @abstractmethod
    def verify_webhook(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        """Is this webhook really from the provider for this account?"""

    def find(self, dial: Dial, *, since: datetime, until: datetime) -> list[FoundCall]:
        """Calls the provider placed for `dial` between `since` and `until`, oldest first; [] if none.

        For a create that failed ambiguously: the answer decides whether the callee was dialled. Raises
        ProviderError when the provider cannot say (providers that cannot list their calls never can).
        """
        raise ProviderError(f"{self.kind} calls cannot be looked up", permanent=False, code="no-lookup")

    def hang_up(self, provider_call_id: str) -> None:
        """End a call now (async machine detection found a machine). Raises ProviderError."""
        raise ProviderError(f"{self.kind} calls cannot be hung up from outside", permanent=True, code="no-amd")

    def play_and_hang_up(self, provider_call_id: str, audio_url: str) -> None:
        """Play `audio_url` to the call, then end it (a voicemail after the beep). Raises ProviderError."""
        raise ProviderError(f"{self.kind} calls cannot be redirected", permanent=True, code="no-amd")

    def check_account(self) -> str:
        """Ask the provider whether the account's credentials work, placing no call; returns what it said.
        Raises ProviderError saying what is wrong."""
        raise ProviderError(f"{self.kind} accounts cannot be checked without a call", permanent=True, code="no-check")

    def owned_numbers(self) -> list[str]:
        """The numbers the provider says the account owns (E.164). Raises ProviderError."""
        raise ProviderError(f"{self.kind} accounts cannot list their numbers", permanent=True, code="no-numbers")
