"""The systemd watchdog, fed by progress rather than by a timer that always fires.

A thread that pings ``WATCHDOG=1`` on a timer proves only that the timer thread lives:
offlineimap's users met the opposite failure (``WatchdogSec=`` documented, never a
ping, killed every few minutes). Here the ping is earned. Every loop that must not stop
— the round loop, each IDLE thread — is *watched* under a name with a bound, and beats
when it makes progress. ``Progress.verdict(now)`` is healthy while every watched loop
beat within its bound (and, when given, its thread is alive); ``WatchdogPinger`` pings
at half the watchdog interval only while it is. A deadlocked round or a dead IDLE
thread therefore stops the pings, and systemd restarts forwarder.

A server that is down is not a hang: a loop that backs off beats too, before each wait,
saying how long the wait will be (``beat(name, within=delay + slack)``), and the round
loop finishes its (short) rounds while IMAP backs off. Only a loop that stopped moving
loses the watchdog.

``Progress`` is pure state behind a lock, with the clock passed in or injected, so the
decision is tested without threads; the pinger is the only thread here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from forwarder.ops.systemd import Notifier

logger = logging.getLogger(__name__)

__all__ = ["Progress", "Verdict", "Watch", "WatchdogPinger", "round_bound"]

#: The round loop is stalled when no round finished for this long at least (seconds).
MIN_ROUND_BOUND = 900.0


def round_bound(poll_interval: float, timeout: float) -> float:
    """How long the round loop may go without finishing a round before it counts as hung.

    A round runs at least every ``poll_interval`` and each of its network calls is
    bounded by ``timeout`` (the larger of imap.timeout and smtp.timeout), but a round
    may make many calls (a storm of mail, retried sends): two intervals plus twenty
    timeouts, and never under 15 minutes, keeps a slow but healthy round from being
    killed, while a real hang is still found within the hour. With the defaults
    (60 s, 30 s): 15 minutes.
    """
    return max(MIN_ROUND_BOUND, 2 * poll_interval + 20 * timeout)


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str | None = None  # why not, in words for the log


@dataclass
class _Watched:
    bound: float  # by default the next beat is due this long after the last one
    last: float  # when it last beat
    due: float  # when the next beat is due at the latest
    alive: Callable[[], bool] | None
    generation: int


class Watch:
    """The handle ``Progress.watch`` returns: beats and forgets only its own watch, so a
    thread of a previous generation (stopped at a reload, ending late) cannot beat for,
    or forget, the new thread watched under the same name."""

    def __init__(self, progress: Progress, name: str, generation: int) -> None:
        self.progress = progress
        self.name = name
        self.generation = generation

    def beat(self, within: float | None = None) -> None:
        self.progress._beat(self.name, within, self.generation)

    def forget(self) -> None:
        self.progress._forget(self.name, self.generation)


class Progress:
    """What the watchdog ping depends on: a heartbeat per watched loop. Thread-safe.

    * ``watch(name, bound=, alive=)`` — start watching a loop (counts as a beat); returns
      a ``Watch`` whose ``beat()``/``forget()`` the loop calls;
    * ``beat(name, within=)`` — the loop moved; the next beat is due within ``within``
      seconds if given and longer than the bound (a backoff wait), else within the bound;
      a beat for a name not watched (a thread already forgotten) is ignored;
    * ``forget(name)`` — the loop ended on purpose (stop, reload, IDLE unsupported);
    * ``verdict(now)`` — healthy, or why not: a watched loop is late, or its ``alive()``
      says its thread is gone;
    * ``ping_due(now, every)`` / ``pinged(now)`` — whether a ping is both allowed and
      due, given the cadence (``WatchdogPinger`` keeps its own cadence and asks
      ``verdict`` only).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._generation = 0
        self._last_ping: float | None = None

    def watch(self, name: str, *, bound: float, alive: Callable[[], bool] | None = None) -> Watch:
        now = self.clock()
        with self._lock:
            self._generation += 1
            self._watched[name] = _Watched(
                bound=bound, last=now, due=now + bound, alive=alive, generation=self._generation
            )
            return Watch(self, name, self._generation)

    def beat(self, name: str, *, within: float | None = None) -> None:
        self._beat(name, within, None)

    def forget(self, name: str) -> None:
        self._forget(name, None)

    def _beat(self, name: str, within: float | None, generation: int | None) -> None:
        now = self.clock()
        with self._lock:
            watched = self._watched.get(name)
            if watched is None or generation not in (None, watched.generation):
                return
            watched.last = now
            watched.due = now + max(watched.bound, within or 0.0)

    def _forget(self, name: str, generation: int | None) -> None:
        with self._lock:
            watched = self._watched.get(name)
            if watched is not None and generation in (None, watched.generation):
                del self._watched[name]

    def watching(self) -> list[str]:
        with self._lock:
            return sorted(self._watched)

    def verdict(self, now: float | None = None) -> Verdict:
        now = self.clock() if now is None else now
        with self._lock:
            watched = list(self._watched.items())
        for name, w in sorted(watched, key=lambda item: item[0]):
            if w.alive is not None and not _alive(w.alive):
                return Verdict(False, f"{name} has died")
            if now > w.due:
                return Verdict(
                    False,
                    f"{name} has shown no progress for {now - w.last:.0f} s "
                    f"(expected within {w.due - w.last:.0f} s)",
                )
        return Verdict(True)

    def ping_due(self, now: float, every: float) -> bool:
        """Healthy, and at least ``every`` seconds since the last ping (or none yet)."""
        with self._lock:
            last = self._last_ping
        if last is not None and now - last < every:
            return False
        return self.verdict(now).healthy

    def pinged(self, now: float) -> None:
        with self._lock:
            self._last_ping = now


def _alive(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # a broken check must not look like health
        logger.exception("watchdog: a liveness check failed")
        return False


class WatchdogPinger:
    """A thread that sends ``WATCHDOG=1`` every ``interval / 2`` while ``progress`` is healthy.

    ``interval`` is ``systemd.watchdog_interval()`` (None: the watchdog is off, and
    ``start()`` does nothing). When progress stops it says so once at ERROR, with the
    reason, and stays silent to systemd; if progress comes back before systemd acts, it
    says so and pings again. ``checks``/``pings`` count, and ``wait_checks(n)`` waits
    for them, so a test can tell "no ping was due" from "no ping was sent yet".
    """

    def __init__(
        self,
        notifier: Notifier,
        progress: Progress,
        interval: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.progress = progress
        self.interval = interval
        self.every = interval / 2 if interval else None
        self.clock = clock
        self.checks = 0
        self.pings = 0
        self.withholding: str | None = None  # the reason pings stopped, while they are
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_checks(self, count: int, timeout: float) -> bool:
        """Until ``count`` checks have run in all (for tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.checks >= count, timeout)

    def check(self) -> bool:
        """One look: ping if healthy; returns whether a ping was sent."""
        assert self.every is not None
        verdict = self.progress.verdict()  # on the progress's own clock
        sent = False
        if verdict.healthy:
            if self.withholding is not None:
                logger.warning("watchdog: progress again; pinging systemd again")
                self.withholding = None
            sent = self.notifier.watchdog()
            self.progress.pinged(self.progress.clock())
        elif self.withholding is None:
            self.withholding = verdict.reason
            logger.error(
                "watchdog: %s; no more WATCHDOG=1, so systemd restarts forwarder within %.0f s",
                verdict.reason,
                self.interval,
            )
        with self._cond:
            self.checks += 1
            self.pings += int(sent)
            self._cond.notify_all()
        return sent

    def _run(self) -> None:
        assert self.every is not None
        next_at = self.clock()
        while True:
            try:
                self.check()
            except Exception:  # never let a bug end the pinger silently: systemd would act
                logger.exception("watchdog: check failed")
            # Scheduled on absolute times, so the gaps do not drift past half the interval;
            # after a long gap (the host slept) one check at once, then the cadence again.
            next_at = max(next_at + self.every, self.clock())
            if self._stop.wait(next_at - self.clock()):
                return
