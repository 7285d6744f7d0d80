"""The provider interface: place a call, ask what became of it, verify its webhooks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from telephony.models import TelephonyAccount


class ProviderError(Exception):
    """A provider request failed.

    permanent: retrying cannot help (bad number, bad credentials). ambiguous: the request may have reached
    the provider, so the call may exist: never re-dial, wait for callbacks or ask the provider.
    """

    def __init__(self, message: str, *, permanent: bool, ambiguous: bool = False, code: str = "") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.ambiguous = ambiguous
        self.code = code


@dataclass(frozen=True)
class Dial:
    attempt_id: int
    to: str
    caller_id: str
    audio_url: str
    status_url: str
    gather_url: str
    ring_timeout: int = 30
    amd_url: str = ""  # async answering-machine detection reports here; blank = synchronous detection
    wait_for_beep: bool = False  # a voicemail follows: detection waits for the end of a machine's greeting
    audio_path: str = ""  # the local telephony μ-law WAV that audio_url serves (SIP plays it itself)


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

    def __init__(self, account: TelephonyAccount) -> None:
        self.account = account

    @abstractmethod
    def place(self, dial: Dial) -> str:
        """Ask the provider to dial; returns its call id. Raises ProviderError."""

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
