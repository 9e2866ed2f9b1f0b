"""A real Slack incoming-webhook stand-in: an HTTP server on 127.0.0.1 recording POST bodies."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class SlackReceiver:
    """Records every JSON body POSTed to it; answers `status` (200 "ok" like Slack by default)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.messages: list[dict[str, Any]] = []
        self.requests = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    receiver.requests += 1
                    if receiver.status == 200:
                        receiver.messages.append(json.loads(raw))
                    receiver._changed.notify_all()
                payload = b"ok" if receiver.status == 200 else b"server_error"
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output to what the code under test logs

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/services/T000/B000/XXXX"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> SlackReceiver:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` messages arrived; return them all."""
        end = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < count and time.monotonic() < end:
                self._changed.wait(end - time.monotonic())
            return list(self.messages)

    def __enter__(self) -> SlackReceiver:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
