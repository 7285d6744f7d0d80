"""A local, deterministic, Twilio-compatible voice sandbox.

Production code keeps using the real ``twilio`` library and is pointed here by
configuration only::

    client = twilio.rest.Client(account_sid, auth_token)
    client.api.base_url = sandbox.url          # e.g. "http://127.0.0.1:8765"
    client.calls.create(to=..., from_=..., url=... or twiml=..., status_callback=...)

so everything the sandbox says and sends is in Twilio's wire format:

* REST: ``/2010-04-01/Accounts/{AccountSid}/Calls.json`` (create, list) and
  ``/Calls/{CallSid}.json`` (fetch, update), HTTP Basic auth, Twilio's JSON
  resource and error shapes.
* Webhooks: status callbacks, TwiML fetches, ``<Gather>`` actions and
  ``<Redirect>`` requests carry Twilio's parameter names and a valid
  ``X-Twilio-Signature`` (computed with ``twilio.request_validator``).
* Answering machines: ``MachineDetection`` (``Enable``: ``machine_start``;
  ``DetectMessageEnd``: ``machine_end_beep`` after the greeting). Synchronous
  by default (the call is answered once detection is done); with
  ``AsyncAmd=true`` the TwiML runs at once and the result is posted, signed, to
  ``AsyncAmdStatusCallback``. A call update (``Status=completed``, ``Twiml``,
  ``Url``) ends or replaces what runs; ``record()["updates"]`` lists them.
* ``<Play>`` URLs are fetched with a plain GET exactly as given; the body must be
  a WAV file, whose duration is "played" (scaled by ``time_scale``).

What the callee does is drawn from ``random.Random(f"{seed}:{to}:{n}")`` where
``n`` counts earlier calls to the same number in this sandbox, so outcomes are
reproducible and independent of thread scheduling.

Inspection: ``TwilioSandbox.calls()`` or ``GET /sandbox/calls.json`` (no auth);
``TwilioSandbox.create_requests()`` lists every create request and the fault it met.

Faults, for tests of the client, all drawn from the seed too:

* ``create_faults`` (kind -> probability per create request) and
  ``create_fault_script`` (To -> the fault of its 1st, 2nd, ... create request,
  ``None`` for none): ``timeout`` (the call is created, the response never
  comes: the connection is held ``create_hang_seconds``, then dropped),
  ``500-after`` (created, then a 500), ``500-before`` (a 500, nothing created),
  ``20429`` (429 Too Many Requests), ``21211`` (invalid To), ``13224`` (a number
  Twilio will not call), and refusals of the account rather than the call:
  ``20003`` (401 Authenticate), ``20005`` (401 Account not active), ``21210`` (caller id not verified), ``21212``
  (invalid From), ``21215`` (the account's geographic permissions do not
  allow the number's country). The client cannot tell ``500-after`` from
  ``500-before``: that is the point.
* Outcome ``invalid_number``: the call fails with ``SipResponseCode`` 404
  (and ErrorCode 13224). Every final status callback carries a
  ``SipResponseCode`` (200 answered, 486 busy, 487 no answer or canceled,
  503 a carrier failure). ``amd_script`` makes detection report any
  AnsweredBy (``fax``, ``unknown``, ``machine_end_silence``, ...).
* ``duplicate_callbacks``: probability that a status callback (or a
  ``<Gather>`` action) is delivered twice.
* ``reorder_callbacks``: probability that a status callback other than the
  final one is held back and delivered after the next one that is not.

Faults are drawn from their own random streams, so the callees behave the same
with or without them.

Only loopback hosts are contacted unless more are allowed with ``allow_hosts``.

Modules: ``server`` (``TwilioSandbox``: settings, lifecycle, inspection),
``routing`` (HTTP in), ``rest`` (the REST resources and create faults),
``simulation`` (the call state machine), ``callee`` (what callees do),
``twiml`` (TwiML and audio), ``webhooks`` (signed requests out, callback
faults), ``call`` (per-call state), ``store`` (shared state), ``clock``
(simulated time), ``errors``, ``wav`` and ``cli``.
"""

from sandbox.twilio.cli import main
from sandbox.twilio.rest import CREATE_FAULTS
from sandbox.twilio.server import TwilioSandbox
from sandbox.twilio.wav import WavError, wav_info

__all__ = ["CREATE_FAULTS", "TwilioSandbox", "WavError", "main", "wav_info"]
