"""Twilio: REST create with inline TwiML (<Play> a signed URL inside a one-digit <Gather>), status callbacks.

Pointed at another Twilio-compatible endpoint (the local sandbox) only through the account's api_base_url.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Gather, VoiceResponse
from urllib3.exceptions import NewConnectionError

from telephony.credentials import CredentialsError, auth_token
from telephony.providers.base import Dial, Provider, ProviderError, ProviderStatus

STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
GATHER_TIMEOUT = 5  # seconds of silence after the message before the call is considered listened through
# Twilio error codes that describe the callee or the request, not a passing condition.
_TRANSIENT_HTTP = {429, 503}


def twiml_for(dial: Dial) -> str:
    response = VoiceResponse()
    gather = Gather(
        num_digits=1,
        action=dial.gather_url,
        method="POST",
        timeout=GATHER_TIMEOUT,
        action_on_empty_result=True,
    )
    gather.play(dial.audio_url)
    response.append(gather)
    response.hangup()
    return str(response)


class TwilioProvider(Provider):
    kind = "twilio"

    def _client(self) -> Client:
        client = Client(
            self.account.account_sid, auth_token(self.account), http_client=TwilioHttpClient(timeout=15)
        )
        if self.account.api_base_url:
            client.api.base_url = self.account.api_base_url.rstrip("/")
        return client

    def place(self, dial: Dial) -> str:
        try:
            client = self._client()
        except CredentialsError as exc:  # nothing was sent: say what is missing instead of failing obscurely
            raise ProviderError(str(exc), permanent=True, code="credentials") from exc
        try:
            call = client.calls.create(
                to=dial.to,
                from_=dial.caller_id,
                twiml=twiml_for(dial),
                status_callback=dial.status_url,
                status_callback_method="POST",
                status_callback_event=STATUS_EVENTS,
                machine_detection="Enable",
                timeout=dial.ring_timeout,
            )
        except TwilioRestException as exc:
            if exc.status in _TRANSIENT_HTTP:
                raise ProviderError(
                    f"Twilio is busy ({exc.status})", permanent=False, code=str(exc.code or "")
                ) from exc
            if exc.status >= 500:
                raise ProviderError(
                    f"Twilio server error {exc.status}",
                    permanent=False,
                    ambiguous=True,
                    code=str(exc.code or ""),
                ) from exc
            raise ProviderError(
                f"Twilio refused the call: {exc.msg}", permanent=True, code=str(exc.code or exc.status)
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

    def verify_webhook(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        if not signature:
            return False
        return RequestValidator(auth_token(self.account)).validate(url, dict(params), signature)
