"""Local stand-ins for external services, used by tests and local end-to-end runs.

``sandbox.twilio`` is a Twilio-compatible REST + webhook simulator: production
code talks to it through the real ``twilio`` library by pointing
``client.api.base_url`` at it.
"""
