"""Requests the sandbox sends as Twilio does: signed with the account's token, to allowed hosts only;
status and AMD callbacks, with the duplicate and reorder delivery faults."""

from __future__ import annotations

import ipaddress
import logging
import random
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from twilio.request_validator import RequestValidator

from sandbox.twilio.call import Call, rfc2822, utc_now
from sandbox.twilio.errors import Stop

if TYPE_CHECKING:
    from sandbox.twilio.server import TwilioSandbox

log = logging.getLogger("sandbox.twilio")  # one logger for the whole sandbox

HTTP_TIMEOUT = 10.0  # seconds, every outgoing request
MAX_HTTP_REDIRECTS = 5


class Webhooks:
    """Outgoing HTTP: TwiML and audio fetches, ``<Gather>`` actions, status and AMD callbacks."""

    def __init__(self, sandbox: TwilioSandbox) -> None:
        self.sandbox = sandbox  # allowed hosts, seed and fault probabilities are read from it
        self.store = sandbox.store
        self.clock = sandbox.clock

    def host_allowed(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        if host in self.sandbox.allow_hosts or host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def request(self, call, session, kind, method, url, params, *, stream=False):
        """Signed request like Twilio's; follows redirects on allowed hosts.

        Returns (response | None, final_url, error string | None) and records it.
        """
        params = dict(params or {})
        validator = RequestValidator(call.token)
        if method == "GET" and params:
            url = url + ("&" if "?" in url else "?") + urlencode(params)
            params = {}
        response = None
        error = None
        for _ in range(MAX_HTTP_REDIRECTS + 1):
            self.clock.check(call)
            if not self.host_allowed(url):
                error = f"refused non-loopback host in {url}"
                break
            headers = {
                "X-Twilio-Signature": validator.compute_signature(url, params),
                "User-Agent": "TwilioProxy/1.1",
                "Accept": "*/*",
            }
            try:
                if method == "GET":
                    response = session.get(
                        url, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False, stream=stream
                    )
                else:
                    response = session.post(
                        url,
                        data=params,
                        headers=headers,
                        timeout=HTTP_TIMEOUT,
                        allow_redirects=False,
                        stream=stream,
                    )
            except requests.RequestException as exc:
                response, error = None, f"{type(exc).__name__}: {exc}"
                break
            if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                if response.status_code in (301, 302, 303):
                    method, params = "GET", {}
                response.close()
                response = None
                error = "too many HTTP redirects"
                continue
            error = None
            break
        status = response.status_code if response is not None else error
        with self.store.lock:
            call.requests.append(
                {"kind": kind, "method": method, "url": url, "params": params, "status": status}
            )
        log.debug("%s %s %s %s -> %s", call.sid, kind, method, url, status)
        return response, url, error

    def delivered_twice(self, call: Call) -> bool:
        """Draw whether a ``<Gather>`` action is delivered twice (the ``duplicate_callbacks`` fault)."""
        return call.delivery_rng.random() < self.sandbox.duplicate_callbacks

    def status_callback(
        self, call: Call, session, event: str, call_status: str, extra: dict | None = None
    ) -> None:
        if event not in call.events or not call.status_callback:
            return
        with self.store.lock:
            seq = call.seq
            call.seq += 1
        params = call.base_params()
        params.update(
            {
                "CallStatus": call_status,
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(seq),
                "Timestamp": rfc2822(utc_now()),
            }
        )
        params.update(extra or {})
        duplicate = call.delivery_rng.random() < self.sandbox.duplicate_callbacks
        hold = call.delivery_rng.random() < self.sandbox.reorder_callbacks and event != "completed"
        deliveries = [params, params] if duplicate else [params]
        if hold:
            with self.store.lock:
                call.held.extend(deliveries)
            return
        for delivery in deliveries:
            self._post_callback(call, session, delivery)
        self.flush_held(call, session)

    def flush_held(self, call: Call, session) -> None:
        """Deliver the callbacks held back, late: after one that was produced after them."""
        while True:
            with self.store.lock:
                if not call.held:
                    return
                params = call.held.pop(0)
            self._post_callback(call, session, params)

    def amd_result(self, call: Call, params: dict) -> None:
        """Post an asynchronous machine-detection result to the call's AsyncAmdStatusCallback."""
        # Its own stream: the detection thread must not race the call's thread for draws.
        draw = random.Random(f"{self.sandbox.seed}:{call.to}:{call.n}:amd").random()
        duplicate = draw < self.sandbox.duplicate_callbacks
        with requests.Session() as session:
            session.trust_env = False
            for _ in range(2 if duplicate else 1):
                self._post_amd_callback(call, session, params)

    def _post_amd_callback(self, call: Call, session: requests.Session, params: dict) -> None:
        if self.store.stopping.is_set():
            return
        status = self._send_signed(session, call.token, call.amd_callback, call.amd_callback_method, params)
        with self.store.lock:
            call.amd_callbacks.append((call.amd_callback, dict(params), status))
        log.debug("%s AMD callback %s -> %s", call.sid, params["AnsweredBy"], status)

    def _send_signed(self, session: requests.Session, token: str, url: str, method: str, params: dict) -> Any:
        """Send a callback as Twilio does (signed with the account's token); the HTTP status or the error."""
        signed_params = params
        if method == "GET":
            url, signed_params = url + ("&" if "?" in url else "?") + urlencode(params), {}
        if not self.host_allowed(url):
            return f"refused non-loopback host in {url}"
        headers = {
            "X-Twilio-Signature": RequestValidator(token).compute_signature(url, signed_params),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            if method == "GET":
                response = session.get(url, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False)
            else:
                response = session.post(
                    url, data=params, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False
                )
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"
        status = response.status_code
        response.close()
        return status

    def _post_callback(self, call: Call, session, params: dict) -> None:
        if self.store.stopping.is_set():
            raise Stop()
        status = self._send_signed(
            session, call.token, call.status_callback, call.status_callback_method, params
        )
        with self.store.lock:
            call.callbacks.append((call.status_callback, params, status))
        log.debug(
            "%s callback %s #%s -> %s", call.sid, params["CallStatus"], params["SequenceNumber"], status
        )
