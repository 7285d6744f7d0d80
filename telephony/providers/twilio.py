"""Twilio: REST create with inline TwiML (<Play> a signed URL inside a one-digit <Gather>), status callbacks,
async answering-machine detection; a machine is hung up on, or its TwiML is replaced by the voicemail clip.

Pointed at another Twilio-compatible endpoint (the local sandbox) only through the account's api_base_url.

Twilio has no idempotency key on call creation, so a create that times out or gets a 5xx may or may not have
dialled. ``find`` answers that afterwards by listing calls to the number (To + StartTime, and queued calls,
which have no start time yet) and matching From and the time the attempt began. Twilio's list does not return
a call's callback URL, where the attempt id is, so the match is by To/From/time, not by our tag.
"""

from __future__ import annotations

import hmac
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import requests
from django.conf import settings
from django.urls import reverse
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator, add_port, remove_port
from twilio.rest import Client
from twilio.rest.api.v2010.account.call import CallInstance
from twilio.twiml.voice_response import Gather, VoiceResponse
from urllib3.exceptions import NewConnectionError

from telephony.credentials import CredentialsError, auth_token
from telephony.models import api_base_url_problem
from telephony.providers.base import CallEvents, Dial, FoundCall, Provider, ProviderError, ProviderStatus

_MAX_SIGNATURE_CHARS = 64  # base64 of an HMAC-SHA1 is 28 characters, of an HMAC-SHA256 44
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
GATHER_TIMEOUT = 5  # seconds of silence after the message before the call is considered listened through
HTTP_TIMEOUT = 15.0  # seconds per REST request
# 20429 (HTTP 429): Twilio refused the request before acting on it, so retrying cannot dial twice.
RATE_LIMIT_BACKOFF = (0.5, 1.0, 2.0)  # seconds before each retry; then the attempt fails as transient
# 503: Twilio asks to come back later without having acted. Other 5xx may have created the call: ambiguous.
_TRANSIENT_HTTP = {503}
# 21211 invalid To, 13224 a number Twilio will not call: the number is the problem, retrying cannot help.
INVALID_NUMBER_CODES = frozenset({21211, 13224})
CLOCK_SKEW = timedelta(seconds=30)  # between our clock and Twilio's date_created, with room
LIST_LIMIT = 200  # calls to one number in a day worth reading before giving up on a match
LIST_PAGE_SIZE = 100


def webhook_url(name: str, attempt_id: int) -> str:
    """Where Twilio reports on an attempt: one of telephony.urls' views, at the public address."""
    return f"{settings.PUBLIC_URL}{reverse(name, args=[attempt_id])}"


def twiml_for(dial: Dial) -> str:
    response = VoiceResponse()
    gather = Gather(
        num_digits=1,
        action=webhook_url("telephony:twilio-gather", dial.attempt_id),
        method="POST",
        timeout=GATHER_TIMEOUT,
        action_on_empty_result=True,
    )
    gather.play(dial.audio_url)
    response.append(gather)
    response.hangup()
    return str(response)


class RateLimited(ProviderError):
    """HTTP 429 (20429): refused before Twilio acted on the request."""


class TwilioProvider(Provider):
    kind = "twilio"
    async_amd = True

    def _client(self) -> Client:
        # Checked here too, not only when staff save the account: the token goes nowhere else, however the
        # row was changed.
        problem = api_base_url_problem(self.account.api_base_url)
        if problem:
            raise CredentialsError(f"the token is not sent to {self.account.api_base_url!r}: {problem}")
        client = Client(
            self.account.account_sid, auth_token(self.account), http_client=TwilioHttpClient(timeout=HTTP_TIMEOUT)
        )
        if self.account.api_base_url:
            client.api.base_url = self.account.api_base_url.rstrip("/")
        return client

    def place(self, dial: Dial, events: CallEvents | None = None) -> str:
        # Twilio reports through webhooks (telephony.views), not `events`.
        try:
            client = self._client()
        except CredentialsError as exc:  # nothing was sent: say what is missing instead of failing obscurely
            raise ProviderError(str(exc), permanent=True, code="credentials") from exc
        for delay in RATE_LIMIT_BACKOFF:
            try:
                return self._create(client, dial)
            except RateLimited:
                time.sleep(delay * random.uniform(0.8, 1.2))  # jittered: workers refused together spread out
        return self._create(client, dial)  # refused again now, the attempt fails as transient

    def _create(self, client: Client, dial: Dial) -> str:
        try:
            call = client.calls.create(
                to=dial.to,
                from_=dial.caller_id,
                twiml=twiml_for(dial),
                status_callback=webhook_url("telephony:twilio-status", dial.attempt_id),
                status_callback_method="POST",
                status_callback_event=STATUS_EVENTS,
                timeout=dial.ring_timeout,
                **_machine_detection(dial),
            )
        except TwilioRestException as exc:
            code = str(exc.code or "")
            if exc.status == 429:
                raise RateLimited(
                    f"Twilio is rate limiting calls ({code or 20429})", permanent=False, code=code or "20429"
                ) from exc
            if exc.status in _TRANSIENT_HTTP:
                raise ProviderError(f"Twilio is busy ({exc.status})", permanent=False, code=code) from exc
            if exc.status >= 500:
                raise ProviderError(
                    f"Twilio server error {exc.status}", permanent=False, ambiguous=True, code=code
                ) from exc
            if exc.code in INVALID_NUMBER_CODES:
                raise ProviderError(
                    f"Twilio will not call this number: {exc.msg}", permanent=True, code=code
                ) from exc
            raise ProviderError(
                f"Twilio refused the call: {exc.msg}", permanent=True, code=code or str(exc.status)
            ) from exc
        except requests.ConnectionError as exc:
            # A refused connection never reached Twilio; anything after connecting might have.
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            # NewConnectionError covers refused connections and failed DNS lookups (NameResolutionError).
            refused = isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(reason, NewConnectionError)
            raise ProviderError(
                f"cannot reach Twilio: {type(exc).__name__}", permanent=False, ambiguous=not refused
            ) from exc
        except requests.Timeout as exc:
            raise ProviderError("Twilio did not answer in time", permanent=False, ambiguous=True) from exc
        return call.sid

    def find(self, dial: Dial, *, since: datetime, until: datetime) -> list[FoundCall]:
        try:
            client = self._client()
        except CredentialsError as exc:
            raise ProviderError(str(exc), permanent=False, code="credentials") from exc
        # StartTime filters by UTC date (Twilio documents day granularity): midnight of the earliest day.
        day = (since - CLOCK_SKEW).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            pages = {"limit": LIST_LIMIT, "page_size": LIST_PAGE_SIZE}
            listed = client.calls.list(to=dial.to, start_time_after=day, **pages)
            # A call still queued has not started, so the StartTime filter leaves it out.
            listed += client.calls.list(to=dial.to, status="queued", **pages)
        except TwilioRestException as exc:
            raise ProviderError(
                f"Twilio call list failed: {exc.msg}", permanent=False, code=str(exc.code or "")
            ) from exc
        except TwilioException as exc:  # a page the library could not read: it says so without a status
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ProviderError(f"Twilio call list failed: {first_line[:200]}", permanent=False) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"cannot reach Twilio: {type(exc).__name__}", permanent=False) from exc
        found: dict[str, FoundCall] = {}
        for call in listed:
            created = call.date_created
            if not isinstance(created, datetime) or call._from != dial.caller_id or call.sid in found:
                continue
            if since - CLOCK_SKEW <= created <= until + CLOCK_SKEW:
                found[call.sid] = _found(call, created)
        return sorted(found.values(), key=lambda f: f.created_at)

    def fetch(self, provider_call_id: str) -> ProviderStatus:
        try:
            call = self._client().calls(provider_call_id).fetch()
        except CredentialsError as exc:  # cannot ask now; says nothing about the call
            raise ProviderError(str(exc), permanent=False, code="credentials") from exc
        except TwilioRestException as exc:
            raise ProviderError(f"Twilio fetch failed: {exc.msg}", permanent=exc.status == 404) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"cannot reach Twilio: {type(exc).__name__}", permanent=False) from exc
        duration = int(call.duration) if call.duration not in (None, "") else None
        return ProviderStatus(status=call.status, answered_by=call.answered_by or "", duration=duration)

    def hang_up(self, provider_call_id: str) -> None:
        """End a call in progress (an answering machine on a campaign that leaves no voicemail)."""
        self._update(provider_call_id, status="completed")

    def play_and_hang_up(self, provider_call_id: str, audio_url: str) -> None:
        """Replace what the call is doing with one clip, then hang up (a voicemail after the beep)."""
        response = VoiceResponse()
        response.play(audio_url)
        response.hangup()
        self._update(provider_call_id, twiml=str(response))

    def _update(self, provider_call_id: str, **changes: str) -> None:
        try:
            self._client().calls(provider_call_id).update(**changes)
        except CredentialsError as exc:
            raise ProviderError(str(exc), permanent=True, code="credentials") from exc
        except TwilioRestException as exc:
            # 21220: the call is no longer in progress (the callee or the machine hung up first).
            raise ProviderError(
                f"Twilio call update failed: {exc.msg}", permanent=exc.status < 500, code=str(exc.code or "")
            ) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"cannot reach Twilio: {type(exc).__name__}", permanent=False) from exc

    def verify_webhook(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        # A malformed header (non-ASCII, over-long) is a bad signature, not an error; the comparison is
        # constant-time over bytes (hmac.compare_digest), for the URL with and without its port as Twilio signs.
        if not signature or not signature.isascii() or len(signature) > _MAX_SIGNATURE_CHARS:
            return False
        validator = RequestValidator(auth_token(self.account))
        parsed = urlparse(url)
        given = signature.encode("ascii")
        valid = False
        for variant in (remove_port(parsed), add_port(parsed)):
            expected = validator.compute_signature(variant, dict(params)).encode("ascii")
            valid |= hmac.compare_digest(expected, given)
        return valid


def _machine_detection(dial: Dial) -> dict[str, str]:
    """Async detection, so the message starts at once for a person; the result comes to the AMD webhook.

    For a voicemail, DetectMessageEnd reports a machine only after its greeting, when the clip can follow the
    beep; to hang up, Enable reports it as soon as it is recognised (machine_start), without the greeting."""
    return {
        "machine_detection": "DetectMessageEnd" if dial.wait_for_beep else "Enable",
        "async_amd": "true",
        "async_amd_status_callback": webhook_url("telephony:twilio-amd", dial.attempt_id),
        "async_amd_status_callback_method": "POST",
    }


def _found(call: CallInstance, created: datetime) -> FoundCall:
    duration = int(call.duration) if call.duration not in (None, "") else None
    return FoundCall(
        provider_call_id=call.sid,
        status=call.status,
        created_at=created,
        answered_by=call.answered_by or "",
        duration=duration,
    )
