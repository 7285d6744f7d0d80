"""HTTP in: the request handler that routes the REST API's paths and the sandbox's own inspection paths."""

from __future__ import annotations

import json
import logging
import re
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sandbox.twilio.call import API_VERSION
from sandbox.twilio.rest import ApiError, Withheld, account_resource, error_body, numbers_page

if TYPE_CHECKING:
    from sandbox.twilio.server import TwilioSandbox

log = logging.getLogger("sandbox.twilio")  # one logger for the whole sandbox

MAX_REQUEST_BODY = 1024 * 1024  # largest REST request body accepted

_CALLS_RE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls\.json$")
_CALL_RE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/]+)\.json$")
_ACCOUNT_RE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)\.json$")
_NUMBERS_RE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/IncomingPhoneNumbers\.json$")


class Handler(BaseHTTPRequestHandler):
    """One connection to the sandbox: REST requests (Twilio's paths and errors) and inspection requests."""

    sandbox: TwilioSandbox  # bound by TwilioSandbox.start()
    server_version = "TwilioSandbox/1.0"
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are dropped after this
    wbufsize = -1  # buffer headers + body into one write (flushed per request)
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _send_json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_form(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            raise ApiError(413, 20001, "Request body too large")
        raw = self.rfile.read(length) if length > 0 else b""
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True)

    def _dispatch(self, method: str) -> None:
        sb = self.sandbox
        rest = sb.rest
        parts = urlsplit(self.path)
        path = parts.path
        try:
            form = self._read_form() if method in ("POST", "PUT") else {}
            if path in ("/sandbox/calls.json", "/sandbox/calls") and method == "GET":
                self._send_json(200, sb.calls())
                return
            if path == "/sandbox/health" and method == "GET":
                self._send_json(200, {"ok": True})
                return
            auth = self.headers.get("Authorization")
            if m := _CALLS_RE.match(path):
                rest.authenticate(auth, m["account"])
                if method == "POST":
                    self._send_json(201, rest.create_call(m["account"], form))
                elif method == "GET":
                    self._send_json(200, rest.list_calls(m["account"], parse_qs(parts.query), path))
                else:
                    raise ApiError(405, 20004, "Method not allowed")
            elif m := _CALL_RE.match(path):
                rest.authenticate(auth, m["account"])
                if method == "GET":
                    self._send_json(200, rest.fetch_call(m["account"], m["call"], path))
                elif method == "POST":
                    self._send_json(200, rest.update_call(m["account"], m["call"], form, path))
                else:
                    raise ApiError(405, 20004, "Method not allowed")
            elif m := _NUMBERS_RE.match(path):
                rest.authenticate(auth, m["account"])
                if method != "GET":
                    raise ApiError(405, 20004, "Method not allowed")
                self._send_json(200, numbers_page(m["account"], sb.numbers.get(m["account"], []), path))
            elif m := _ACCOUNT_RE.match(path):
                rest.authenticate(auth, m["account"])
                if method != "GET":
                    raise ApiError(405, 20004, "Method not allowed")
                self._send_json(200, account_resource(m["account"], sb.accounts[m["account"]]))
            else:
                if path.startswith(f"/{API_VERSION}/"):
                    rest.authenticate(auth, None)
                raise ApiError(404, 20404, f"The requested resource {path} was not found")
        except Withheld:
            # The call exists, the client never hears so: hold the connection, then drop it unanswered.
            sb.clock.pause(sb.create_hang_seconds)
            self.close_connection = True
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
            if exc.status == 413:
                self.close_connection = True
            self._send_json(exc.status, error_body(exc.status, exc.code, exc.message), headers)
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_json(400, error_body(400, 20001, f"Bad request: {exc}"))
