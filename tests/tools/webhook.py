"""A webhook for tests: an HTTP server on 127.0.0.1 (a free port) in a thread, recording every POST.

It answers with the scripted statuses in order (the last one repeats), or not at all (`hang=True`: the request is
held until the server stops, as a webhook that accepted the connection and never answers). The body of each POST
is recorded before the answer is sent, so once the client saw the answer, the test sees the body: no waiting.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc


@dataclass
class Webhook:
    url: str  # http://127.0.0.1:PORT/hook
    port: int
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.json() for r in self.received]

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


@contextmanager
def webhook(statuses: Sequence[int] = (200,), *, hang: bool = False, path: str = "/hook") -> Iterator[Webhook]:
    hook: Webhook | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            assert hook is not None
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hook.lock:
                hook.received.append(Received(self.path, dict(self.headers), body))
            if hook.hang:
                hook.release.wait()
                return
            status = hook.next_status()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    hook = Webhook(f"http://127.0.0.1:{port}{path}", port, statuses=list(statuses), hang=hang)
    thread = threading.Thread(target=server.serve_forever, name="test webhook", daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections to it are refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
