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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlparse

import requests
from django.conf import settings
from django.urls import reverse
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator, add_port, remove_port
from twilio.rest import Client
from twilio.rest.api.v2010.account.call import CallInstance
from twilio.twiml.voice_response import Dial as VoiceDial
from twilio.twiml.voice_response import Gather, VoiceResponse
from urllib3.exceptions import NewConnectionError

from campaigns.policy import is_invalid_number
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
# Refusals of the account, not of the call: Twilio acted on nothing and would refuse every call of the campaign
# alike, so the campaign pauses with what to fix (telephony.actions.place_call) instead of failing its calls.
# 21215 is per country (the account's geographic permissions): the whole campaign pauses all the same.
ACCOUNT_ERRORS = {
    20003: "Twilio refused the account's credentials (20003 Authenticate): check the telephony account's "
    "account SID and auth token, then resume",
    20005: "Twilio says the account is not active (20005: suspended or closed): reactivate it in the Twilio "
    "console (billing, or Twilio support), then resume",
    21210: "Twilio refused the caller id {caller_id} (21210: not verified for this account): verify the number "
    "in the Twilio console (or use one bought there), then resume",
    21212: "Twilio refused the caller id {caller_id} (21212: not a valid From number): set a valid E.164 caller "
    "id on the campaign, then resume",
    21215: "Twilio may not call {to} (21215: the account's geographic permissions): allow that country in the "
    "Twilio console's voice geographic permissions, then resume",
}
CLOCK_SKEW = timedelta(seconds=30)  # between our clock and Twilio's date_created, with room
NUMBERS_LIMIT = 1000  # an account's own numbers read for caller ids; more are not a caller-id list
LIST_LIMIT = 200  # calls to one number in a day worth reading before giving up on a match
LIST_PAGE_SIZE = 100


def webhook_url(name: str, attempt_id: int) -> str:
    """Where Twilio reports on an attempt: one of telephony.urls' views, at the public address."""
    return f"{settings.PUBLIC_URL}{reverse(name, args=[attempt_id])}"


def gather_url(attempt_id: int, flow_token: str = "") -> str:
    """The gather action; with a call flow, the signed node of the key wait travels in the URL."""
    url = webhook_url("telephony:twilio-gather", attempt_id)
    return f"{url}?{urlencode({'node': flow_token})}" if flow_token else url


def twiml_for(dial: Dial) -> str:
    return flow_twiml(
        dial.attempt_id, [dial.audio_url], flow_token=dial.flow_token, gather=True,
        timeout=dial.input_timeout if dial.flow_token else GATHER_TIMEOUT,
    )


def flow_twiml(
    attempt_id: int, audio_urls: list[str], *, flow_token: str = "", gather: bool, timeout: int = GATHER_TIMEOUT,
    transfer_to: str = "", transfer_action: str = "",
) -> str:
    """Play the clips; then wait for one key (posted to the gather action, with the node when there is a flow),
    or connect the callee to `transfer_to` (a number or SIP address), or hang up."""
    response = VoiceResponse()
    if gather:
        wait = Gather(
            num_digits=1,
            action=gather_url(attempt_id, flow_token),
            method="POST",
            timeout=timeout,
            action_on_empty_result=True,
        )
        for url in audio_urls:
            wait.play(url)
        response.append(wait)
    else:
        for url in audio_urls:
            response.play(url)
    if transfer_to:
        dial = VoiceDial(action=transfer_action, method="POST")
        if transfer_to.startswith(("sip:", "sips:")):
            dial.sip(transfer_to)
        else:
            dial.number(transfer_to)
        response.append(dial)
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
            raise ProviderError(
                f"the telephony account cannot be used: {exc}; fix the account, then resume",
                permanent=True, code="credentials", account=True,
            ) from exc
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
            if exc.code in ACCOUNT_ERRORS and exc.status < 500:
                raise ProviderError(
                    ACCOUNT_ERRORS[exc.code].format(caller_id=dial.caller_id, to=dial.to),
                    permanent=True, code=code, account=True,
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

    def _ask(self, what: str, request: Callable[[Client], Any]) -> Any:
        """One read-only request; ProviderError saying what Twilio (or the network) answered."""
        try:
            client = self._client()
        except CredentialsError as exc:
            raise ProviderError(str(exc), permanent=True, code="credentials") from exc
        try:
            return request(client)
        except TwilioRestException as exc:
            hint = " (the Account SID or Auth Token is wrong)" if exc.code in (20003, 20005) or exc.status == 401 else ""
            raise ProviderError(
                f"Twilio refused to {what}: {exc.code or exc.status} {exc.msg}{hint}", permanent=True,
                code=str(exc.code or ""),
            ) from exc  # fmt: skip
        except TwilioException as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ProviderError(f"Twilio could not {what}: {first_line[:200]}", permanent=False) from exc
        except requests.RequestException as exc:
            base = self.account.api_base_url or "Twilio"
            raise ProviderError(f"cannot reach {base}: {type(exc).__name__}", permanent=False) from exc

    def check_account(self) -> str:
        sid = self.account.account_sid
        found = self._ask("check the account", lambda client: client.api.v2010.accounts(sid).fetch())
        return f"Twilio accepted the credentials: account {found.friendly_name!r} is {found.status}"

    def owned_numbers(self) -> list[str]:
        listed = self._ask(
            "list the account's numbers", lambda client: client.incoming_phone_numbers.list(limit=NUMBERS_LIMIT)
        )
        return [n.phone_number for n in listed if n.phone_number]

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


def status_error(status: str, params: Mapping[str, str]) -> tuple[str, str]:
    """The error code and message a status callback gives an attempt.

    Twilio sends the call's final SIP response as SipResponseCode. On a call that failed, was busy or was not
    answered, one that says the number does not exist (404, 410, 484, 604) is stored as "sip-<code>", as the
    SIP provider stores it: campaigns.policy reads it as an invalid number (never retried, not a provider
    failure). Otherwise Twilio's ErrorCode stands; a failure without one keeps its SIP response as the code.
    """
    code = params.get("ErrorCode", "").strip()[:20]
    message = params.get("ErrorMessage", "").strip()
    sip = params.get("SipResponseCode", "").strip()
    if not (sip.isascii() and sip.isdigit() and len(sip) == 3) or status not in ("failed", "busy", "no-answer"):
        return code, message
    if is_invalid_number(f"sip-{sip}"):
        said = f"the carrier says the number does not exist (SIP {sip})"
        twilio_said = ": ".join(part for part in (f"Twilio error {code}" if code else "", message) if part)
        return f"sip-{sip}", f"{said}; {twilio_said}" if twilio_said else said
    if status == "failed" and not code:
        return f"sip-{sip}", message or f"the call failed with SIP {sip}"
    return code, message


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
