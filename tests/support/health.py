"""A healthchecks.io stand-in on a local HTTP server, for the health-ping tests."""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass

UUID = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    body: bytes
    content_type: str | None


class PingService:
    """A healthchecks.io stand-in: records every request; ``hold`` makes it hang."""

    def __init__(self, status: int = 200) -> None:
        self.hits: list[Hit] = []
        self.status = status
        self.hold = threading.Event()  # set: requests wait for ``release``
        self.release = threading.Event()
        self.entered = threading.Event()  # a request has reached the handler
        self._cond = threading.Condition()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service.entered.set()
                if service.hold.is_set():
                    service.release.wait(10)
                with service._cond:
                    service.hits.append(
                        Hit(self.command, self.path, body, self.headers.get("Content-Type"))
                    )
                    service._cond.notify_all()
                self.send_response(service.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _record

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/{UUID}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Hit]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.hits) >= count, timeout), self.hits
            return list(self.hits)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
