"""Twilio webhooks: verify the signature (403 otherwise), store the raw event, apply it to the attempt."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from campaigns import callflow
from campaigns.models import CallAttempt, Campaign
from synthesis.signing import signed_audio_url
from telephony import actions, flows, outcomes
from telephony.credentials import CredentialsError
from telephony.models import ProviderEvent, TelephonyAccount
from telephony.providers import get_provider, twilio
from telephony.providers.base import ProviderError

log = logging.getLogger(__name__)
TWIML_HANGUP = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'
# The message ended before detection decided (a machine's greeting is still playing): stay on the line so the
# voicemail can replace this pause after the beep. Twilio gives up detecting after 30 s by default.
VOICEMAIL_WAIT = 30
TWIML_WAIT_FOR_BEEP = (
    f'<?xml version="1.0" encoding="UTF-8"?><Response><Pause length="{VOICEMAIL_WAIT}"/><Hangup/></Response>'
)


# Numeric webhook fields as stored: a value outside these bounds is dropped (the event is still recorded, with the
# reason in its note) rather than reaching an integer column that would overflow. A day is a generous call.
MAX_DURATION_SECONDS = 86_400


def limit_body(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse bodies over WEBHOOK_MAX_BODY_BYTES with 413 before Django reads or parses them (and before the
    signature is computed over them): the declared length is checked, and a body without one is refused."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH") or ""
        try:
            length = int(declared) if declared else None
        except ValueError:
            length = -1
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length is None and chunked:
            # Django reads nothing of a body without a length; Twilio always sends one, so this is not a carrier.
            log.warning("webhook %s refused: a chunked body without Content-Length", request.path)
            return HttpResponse(status=411)
        if length is not None and not 0 <= length <= limit:
            log.warning("webhook %s refused: a %s KiB body (the limit is %s KiB)", request.path,
                        max(length, 0) // 1024, limit // 1024)
            return HttpResponse(status=413)
        return view(request, *args, **kwargs)

    return wrapped


def bounded_int(value: str, *, maximum: int) -> tuple[int | None, str]:
    """A webhook's numeric parameter as an int within 0..maximum, or None with why not (blank: no value)."""
    value = value.strip()
    if not value:
        return None, ""
    # isascii first: str.isdigit accepts other scripts' digits (and superscripts int() refuses).
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None, f"ignored malformed number {value[:24]!r}"
    number = int(value)
    if number > maximum:
        return None, f"ignored out-of-range number {number} (over {maximum})"
    return number, ""


def _verified_account(request: HttpRequest, attempt: CallAttempt | None) -> TelephonyAccount | None:
    """The account whose token signed this request, or None."""
    url = settings.PUBLIC_URL + request.get_full_path()
    signature = request.headers.get("X-Twilio-Signature", "")
    params = request.POST.dict()
    if attempt is not None:
        candidates = [attempt.call.campaign.telephony_account]
    else:  # an event for a call we do not know: accept it only if one of our accounts signed it
        candidates = list(TelephonyAccount.objects.filter(kind=TelephonyAccount.Kind.TWILIO))
    for account in candidates:
        if account.kind != TelephonyAccount.Kind.TWILIO:
            continue  # these URLs are Twilio's: another provider's account cannot vouch for them
        try:
            if get_provider(account).verify_webhook(url, params, signature):
                return account
        except CredentialsError:
            continue
    return None


def _receive(
    request: HttpRequest, attempt_id: int, kind: str
) -> tuple[CallAttempt | None, ProviderEvent | None, HttpResponse | None]:
    attempt = (
        CallAttempt.objects.select_related("call__campaign__telephony_account").filter(pk=attempt_id).first()
    )
    account = _verified_account(request, attempt)
    if account is None:
        log.warning(
            "rejected %s webhook for attempt %s from %s: missing or invalid X-Twilio-Signature",
            kind,
            attempt_id,
            request.META.get("REMOTE_ADDR"),
        )
        return None, None, HttpResponseForbidden()  # the reason is in the log, not for the client
    sid = request.POST.get("CallSid", "")
    event = ProviderEvent.objects.create(
        account=account,
        attempt=attempt,
        kind=kind,
        provider_call_id=sid[:64],
        payload=request.POST.dict(),
        signature_valid=True,
    )
    if attempt is None:
        event.note = "unknown attempt"
    elif attempt.provider_call_id and sid and attempt.provider_call_id != sid:
        event.note = f"CallSid does not match the attempt's call {attempt.provider_call_id}"
        attempt = None
    if event.note:
        event.save(update_fields=["note"])
        log.warning("%s webhook %s not applied: %s", kind, event.pk, event.note)
    return attempt, event, None


@csrf_exempt
@require_POST
@limit_body
def twilio_status(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt, event, refused = _receive(request, attempt_id, ProviderEvent.Kind.STATUS)
    if refused:
        return refused
    if attempt is not None and event is not None:
        if not attempt.provider_call_id and event.provider_call_id:
            # The create response was lost (ambiguous failure) but the call exists: adopt its id.
            CallAttempt.objects.filter(pk=attempt.pk, provider_call_id__isnull=True).update(
                provider_call_id=event.provider_call_id
            )
        status = request.POST.get("CallStatus", "")
        duration, problem = bounded_int(request.POST.get("CallDuration", ""), maximum=MAX_DURATION_SECONDS)
        if problem:
            event.note = f"CallDuration: {problem}"[:255]
            event.save(update_fields=["note"])
            log.warning("status webhook %s: CallDuration %s", event.pk, problem)
        # A SipResponseCode saying the number does not exist makes it an invalid number (twilio.status_error).
        error_code, error_message = twilio.status_error(status, request.POST)
        try:
            applied = outcomes.apply_status(
                attempt.pk,
                status,
                answered_by=request.POST.get("AnsweredBy", ""),
                duration=duration,
                error_code=error_code,
                error_message=error_message,
            )
        except ValueError as exc:
            event.note = str(exc)[:255]
            event.save(update_fields=["note"])
            log.warning("status webhook %s: %s", event.pk, exc)
        else:
            if applied:
                event.applied = True
                event.save(update_fields=["applied"])
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
@limit_body
def twilio_gather(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt, event, refused = _receive(request, attempt_id, ProviderEvent.Kind.GATHER)
    if refused:
        return refused
    if attempt is not None and event is not None:
        digits = request.POST.get("Digits", "").strip()
        if "node" in request.GET:
            return _flow_gather(attempt, event, request.GET["node"], digits)
        if outcomes.apply_gather(attempt.pk, digits):
            event.applied = True
            event.save(update_fields=["applied"])
        if _waits_for_beep(attempt, digits):
            return HttpResponse(TWIML_WAIT_FOR_BEEP, content_type="text/xml")
    return HttpResponse(TWIML_HANGUP, content_type="text/xml")


def _waits_for_beep(attempt: CallAttempt, digits: str) -> bool:
    """Silence after the message while detection has not reported, on a campaign that leaves voicemails."""
    return (
        not digits
        and not attempt.answered_by  # as loaded before this request: detection has not reported yet
        and attempt.call.campaign.machine_action == Campaign.MachineAction.VOICEMAIL
        and attempt.call.voicemail_audio_id is not None
    )


def _note(event: ProviderEvent, note: str) -> None:
    event.note = note[:255]
    event.save(update_fields=["note"])
    log.warning("webhook %s: %s", event.pk, note)


def _flow_gather(attempt: CallAttempt, event: ProviderEvent, token: str, digits: str) -> HttpResponse:
    """A key (or silence) in a call flow's menu: record it, answer with the next node's TwiML."""
    where = flows.read_node_token(attempt.pk, token)
    if where is None:
        _note(event, "flow node token not signed for this attempt")
        return HttpResponseForbidden()
    run = flows.flow_run(attempt.call)
    if run is None:
        _note(event, "the campaign has no call flow any more")
        return HttpResponse(TWIML_HANGUP, content_type="text/xml")
    menu, prompts = where
    if menu == callflow.ROOT and prompts == 1 and _waits_for_beep(attempt, digits):
        return HttpResponse(TWIML_WAIT_FOR_BEEP, content_type="text/xml")
    try:
        step = outcomes.apply_flow_key(attempt.pk, run.flow, menu, prompts, digits, said=run.said)
    except callflow.FlowError as exc:  # the flow was edited under a running call
        _note(event, f"flow: {exc}")
        return HttpResponse(TWIML_HANGUP, content_type="text/xml")
    if step is None:
        return HttpResponse(TWIML_HANGUP, content_type="text/xml")
    event.applied = True
    event.save(update_fields=["applied"])
    twiml = twilio.flow_twiml(
        attempt.pk,
        [signed_audio_url(run.clips[name]) for name in step.play if name in run.clips],
        flow_token=flows.node_token(attempt.pk, step.gather, step.prompts) if step.gather is not None else "",
        gather=step.gather is not None,
        timeout=run.input_timeout,
        transfer_to=step.transfer_to,
        transfer_action=f"{twilio.webhook_url('telephony:twilio-transfer', attempt.pk)}?"
        f"{urlencode({'node': flows.node_token(attempt.pk, step.node, 0)})}",
    )
    return HttpResponse(twiml, content_type="text/xml")


@csrf_exempt
@require_POST
@limit_body
def twilio_transfer(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """The <Dial> of a transfer ended: connected, or refused (busy, no answer, failed), when the fallback clip
    says the number to call."""
    attempt, event, refused = _receive(request, attempt_id, ProviderEvent.Kind.GATHER)
    if refused:
        return refused
    if attempt is None or event is None:
        return HttpResponse(TWIML_HANGUP, content_type="text/xml")
    where = flows.read_node_token(attempt.pk, request.GET.get("node", ""))
    run = flows.flow_run(attempt.call)
    if where is None or run is None:
        _note(event, "transfer result without a node signed for this attempt")
        return HttpResponseForbidden() if where is None else HttpResponse(TWIML_HANGUP, content_type="text/xml")
    status = request.POST.get("DialCallStatus", "")
    connected = status in ("completed", "answered")
    event.applied = outcomes.transfer_ended(attempt.pk, connected)
    event.note = f"transfer {status or '-'}"
    event.save(update_fields=["applied", "note"])
    if connected:
        return HttpResponse(TWIML_HANGUP, content_type="text/xml")
    step = callflow.transfer_refused(run.flow, where[0])
    urls = [signed_audio_url(run.clips[name]) for name in step.play if name in run.clips]
    return HttpResponse(twilio.flow_twiml(attempt.pk, urls, gather=False), content_type="text/xml")


@csrf_exempt
@require_POST
@limit_body
def twilio_amd(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """Async answering-machine detection: stored as a status event (the note says so), then acted on."""
    attempt, event, refused = _receive(request, attempt_id, ProviderEvent.Kind.STATUS)
    if refused:
        return refused
    if attempt is not None and event is not None:
        answered_by = request.POST.get("AnsweredBy", "")
        try:
            done = actions.answer_machine(attempt.pk, answered_by)
        except ProviderError as exc:
            done = f"failed: {exc}"
            log.warning("AMD webhook %s for attempt %s: %s", event.pk, attempt.pk, exc)
        event.note = f"async AMD {answered_by or '-'}: {done}"[:255]
        event.applied = done != "duplicate"
        event.save(update_fields=["note", "applied"])
    return HttpResponse(status=204)
