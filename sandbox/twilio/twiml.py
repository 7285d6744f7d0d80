"""TwiML interpretation: fetching documents, running their verbs, fetching and timing ``<Play>`` audio."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import requests

from sandbox.twilio.call import Call
from sandbox.twilio.callee import draw_digit
from sandbox.twilio.errors import (
    DOCUMENT_PARSE_FAILURE,
    HTTP_RETRIEVAL_FAILURE,
    INVALID_CONTENT_TYPE,
    ApiHangup,
    ApiRedirect,
    AppError,
    CalleeHangup,
    Stop,
    TwimlHangup,
)
from sandbox.twilio.wav import WavError, wav_info

if TYPE_CHECKING:
    from sandbox.twilio.server import TwilioSandbox

MAX_BODY = 64 * 1024 * 1024  # largest audio body read
MAX_DOCUMENTS = 20  # TwiML documents (redirects + actions) per call
SAY_SECONDS_PER_WORD = 0.4
LOOP_ZERO = 10  # loop="0" means "forever" on Twilio; the sandbox plays it this many times
TRANSFER_TALK_SECONDS = (10.0, 60.0)  # simulated talk with the person a <Dial> reached


class TwimlRunner:
    """Runs an answered call's TwiML: Play, Say, Pause, Gather, Redirect, Hangup and Reject."""

    def __init__(self, sandbox: TwilioSandbox) -> None:
        self.sandbox = sandbox  # digits and duplicate_callbacks are read from it
        self.store = sandbox.store
        self.clock = sandbox.clock
        self.webhooks = sandbox.webhooks

    def run(self, call: Call, session: requests.Session) -> None:
        """Run the call's TwiML, inline or fetched from its Url, until the documents run out."""
        if call.twiml:
            twiml = call.twiml
            self._execute(call, session, lambda: (parse_twiml(twiml.encode("utf-8")), None))
        else:
            self._execute(call, session, lambda: self._fetch_initial(call, session))

    def _execute(self, call: Call, session: requests.Session, load) -> None:
        """Run TwiML documents: ``load()`` returns (root, document URL or None);
        each document may hand over to the next (Redirect, Gather action), and
        the REST API may replace the running one."""
        documents = 0
        while load is not None:
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise AppError(
                    DOCUMENT_PARSE_FAILURE, f"more than {MAX_DOCUMENTS} TwiML documents (redirect loop?)"
                )
            try:
                root, doc_url = load()
                nxt = self._run_document(call, session, root, doc_url)
                load = (lambda doc=nxt: doc) if nxt is not None else None
            except ApiRedirect:
                with self.store.lock:
                    redirect, call.api_redirect = call.api_redirect, None
                    call.interrupt.clear()
                    call.notes.append("TwiML replaced through the REST API")
                if redirect[0] == "twiml":
                    load = lambda xml=redirect[1]: (parse_twiml(xml.encode("utf-8")), None)  # noqa: E731
                else:
                    load = lambda r=redirect: self._fetch_twiml(  # noqa: E731
                        call, session, "api-redirect", r[1], r[2], twiml_params(call)
                    )

    def _run_document(self, call, session, root, doc_url) -> tuple | None:
        for verb in list(root):
            self.clock.check(call)
            name = verb.tag
            if name in ("Play", "Say", "Pause"):
                self._prompt(call, session, verb, doc_url)
            elif name == "Gather":
                nxt = self._gather(call, session, verb, doc_url)
                if nxt is not None:
                    return nxt
            elif name == "Dial":
                nxt = self._dial(call, session, verb, doc_url)
                if nxt is not None:
                    return nxt
            elif name in ("Hangup", "Reject"):
                raise TwimlHangup()
            elif name == "Redirect":
                target = (verb.text or "").strip()
                if not target:
                    raise AppError(DOCUMENT_PARSE_FAILURE, "<Redirect> without a URL")
                target = _resolve(doc_url, target)
                method = (verb.get("method") or "POST").upper()
                return self._fetch_twiml(call, session, "redirect", target, method, twiml_params(call))
            else:
                with self.store.lock:
                    call.notes.append(f"unsupported verb <{name}> skipped")
        return None

    def _prompt(self, call, session, verb, doc_url) -> None:
        name = verb.tag
        if name == "Pause":
            self.clock.sleep(call, _float_attr(verb, "length", 1.0))
            return
        loops = _int_attr(verb, "loop", 1)
        loops = LOOP_ZERO if loops == 0 else max(1, loops)
        if name == "Play":
            target = (verb.text or "").strip()
            if not target:
                raise AppError(DOCUMENT_PARSE_FAILURE, "<Play> without a URL")
            target = _resolve(doc_url, target)
            seconds = self._fetch_audio(call, session, target)
        else:  # Say
            words = len((verb.text or "").split())
            seconds = max(1.0, words * SAY_SECONDS_PER_WORD)
        first = call.audio_started == 0
        with self.store.lock:
            call.audio_started += 1
        try:
            if first and call.human and call.plan["hangup_early"]:
                self.clock.sleep(call, seconds / 2)
                with self.store.lock:
                    call.hung_up_early = True
                    call.notes.append(f"callee hung up halfway through the first <{name}>")
                raise CalleeHangup()
            self.clock.sleep(call, seconds * loops)
        except (ApiHangup, Stop):
            with self.store.lock:
                call.audio_interrupted = True
            raise

    def _gather(self, call, session, verb, doc_url) -> tuple | None:
        for child in list(verb):
            self.clock.check(call)
            if child.tag in ("Play", "Say", "Pause"):
                self._prompt(call, session, child, doc_url)
            else:
                with self.store.lock:
                    call.notes.append(f"unsupported <Gather> child <{child.tag}> skipped")
        timeout = _float_attr(verb, "timeout", 5.0)
        num_digits = _int_attr(verb, "numDigits", 0)
        finish_on_key = verb.get("finishOnKey", "#")
        wants_dtmf = "dtmf" in (verb.get("input") or "dtmf").lower()
        if call.gathers and self.sandbox.menu_hangup and call.rng.random() < self.sandbox.menu_hangup and call.human:
            # A later menu (the flow's slot menu, a menu offered again): the callee hangs up instead of answering.
            self.clock.sleep(call, _float_attr(verb, "timeout", 5.0) / 2)
            with self.store.lock:
                call.notes.append("callee hung up in a menu")
            raise CalleeHangup()
        key, delay = draw_digit(call.rng, self.sandbox.digits)  # drawn for every gather, used for humans only
        if not (call.human and wants_dtmf):
            key = None
        digits, finished_on_key = "", ""
        if key is None:
            wait = timeout
        elif finish_on_key and key == finish_on_key:
            finished_on_key, wait = key, delay
        else:
            digits = key
            wait = delay if num_digits == 1 else delay + timeout
        self.clock.sleep(call, wait)
        with self.store.lock:
            call.gathers.append(digits)
            if digits and call.digits is None:
                call.digits = digits
        if not digits and (verb.get("actionOnEmptyResult") or "").lower() != "true":
            return None
        action = verb.get("action")
        if action:
            action = _resolve(doc_url, action)
        else:
            action = doc_url  # Twilio posts to the current document's URL
        if not action:
            with self.store.lock:
                call.notes.append("<Gather> without action in inline TwiML: continuing")
            return None
        params = twiml_params(call, status="in-progress")
        params.update({"Digits": digits, "FinishedOnKey": finished_on_key, "msg": "Gather End"})
        method = (verb.get("method") or "POST").upper()
        if self.webhooks.delivered_twice(call):
            # Delivered twice; the TwiML of the second delivery is the one that runs.
            response, _, _ = self.webhooks.request(call, session, "gather-action", method, action, params)
            if response is not None:
                response.close()
        return self._fetch_twiml(call, session, "gather-action", action, method, params)

    def _dial(self, call, session, verb, doc_url) -> tuple | None:
        """Connect the callee to a <Number> or <Sip> (a transfer to a person): the far end answers with the
        sandbox's transfer_answer probability and talks a while, or rings out; then the action, if any."""
        targets = [(child.tag, (child.text or "").strip()) for child in verb if child.tag in ("Number", "Sip")]
        if not targets and (verb.text or "").strip():
            targets = [("Number", (verb.text or "").strip())]
        if not targets:
            raise AppError(DOCUMENT_PARSE_FAILURE, "<Dial> without a number or SIP address")
        answered = call.rng.random() < self.sandbox.transfer_answer
        talk = call.rng.uniform(*TRANSFER_TALK_SECONDS)
        timeout = _float_attr(verb, "timeout", 30.0)
        self.clock.sleep(call, talk if answered else timeout)
        status = "completed" if answered else "no-answer"
        with self.store.lock:
            call.transfers.append({"to": targets[0][1], "kind": targets[0][0], "status": status})
        action = verb.get("action")
        if not action:
            return None
        params = twiml_params(call, status="in-progress")
        params.update({"DialCallStatus": status, "DialCallDuration": str(round(talk)) if answered else "0"})
        method = (verb.get("method") or "POST").upper()
        return self._fetch_twiml(call, session, "dial-action", _resolve(doc_url, action), method, params)

    def _fetch_initial(self, call: Call, session: requests.Session) -> tuple:
        params = twiml_params(call)
        try:
            return self._fetch_twiml(call, session, "twiml", call.url, call.method, params)
        except AppError:
            if not call.fallback_url:
                raise
            params = dict(params, ErrorCode=str(HTTP_RETRIEVAL_FAILURE), ErrorUrl=call.url)
            return self._fetch_twiml(
                call, session, "fallback", call.fallback_url, call.fallback_method, params
            )

    def _fetch_twiml(self, call, session, kind, url, method, params) -> tuple:
        response, final_url, error = self.webhooks.request(call, session, kind, method, url, params)
        if response is None:
            raise AppError(HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: {error}")
        if not 200 <= response.status_code < 300:
            raise AppError(
                HTTP_RETRIEVAL_FAILURE,
                f"HTTP retrieval failure: {method} {url} returned {response.status_code}",
            )
        ctype = response.headers.get("Content-Type", "").lower()
        if ctype and "xml" not in ctype and "html" not in ctype:
            raise AppError(INVALID_CONTENT_TYPE, f"Invalid Content-Type {ctype!r} for TwiML from {url}")
        return parse_twiml(response.content), final_url

    def _fetch_audio(self, call: Call, session: requests.Session, url: str) -> float:
        entry: dict = {"url": url, "status": None, "ok": False, "duration": None, "error": None}
        with self.store.lock:
            call.audio.append(entry)
        response, _, error = self.webhooks.request(call, session, "audio", "GET", url, None, stream=True)
        body = b""
        if response is not None:
            try:
                body = _read_limited(response)
            except (requests.RequestException, OSError, ValueError) as exc:
                response, error = None, f"{type(exc).__name__}: {exc}"
        with self.store.lock:
            if response is None:
                entry["status"] = entry["error"] = call.audio_status = error
            elif response.status_code != 200:
                entry["status"] = call.audio_status = response.status_code
                entry["error"] = f"HTTP {response.status_code}"
            else:
                entry["status"] = 200
                try:
                    info = wav_info(body)
                except WavError as exc:
                    entry["error"] = call.audio_status = f"invalid WAV: {exc}"
                else:
                    entry.update(
                        ok=True,
                        duration=info["duration"],
                        format_tag=info["format_tag"],
                        sample_rate=info["sample_rate"],
                        channels=info["channels"],
                    )
                    call.audio_status = 200
                    return info["duration"]
            message = entry["error"]
        raise AppError(HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: GET {url}: {message}")


def parse_twiml(body: bytes) -> ET.Element:
    """Parse a TwiML document; an AppError (12100) unless it is XML with a <Response> root."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise AppError(DOCUMENT_PARSE_FAILURE, f"Document parse failure: {exc}") from None
    if root.tag != "Response":
        raise AppError(
            DOCUMENT_PARSE_FAILURE,
            f"Document parse failure: root element is <{root.tag}>, not <Response>",
        )
    return root


def twiml_params(call: Call, status: str = "in-progress") -> dict:
    """The parameters of a TwiML request (fetch, redirect, Gather action)."""
    params = call.base_params()
    params["CallStatus"] = status
    params.update(call.answered_by_param())
    return params


def _read_limited(response: requests.Response) -> bytes:
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY:
                raise ValueError(f"body larger than {MAX_BODY} bytes")
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


def _resolve(base: str | None, target: str) -> str:
    """Relative URLs resolve against the current document; absolute ones are
    used exactly as given (they may be signed)."""
    if base and not urlsplit(target).scheme:
        return urljoin(base, target)
    return target


def _int_attr(el: ET.Element, name: str, default: int) -> int:
    try:
        return int(el.get(name, default))
    except (TypeError, ValueError):
        return default


def _float_attr(el: ET.Element, name: str, default: float) -> float:
    try:
        return max(0.0, float(el.get(name, default)))
    except (TypeError, ValueError):
        return default
