"""One simulated call: its state, its Twilio resource and inspection record; reading the create form."""

from __future__ import annotations

import random
import re
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

API_VERSION = "2010-04-01"
CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc2822(dt: datetime | None) -> str | None:
    return format_datetime(dt) if dt is not None else None


def first(form: dict, key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def parse_events(form: dict) -> set[str]:
    events: set[str] = set()
    for value in form.get("StatusCallbackEvent", []):
        events.update(e.lower() for e in re.split(r"[\s,]+", value) if e)
    return events or {"completed"}


def parse_timeout(form: dict) -> int:
    raw = first(form, "Timeout")
    if not raw:
        return 60
    return max(5, min(600, int(raw)))  # Twilio clamps to 5..600


class Call:
    """Mutable per-call state. Guarded by the sandbox lock."""

    def __init__(self, *, sid, account_sid, token, to, from_, n, form, plan, rng, delivery_rng, fault):
        self.sid: str = sid
        self.account_sid: str = account_sid
        self.token: str = token
        self.to: str = to
        self.from_: str = from_
        self.n: int = n
        self.plan: dict = plan
        self.rng: random.Random = rng
        self.delivery_rng: random.Random = delivery_rng  # duplicates and reordering, apart from the callee
        self.create_fault: str | None = fault
        self.held: list[dict] = []  # status callbacks held back, to be delivered out of order

        self.url: str | None = first(form, "Url") or None
        self.method: str = (first(form, "Method") or "POST").upper()
        self.fallback_url: str | None = first(form, "FallbackUrl") or None
        self.fallback_method: str = (first(form, "FallbackMethod") or "POST").upper()
        self.twiml: str | None = first(form, "Twiml") or None
        self.status_callback: str | None = first(form, "StatusCallback") or None
        self.status_callback_method: str = (first(form, "StatusCallbackMethod") or "POST").upper()
        self.events: set[str] = parse_events(form)
        self.machine_detection: str | None = first(form, "MachineDetection") or None
        self.async_amd: bool = (first(form, "AsyncAmd") or "").lower() == "true"
        self.amd_callback: str | None = first(form, "AsyncAmdStatusCallback") or None
        self.amd_callback_method: str = (first(form, "AsyncAmdStatusCallbackMethod") or "POST").upper()
        self.timeout: int = parse_timeout(form)

        now = utc_now()
        self.status = "queued"
        self.date_created = now
        self.date_updated = now
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.duration: int | None = None
        self.answered_by: str | None = None
        self.error_code: int | None = None
        self.error_message: str | None = None
        self.sip_response: int | None = None  # the final SIP response (SipResponseCode), once the call ended

        # control from the REST API
        self.interrupt = threading.Event()
        self.api_hangup: str | None = None  # "canceled" or "completed"
        self.api_redirect: tuple | None = None  # ("url", url, method) or ("twiml", xml)
        self.finished = False
        self.ended = threading.Event()  # the simulation is over: async detection stops waiting
        self.amd_thread: threading.Thread | None = None
        self.done = threading.Event()

        # what happened
        self.seq = 0
        self.sim_seconds = 0.0
        self.answered = False
        self.digits: str | None = None
        self.gathers: list[str] = []
        self.transfers: list[dict] = []  # <Dial>: {to, kind (Number/Sip), status}
        self.audio_started = 0
        self.audio_interrupted = False
        self.hung_up_early = False
        self.audio: list[dict] = []
        self.audio_status: Any = None
        self.callbacks: list[tuple] = []
        self.amd_callbacks: list[tuple] = []  # (url, params, HTTP status or error)
        self.updates: list[dict] = []  # REST updates of this call, as received
        self.requests: list[dict] = []
        self.notes: list[str] = []

    @property
    def human(self) -> bool:
        return self.plan["outcome"] == "answered"

    def base_params(self) -> dict:
        return {
            "CallSid": self.sid,
            "AccountSid": self.account_sid,
            "From": self.from_,
            "To": self.to,
            "Called": self.to,
            "Caller": self.from_,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
        }

    def answered_by_param(self) -> dict:
        return {"AnsweredBy": self.answered_by} if self.answered_by else {}

    def resource(self) -> dict:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "direction": "outbound-api",
            "duration": str(self.duration) if self.duration is not None else None,
            "end_time": rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {
                name: f"{base}/{path}.json"
                for name, path in (
                    ("feedback", "Feedback"),
                    ("user_defined_messages", "UserDefinedMessages"),
                    ("notifications", "Notifications"),
                    ("recordings", "Recordings"),
                    ("streams", "Streams"),
                    ("payments", "Payments"),
                    ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
                    ("siprec", "Siprec"),
                    ("events", "Events"),
                    ("feedback_summaries", "FeedbackSummary"),
                    ("transcriptions", "Transcriptions"),
                )
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": f"{base}.json",
        }

    def record(self) -> dict:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "n": self.n,
            "status_callback": self.status_callback,
            "create_fault": self.create_fault,
            "date_created": self.date_created.isoformat(),
            "outcome": self.plan["outcome"],
            "status": self.status,
            "done": self.done.is_set(),
            "machine_detection": self.machine_detection,
            "async_amd": self.async_amd,
            "amd_callbacks": [(u, dict(p), s) for u, p, s in self.amd_callbacks],
            "updates": [dict(u) for u in self.updates],
            "answered_by": self.answered_by,
            "digits": self.digits,
            "gathers": list(self.gathers),
            "transfers": [dict(t) for t in self.transfers],
            "listened_to_end": bool(
                self.audio_started
                and not self.hung_up_early
                and not self.audio_interrupted
                and self.error_code is None
            ),
            "hung_up_early": self.hung_up_early,
            "audio_fetched": bool(self.audio) and all(a["ok"] for a in self.audio),
            "audio_status": self.audio_status,
            "audio": [dict(a) for a in self.audio],
            "duration": self.duration if self.duration is not None else 0,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "sip_response_code": self.sip_response,
            "callbacks": [(u, dict(p), s) for u, p, s in self.callbacks],
            "requests": [dict(r) for r in self.requests],
            "notes": list(self.notes),
        }
