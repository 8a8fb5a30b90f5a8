"""A dead man's switch in the healthchecks.io style: ``health: {ping_url: ...}``.

After each successful round forwarder GETs the ping URL (at most once a minute); when a
round fails it POSTs the reason to ``<url>/fail``. The service alerts its owner when
the pings stop or a failure arrives — also when what failed is the SMTP side, which
forwarder cannot text about — and when forwarder is dead, which nothing inside it can.

Never blocks a round: ``round_ok()``/``round_failed()`` only decide and leave the ping
in a one-place slot (a newer ping replaces one not sent yet: only the latest state
matters); a thread of its own sends it, each request bounded by ``timeout``. A failed
ping is logged once (not every minute) and never retried: the next round brings a new
one. The URL is a credential of sorts (whoever knows it can ping), so logs show its
host only and the log scrubber masks it whole.

Rate: an ``ok`` at most every ``every`` seconds, but at once after a failure (the
recovery is news); a ``fail`` at once when it is news (after an ok, or another reason),
else at most every ``every`` seconds while the same failure goes on.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from forwarder import __version__

logger = logging.getLogger(__name__)

__all__ = ["HealthPinger", "Ping", "fail_url", "where"]

EVERY = 60.0  # seconds between two pings of the same kind, at most one
TIMEOUT = 10.0
MAX_REASON = 10_000  # bytes of the reason sent (healthchecks.io keeps up to 100 kB)


def fail_url(url: str) -> str:
    """``url`` with ``/fail`` appended to its path (a query string stays after it)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def where(url: str) -> str:
    """The part of the URL that may be logged: scheme and host."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


@dataclass(frozen=True)
class Ping:
    ok: bool
    reason: str | None = None


class HealthPinger:
    """Decides when to ping, and sends the pings from a thread of its own.

    ``start()``/``stop()`` the thread; ``round_ok()`` and ``round_failed(reason)`` from
    the round, after each round. ``sent``/``failed`` count requests, and
    ``wait_sent(n, timeout)`` waits for the n-th, for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        every: float = EVERY,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the ping URL must be http:// or https:// with a host")
        self.url = url
        self.every = every
        self.timeout = timeout
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self._cond = threading.Condition()
        self._pending: Ping | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Decision state (the round's thread only).
        self._last_ok: float | None = None
        self._last_fail: float | None = None
        self._failing: str | None = None  # the reason last reported, while failing
        self._broken = False  # the ping itself fails (said once)

    # -- from the round -----------------------------------------------------------------------
    def round_ok(self) -> None:
        now = self.clock()
        if self._failing is None and self._last_ok is not None and now - self._last_ok < self.every:
            return
        self._failing = None
        self._last_ok = now
        self._put(Ping(True))

    def round_failed(self, reason: str) -> None:
        now = self.clock()
        reason = " ".join(reason.split()) or "round failed"
        if (
            self._failing == reason
            and self._last_fail is not None
            and now - self._last_fail < self.every
        ):
            return
        self._failing = reason
        self._last_fail = now
        self._put(Ping(False, reason))

    def _put(self, ping: Ping) -> None:
        with self._cond:
            self._pending = ping
            self._cond.notify_all()

    # -- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="health ping", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """End the thread; a ping in flight finishes (bounded by ``timeout``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.timeout + 1 if timeout is None else timeout)
            self._thread = None

    def wait_sent(self, count: int, timeout: float) -> bool:
        """Until ``count`` requests were made in all (answered or failed)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.sent + self.failed >= count, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    return
                ping, self._pending = self._pending, None
            assert ping is not None
            ok = self._send(ping)
            with self._cond:
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                self._cond.notify_all()

    def _send(self, ping: Ping) -> bool:
        if ping.ok:
            request = urllib.request.Request(self.url, method="GET")
        else:
            body = (ping.reason or "").encode("utf-8")[:MAX_REASON]
            request = urllib.request.Request(
                fail_url(self.url),
                data=body,
                method="POST",
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        request.add_header("User-Agent", f"forwarder/{__version__}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            return self._failed(f"HTTP {exc.code}")
        except urllib.error.URLError as exc:
            return self._failed(str(exc.reason))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return self._failed(f"{exc.__class__.__name__}: {exc}")
        if self._broken:
            logger.info("health ping to %s works again", where(self.url))
            self._broken = False
        logger.debug("health ping to %s: %s", where(self.url), "ok" if ping.ok else "fail")
        return True

    def _failed(self, why: str) -> bool:
        # The reason texts come from urllib and never hold the URL's path; said once.
        logger.log(
            logging.DEBUG if self._broken else logging.WARNING,
            "health ping to %s failed: %s (the next round tries again)",
            where(self.url),
            why,
        )
        self._broken = True
        return False
