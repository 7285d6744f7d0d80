"""The README's result webhook receiver, run as written, served on 127.0.0.1 in a thread for tests; it can
answer 500 first, redirect, or go down (its port closed) and come back on the same port."""

from __future__ import annotations

import re
import threading
from http.server import HTTPServer
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_receiver(secret: str, monkeypatch) -> dict[str, Any]:
    """The README's receiver code, run as written, up to the line that would serve it on port 8080."""
    block = re.search(r"```python\n(import hashlib, hmac.*?)```", README.read_text(), re.S)
    assert block, "the README's receiver is missing"
    code = "".join(line for line in block.group(1).splitlines(True) if not line.startswith("HTTPServer("))
    monkeypatch.setenv("HERALD_WEBHOOK_SECRET", secret)
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(compile(code, "README.md receiver", "exec"), namespace)  # noqa: S102  (our own README, under test)
    return namespace


class LocalReceiver:
    """The README receiver on 127.0.0.1: answers 500 to the first `fail_first` posts, or redirects; stop()
    closes its port, start() opens the same port again."""

    def __init__(self, monkeypatch, *, fail_first: int = 0, redirect_to: str = "") -> None:
        self.code = readme_receiver("not yet", monkeypatch)
        self.fail_first, self.redirect_to = fail_first, redirect_to
        self.posts: list[dict[str, Any]] = []  # every post seen: headers, body, what was answered
        self.port = 0
        self.server: HTTPServer | None = None
        outer = self

        class Handler(self.code["Receiver"]):  # type: ignore[misc,name-defined]
            def do_POST(self) -> None:
                headers = dict(self.headers)
                if outer.fail_first or outer.redirect_to:
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    if outer.redirect_to:
                        outer.posts.append({"headers": headers, "answer": 302})
                        self.send_response(302)
                        self.send_header("Location", outer.redirect_to)
                        self.end_headers()
                        return
                    outer.fail_first -= 1
                    outer.posts.append({"headers": headers, "answer": 500})
                    self.send_error(500, "not today")
                    return
                super().do_POST()
                outer.posts.append({"headers": headers, "answer": self.answered})

            def send_response(self, code: int, message: str | None = None) -> None:
                self.answered = code
                super().send_response(code, message)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.handler = Handler

    def use(self, secret: str) -> None:
        """Verify with this secret (the endpoint's, known once it exists: it needs the receiver's URL)."""
        self.code["SECRET"] = secret.encode()

    @property
    def seen(self) -> set[str]:
        return self.code["seen"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/herald/webhooks?shop=1"

    def start(self) -> LocalReceiver:
        self.server = HTTPServer(("127.0.0.1", self.port), self.handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None
