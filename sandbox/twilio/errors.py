"""Exceptions that end or divert a simulated call, and the Twilio error codes the sandbox reports."""

from __future__ import annotations

# Error codes used in status callbacks and the call resource.
CARRIER_FAILURE = (31005, "Connection error: the call could not be connected (simulated carrier failure)")
ERROR_MESSAGES = {
    31005: CARRIER_FAILURE[1],
    13224: "The number you are attempting to call is not valid or cannot be reached (simulated)",
}
# A number the carrier does not know: Twilio reports it with the carrier's final SIP response (SipResponseCode).
INVALID_NUMBER = (13224, "The number you are attempting to call is not valid or cannot be reached (simulated)")
HTTP_RETRIEVAL_FAILURE = 11200
# What answering-machine detection can report (AnsweredBy), as Twilio documents it.
ANSWERED_BY = (
    "human", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax", "unknown",
)
DOCUMENT_PARSE_FAILURE = 12100
INVALID_CONTENT_TYPE = 12300


class Stop(Exception):
    """The sandbox is shutting down: abandon the simulation silently."""


class ApiHangup(Exception):
    """The REST API canceled / completed the call."""


class ApiRedirect(Exception):
    """The REST API replaced the running TwiML."""


class CalleeHangup(Exception):
    """The callee hung up (early hang-up)."""


class TwimlHangup(Exception):
    """A <Hangup/> or <Reject/> verb ended the call."""


class AppError(Exception):
    """An application error (Twilio 11200/12100/12300): the call fails."""

    def __init__(self, code: int, message: str, *, sip_response: int | None = None):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.sip_response = sip_response  # the carrier's final SIP response, when it ended the call
