"""Exceptions that end or divert a simulated call, and the Twilio error codes the sandbox reports."""

from __future__ import annotations

# Error codes used in status callbacks and the call resource.
CARRIER_FAILURE = (31005, "Connection error: the call could not be connected (simulated carrier failure)")
HTTP_RETRIEVAL_FAILURE = 11200
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

    def __init__(self, code: int, message: str):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
