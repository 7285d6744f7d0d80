"""The call state machine: queued, dialling, ringing, answered (machine detection), the TwiML, the end."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

import requests

from sandbox.twilio.call import Call, utc_now
from sandbox.twilio.callee import FAILURES, detected
from sandbox.twilio.errors import (
    ERROR_MESSAGES,
    HTTP_RETRIEVAL_FAILURE,
    INVALID_NUMBER,
    ApiHangup,
    AppError,
    CalleeHangup,
    Stop,
    TwimlHangup,
)
from sandbox.twilio.webhooks import HTTP_TIMEOUT

if TYPE_CHECKING:
    from sandbox.twilio.server import TwilioSandbox

log = logging.getLogger("sandbox.twilio")  # one logger for the whole sandbox

DIAL_SECONDS = 0.5  # simulated, before time_scale is applied
# The final SIP response a call reports (SipResponseCode) when nothing more specific ended it.
SIP_RESPONSES = {"completed": 200, "busy": 486, "no-answer": 487, "canceled": 487, "failed": 503}


class Simulator:
    """Plays one call from queued to its final status, on its own thread."""

    def __init__(self, sandbox: TwilioSandbox) -> None:
        self.sandbox = sandbox  # queue_delay and time_scale are read from it
        self.store = sandbox.store
        self.clock = sandbox.clock
        self.webhooks = sandbox.webhooks
        self.twiml = sandbox.twiml

    def thread(self, call: Call) -> threading.Thread:
        """The (not yet started) thread that simulates ``call``."""
        return threading.Thread(target=self.run, args=(call,), name=f"twilio-sandbox-{call.sid}", daemon=True)

    def run(self, call: Call) -> None:
        """Simulate the call to its end, whatever ends it, then mark it done."""
        session = requests.Session()
        session.trust_env = False  # never route loopback webhooks through a proxy
        try:
            # How the call ended, then one final callback: the sandbox may stop during that callback too.
            error: tuple | None = None
            try:
                self._simulate(call, session)
                status = "completed"
            except ApiHangup:
                status = call.api_hangup or "completed"
            except (CalleeHangup, TwimlHangup):
                status = "completed"
            except AppError as exc:
                status, error = "failed", (exc.code, exc.message)
                with self.store.lock:
                    call.sip_response = exc.sip_response
            except Stop:
                raise
            except Exception as exc:  # a sandbox bug: still end the call visibly
                log.exception("simulation of %s crashed", call.sid)
                with self.store.lock:
                    call.notes.append(f"sandbox internal error: {exc!r}")
                status, error = "failed", (HTTP_RETRIEVAL_FAILURE, f"sandbox internal error: {exc}")
            self._finish(call, session, status, error=error)
        except Stop:
            pass
        finally:
            try:
                # Callbacks are only left held when the final event was not subscribed to.
                self.webhooks.flush_held(call, session)
            except Stop:
                pass
            session.close()
            with self.store.lock:
                call.finished = True
            call.ended.set()
            if call.amd_thread is not None:  # a result being posted now is part of the call
                call.amd_thread.join(2 * HTTP_TIMEOUT)
            call.done.set()

    def _simulate(self, call: Call, session: requests.Session) -> None:
        plan = call.plan
        deadline = time.monotonic() + self.sandbox.queue_delay
        while (remaining := deadline - time.monotonic()) > 0:
            self.clock.check(call)
            call.interrupt.wait(remaining)
        with self.store.lock:
            if call.api_hangup:
                raise ApiHangup()
            call.start_time = utc_now()  # Twilio: set once dialling begins, empty while queued
        self.webhooks.status_callback(call, session, "initiated", "initiated")
        self.clock.sleep(call, DIAL_SECONDS, count=False)
        if plan["outcome"] == "invalid-number":
            raise AppError(*INVALID_NUMBER, sip_response=404)
        if plan["outcome"] == "failed":
            status, code, sip = FAILURES[plan.get("failure", "carrier-error")]
            if status == "failed":
                raise AppError(code, ERROR_MESSAGES[code], sip_response=sip)
            if status == "no-answer":  # it rang out, or the network said at once that nobody can answer
                self._set_status(call, "ringing")
                self.webhooks.status_callback(call, session, "ringing", "ringing")
                self.clock.sleep(call, min(plan["ring"], call.timeout), count=False)
            else:
                self.clock.sleep(call, plan["busy"], count=False)
            self._finish(call, session, status, sip_response=sip)
            return
        if plan["outcome"] == "busy":
            self.clock.sleep(call, plan["busy"], count=False)
            self._finish(call, session, "busy")
            return
        self._set_status(call, "ringing")
        self.webhooks.status_callback(call, session, "ringing", "ringing")
        if plan["outcome"] == "no-answer":
            self.clock.sleep(call, call.timeout, count=False)
            self._finish(call, session, "no-answer")
            return
        self.clock.sleep(call, min(plan["ring"], call.timeout - 1), count=False)

        # answered
        answered_by = None
        if call.machine_detection and call.async_amd:
            # Answered at once; detection runs beside the TwiML and reports to its own callback.
            call.amd_thread = threading.Thread(
                target=self._run_async_amd, args=(call,), name=f"twilio-sandbox-amd-{call.sid}", daemon=True
            )
            call.amd_thread.start()
        elif call.machine_detection:
            self.clock.sleep(call, plan["amd"])  # detection time is billed
            answered_by, after_greeting = detected(plan, call.human, call.machine_detection)
            if after_greeting:
                self.clock.sleep(call, plan["greeting"])
            answered_by = self.sandbox.amd_script.get(call.to, answered_by)
        with self.store.lock:
            if call.api_hangup:
                raise ApiHangup()
            call.status = "in-progress"
            call.answered = True
            call.date_updated = utc_now()
            call.answered_by = answered_by
        self.webhooks.status_callback(call, session, "answered", "in-progress", call.answered_by_param())

        self.twiml.run(call, session)

    def _run_async_amd(self, call: Call) -> None:
        """Wait out detection (and a machine's greeting, with DetectMessageEnd), then post the result."""
        seconds = call.plan["amd"]
        answered_by, after_greeting = detected(call.plan, call.human, call.machine_detection)
        if after_greeting:
            seconds += call.plan["greeting"]
        answered_by = self.sandbox.amd_script.get(call.to, answered_by)
        deadline = time.monotonic() + seconds * self.sandbox.time_scale
        while (remaining := deadline - time.monotonic()) > 0:
            if self.store.stopping.is_set() or call.ended.wait(min(remaining, 0.05)):
                return
        with self.store.lock:
            if call.finished or call.status != "in-progress":
                return  # hung up before detection decided: Twilio reports nothing
            call.answered_by = answered_by
        if not call.amd_callback:
            return
        params = call.base_params()
        params.update(
            {
                "CallStatus": "in-progress",
                "AnsweredBy": answered_by,
                "MachineDetectionDuration": str(int(seconds * 1000)),
            }
        )
        self.webhooks.amd_result(call, params)

    def _set_status(self, call: Call, status: str) -> None:
        with self.store.lock:
            if call.api_hangup:
                raise ApiHangup()
            call.status = status
            call.date_updated = utc_now()

    def _finish(
        self, call: Call, session, status: str, error: tuple | None = None, sip_response: int | None = None
    ) -> None:
        """Set the final status once and post the final ("completed" event) callback."""
        with self.store.lock:
            if call.finished:
                return
            call.finished = True
            if call.api_hangup:  # the REST API's word wins
                status = call.api_hangup
                error = None
            now = utc_now()
            call.status = status
            call.end_time = call.end_time or now
            call.date_updated = now
            if call.answered:
                call.duration = max(1, math.ceil(call.sim_seconds - 1e-9))
            else:
                call.duration = 0
            if error:
                call.error_code, call.error_message = error
            if sip_response is not None and not call.api_hangup:
                call.sip_response = sip_response
            elif call.sip_response is None or error is None:  # nothing more specific than what the status implies
                call.sip_response = 200 if call.answered else SIP_RESPONSES.get(status, 487)
            duration, sip_response = call.duration, call.sip_response
        extra = {
            "CallDuration": str(duration), "Duration": str(math.ceil(duration / 60)), "SipResponseCode": str(sip_response)
        }
        extra.update(call.answered_by_param())
        if error:
            extra.update({"ErrorCode": str(error[0]), "ErrorMessage": error[1]})
        log.info("call %s finished: %s (%ss)", call.sid, status, duration)
        self.webhooks.status_callback(call, session, "completed", status, extra)
