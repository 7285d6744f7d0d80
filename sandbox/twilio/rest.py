"""The REST resources: Calls (create, list, fetch, update) and the Account, with Twilio's validation and
errors, and the create faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from sandbox.twilio.call import (
    API_VERSION,
    CALLBACK_EVENTS,
    Call,
    first,
    parse_events,
    parse_timeout,
    rfc2822,
    utc_now,
)
from sandbox.twilio.callee import draw_plan

if TYPE_CHECKING:
    from sandbox.twilio.server import TwilioSandbox

log = logging.getLogger("sandbox.twilio")  # one logger for the whole sandbox

E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
CREATE_FAULTS = (
    "timeout", "500-after", "500-before", "20429", "21211", "13224",
    # refusals of the account, not the call: credentials, caller id not verified, invalid From, geo permissions
    "20003", "20005", "21210", "21212", "21215",
)
GEO_PERMISSIONS_URL = "https://www.twilio.com/console/voice/calls/geo-permissions/low-risk"


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Withheld(Exception):
    """The response to this request never comes (a simulated timeout)."""


def error_body(status: int, code: int, message: str) -> dict:
    """Twilio's JSON error resource."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def account_resource(sid: str, token: str) -> dict:
    """Twilio's JSON Account resource."""
    now = rfc2822(utc_now())
    base = f"/{API_VERSION}/Accounts/{sid}"
    return {
        "auth_token": token,
        "date_created": now,
        "date_updated": now,
        "friendly_name": f"Sandbox account {sid}",
        "owner_account_sid": sid,
        "sid": sid,
        "status": "active",
        "subresource_uris": {"calls": f"{base}/Calls.json"},
        "type": "Full",
        "uri": f"{base}.json",
    }


def numbers_page(sid: str, numbers: list[str], uri: str) -> dict:
    """Twilio's list of an account's IncomingPhoneNumbers, all on one page."""
    now = rfc2822(utc_now())
    resources = [
        {
            "account_sid": sid,
            "capabilities": {"voice": True, "sms": False, "mms": False, "fax": False},
            "date_created": now,
            "date_updated": now,
            "friendly_name": number,
            "phone_number": number,
            "sid": "PN" + hashlib.sha256(f"{sid}:{number}".encode()).hexdigest()[:32],
            "status": "in-use",
            "uri": f"/{API_VERSION}/Accounts/{sid}/IncomingPhoneNumbers/{number}.json",
        }
        for number in numbers
    ]
    return {
        "incoming_phone_numbers": resources,
        "end": max(len(resources) - 1, 0),
        "first_page_uri": f"{uri}?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": f"{uri}?PageSize=50&Page=0",
    }


class RestApi:
    """What the REST API does; each method returns a JSON resource or raises ApiError (or Withheld)."""

    def __init__(self, sandbox: TwilioSandbox) -> None:
        self.sandbox = sandbox  # accounts, seed, callee weights and create faults are read from it
        self.store = sandbox.store
        self.clock = sandbox.clock
        self.simulator = sandbox.simulator

    def authenticate(self, header: str | None, account_sid: str | None) -> str:
        """Return the auth user's AccountSid or raise a 401 ApiError."""
        error = ApiError(401, 20003, "Authenticate")
        if not header or not header.startswith("Basic "):
            raise error
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise error from None
        token = self.sandbox.accounts.get(user)
        if token is None or not hmac.compare_digest(token.encode(), password.encode()):
            raise error
        if account_sid is not None and account_sid != user:
            raise error
        return user

    def create_call(self, account_sid: str, form: dict) -> dict:
        """Create a call and start its simulation, unless a create fault says otherwise."""
        sandbox, store = self.sandbox, self.store
        to, from_ = _validate_create(form)
        with store.lock:
            if store.stopping.is_set():
                raise ApiError(503, 20500, "Sandbox is shutting down")
            k = store.create_counts.get(to, 0)
            store.create_counts[to] = k + 1
            fault = self._draw_fault(to, k)
            request = {"to": to, "k": k, "fault": fault, "sid": None}
            store.create_requests.append(request)
        if fault is not None:
            log.info("create request %d to %s meets fault %s", k, to, fault)
        self.clock.pause(sandbox.create_latency / 2)
        if fault == "20429":
            raise ApiError(429, 20429, "Too Many Requests")
        if fault == "21211":
            raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if fault == "13224":
            raise ApiError(400, 13224, f"The phone number you are attempting to call, {to}, is not valid.")
        # Refusals of the account rather than the call, as Twilio words them: nothing is created.
        if fault == "20003":
            raise ApiError(401, 20003, "Authenticate")
        if fault == "20005":
            raise ApiError(401, 20005, "Account not active")
        if fault == "21210":
            raise ApiError(
                400, 21210, f"The source phone number provided, {from_}, is not yet verified for your account. "
                "You may only make calls from phone numbers that you've verified or purchased from Twilio."
            )
        if fault == "21212":
            raise ApiError(400, 21212, f"The phone number you are attempting to call from, {from_}, is not valid.")
        if fault == "21215":
            raise ApiError(
                400, 21215, f"Account not authorized to call {to}. Perhaps you need to enable some international "
                f"permissions: {GEO_PERMISSIONS_URL}"
            )
        if fault == "500-before":
            raise ApiError(500, 20500, "Internal Server Error")
        with store.lock:
            if store.stopping.is_set():
                raise ApiError(503, 20500, "Sandbox is shutting down")
            n = store.per_number.get(to, 0)
            store.per_number[to] = n + 1
            rng = random.Random(f"{sandbox.seed}:{to}:{n}")
            plan = draw_plan(rng, sandbox.weights, sandbox.hangup_early, machine_answers=sandbox.machine_answers,
                             amd_unknown=sandbox.amd_unknown, failures=sandbox.failures)
            sid = "CA" + secrets.token_hex(16)
            call = Call(
                sid=sid,
                account_sid=account_sid,
                token=sandbox.accounts[account_sid],
                to=to,
                from_=from_,
                n=n,
                form=form,
                plan=plan,
                rng=rng,
                delivery_rng=random.Random(f"{sandbox.seed}:{to}:{n}:delivery"),
                fault=fault,
            )
            store.calls[sid] = call
            request["sid"] = sid
            worker = self.simulator.thread(call)
            store.add_worker(worker)
            resource = call.resource()
        log.info("call %s to %s: n=%d outcome=%s", sid, to, n, plan["outcome"])
        worker.start()
        self.clock.pause(sandbox.create_latency / 2)
        if fault == "timeout":
            raise Withheld()
        if fault == "500-after":
            raise ApiError(500, 20500, "Internal Server Error")
        return resource

    def _draw_fault(self, to: str, k: int) -> str | None:
        script = self.sandbox.create_fault_script.get(to, [])
        if k < len(script):
            return script[k]
        u = random.Random(f"{self.sandbox.seed}:create:{to}:{k}").random()
        acc = 0.0
        for kind, p in self.sandbox.create_faults.items():
            acc += p
            if u < acc:
                return kind
        return None

    def _get_call(self, account_sid: str, call_sid: str, path: str) -> Call:
        call = self.store.calls.get(call_sid)
        if call is None or call.account_sid != account_sid:
            raise ApiError(404, 20404, f"The requested resource {path} was not found")
        return call

    def fetch_call(self, account_sid: str, call_sid: str, path: str) -> dict:
        with self.store.lock:
            return self._get_call(account_sid, call_sid, path).resource()

    def list_calls(self, account_sid: str, query: dict, path: str) -> dict:
        """Twilio's filters: To, From, Status, and StartTime / EndTime by UTC date, with ``<`` and ``>``
        for "on or before / on or after midnight of" (a time of day after the date is ignored, as Twilio
        documents dates). Calls not yet started have no StartTime and match no StartTime filter."""
        filters: list[tuple[str, str]] = []  # as given, for the page URIs
        equal: list[tuple[str, str]] = []  # (call attribute, value)
        dated: list[tuple[str, str, datetime]] = []  # (call attribute, "" or "<" or ">", midnight)
        for key, attr in (("To", "to"), ("From", "from_"), ("Status", "status")):
            if value := first(query, key):
                filters.append((key, value))
                equal.append((attr, value))
        for key, attr in (("StartTime", "start_time"), ("EndTime", "end_time")):
            for op in ("", "<", ">"):
                if value := first(query, key + op):
                    filters.append((key + op, value))
                    dated.append((attr, op, _midnight(value, key + op)))
        try:
            size = max(1, min(1000, int(first(query, "PageSize") or 50)))
            page = max(0, int(first(query, "Page") or 0))
        except ValueError:
            raise ApiError(400, 20001, "PageSize and Page must be integers") from None
        with self.store.lock:
            calls = [
                c
                for c in self.store.calls.values()
                if c.account_sid == account_sid
                and all(getattr(c, attr) == value for attr, value in equal)
                and all(_time_matches(getattr(c, attr), op, midnight) for attr, op, midnight in dated)
            ]
            calls.reverse()  # Twilio lists newest first
            items = [c.resource() for c in calls[page * size : (page + 1) * size]]
            more = len(calls) > (page + 1) * size

        def page_uri(n: int) -> str:
            return f"{path}?{urlencode([*filters, ('PageSize', size), ('Page', n)])}"

        return {
            "calls": items,
            "end": page * size + max(0, len(items) - 1),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if more else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": page * size,
            "uri": page_uri(page),
        }

    def update_call(self, account_sid: str, call_sid: str, form: dict, path: str) -> dict:
        """End the call (Status) or replace its TwiML (Url, Twiml), as far as its state allows."""
        status = (first(form, "Status") or "").lower()
        url = first(form, "Url")
        twiml = first(form, "Twiml")
        if status and status not in ("canceled", "completed"):
            raise ApiError(400, 21218, f"Invalid Status: {status}. Must be canceled or completed")
        if url and not _valid_http_url(url):
            raise ApiError(400, 21205, f"Url is not a valid URL: {url}")
        with self.store.lock:
            call = self._get_call(account_sid, call_sid, path)
            call.updates.append(
                {k: v for k, v in (("status", status), ("url", url), ("twiml", twiml)) if v}
                | {"call_status": call.status}
            )
            if call.finished or call.api_hangup:
                return call.resource()
            now = utc_now()
            if status:
                if call.status in ("queued", "ringing"):
                    call.api_hangup = "canceled"
                elif status == "completed" and call.status == "in-progress":
                    call.api_hangup = "completed"
                # Status=canceled on an in-progress call has no effect (as on Twilio)
                if call.api_hangup:
                    call.status = call.api_hangup
                    call.end_time = now
                    call.date_updated = now
                    call.interrupt.set()
            elif url or twiml:
                method = (first(form, "Method") or "POST").upper()
                if call.status == "in-progress":
                    call.api_redirect = ("twiml", twiml) if twiml else ("url", url, method)
                    call.interrupt.set()
                else:  # not answered yet: just replace what will run on answer
                    call.twiml, call.url, call.method = (
                        (twiml, None, call.method) if twiml else (None, url, method)
                    )
                call.date_updated = now
            return call.resource()


def _validate_create(form: dict) -> tuple[str, str]:
    """Check a create request as Twilio does; return its To and From."""
    to = (first(form, "To") or "").strip()
    from_ = (first(form, "From") or "").strip()
    if not to:
        raise ApiError(400, 21201, "No 'To' number is specified")
    if not E164_RE.match(to):
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not from_:
        raise ApiError(400, 21213, "No 'From' number is specified")
    if not E164_RE.match(from_):
        raise ApiError(400, 21212, f"Invalid 'From' Phone Number: {from_}")
    url = first(form, "Url")
    twiml = first(form, "Twiml")
    if not url and not twiml:
        raise ApiError(400, 21205, "Url parameter is required (or Twiml)")
    for key in ("Url", "FallbackUrl", "StatusCallback", "AsyncAmdStatusCallback"):
        value = first(form, key)
        if value and not _valid_http_url(value):
            raise ApiError(400, 21205, f"{key} is not a valid URL: {value}")
    for key in ("Method", "FallbackMethod", "StatusCallbackMethod", "AsyncAmdStatusCallbackMethod"):
        value = first(form, key)
        if value and value.upper() not in ("GET", "POST"):
            raise ApiError(400, 21203 if key == "Method" else 21204, f"{key} must be GET or POST")
    unknown = parse_events(form) - set(CALLBACK_EVENTS)
    if unknown:
        raise ApiError(400, 21626, f"Invalid StatusCallbackEvent: {', '.join(sorted(unknown))}")
    md = first(form, "MachineDetection")
    if md and md not in ("Enable", "DetectMessageEnd"):
        raise ApiError(400, 21219, f"MachineDetection must be Enable or DetectMessageEnd, not {md}")
    try:
        parse_timeout(form)
    except ValueError:
        raise ApiError(400, 21216, f"Timeout must be an integer: {first(form, 'Timeout')}") from None
    return to, from_


def _valid_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _midnight(value: str, name: str) -> datetime:
    try:
        return datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(400, 20001, f"Invalid {name}: {value} (expected YYYY-MM-DD)") from None


def _time_matches(when: datetime | None, op: str, midnight: datetime) -> bool:
    if when is None:
        return False
    if op == "<":
        return when <= midnight
    if op == ">":
        return when >= midnight
    return midnight <= when < midnight + timedelta(days=1)
