"""A local stand-in for a Slack incoming webhook that records what it is sent (demo, tests)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SlackReceiver:
    """A real HTTP server on 127.0.0.1 answering like Slack's webhook (`ok`), or failing on purpose."""

    def __init__(self, status: int = 200) -> None:
        self.messages: list[dict[str, Any]] = []
        self.status = status
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.status == 200:
                    with receiver._lock:
                        receiver.messages.append(json.loads(body or b"{}"))
                        receiver._lock.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status == 200 else b"error")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/services/T000/B000/XXXX"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> SlackReceiver:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` messages arrived; return them all."""
        end = time.monotonic() + timeout
        with self._lock:
            while len(self.messages) < count and time.monotonic() < end:
                self._lock.wait(max(0.0, end - time.monotonic()))
            return list(self.messages)

    def texts(self) -> list[str]:
        """The `text` of every message received."""
        return [str(m.get("text", "")) for m in self.messages]

    def __enter__(self) -> SlackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
