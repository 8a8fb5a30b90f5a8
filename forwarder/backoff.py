"""How long to wait before the next try at a server that failed, and what to say about it.

Two policies, chosen by what the failure needs (``mailbox.PermanentError`` or not):

* ``RECONNECT``: the network or the server had a moment (restart, dropped
  connection, DNS, timeout). Retry soon: 1 s, 2 s, 4 s … capped at 60 s.
* ``NEEDS_PERSON``: retrying soon will not help (wrong password, refused
  certificate, missing folder). Retry slowly: 1 min, 2 min … capped at 30 min,
  so a fixed password is noticed without SIGHUP, and say so once.

Delays grow exponentially with "equal jitter" (half fixed, half random: AWS
Architecture Blog, "Exponential Backoff and Jitter"), so several threads that
lost the same server do not come back in step, and none retries at once. The
outbox uses the same ``Policy`` for SMTP retries between rounds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    """Exponential steps (``first``, doubling, capped at ``cap``) with equal jitter.

    Why not a tenacity ``Retrying`` loop here: these retries happen across
    scheduler rounds and threads (and, for the outbox, across restarts, through
    ``not_before`` in the state file), not inside one call; tenacity drives the
    retries that do happen inside one call (``sender.Sender.send``).
    """

    name: str
    first: float  # seconds: the wait after the first failure is between first/2 and first
    cap: float  # no wait is longer than this

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...)."""
        exponent = min(max(failures, 1) - 1, 32)
        step = min(self.cap, self.first * 2.0**exponent)
        return step / 2 + rand() * step / 2


RECONNECT = Policy("reconnect", first=1.0, cap=60.0)
NEEDS_PERSON = Policy("needs a person", first=60.0, cap=1800.0)


class Backoff:
    """Failures in a row and when to try again; one per connection that retries on its own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.policy: Policy | None = None
        self.retry_at = 0.0
        self.last_error: str | None = None

    def failed(self, error: str, *, permanent: bool) -> tuple[float, bool]:
        """Record a failure; return (seconds to wait, is this news worth reporting?).

        News is a failure after success, or a different error than the last one:
        the same wrong password every half hour is said once.
        """
        policy = NEEDS_PERSON if permanent else RECONNECT
        if policy is not self.policy:
            self.failures = 0
        self.policy = policy
        self.failures += 1
        delay = policy.delay(self.failures)
        self.retry_at = self.clock() + delay
        news = error != self.last_error
        self.last_error = error
        return delay, news

    def succeeded(self) -> int:
        """Forget the failures; return how many there were (0: nothing to report)."""
        failures, self.failures = self.failures, 0
        self.policy, self.retry_at, self.last_error = None, 0.0, None
        return failures

    def due(self) -> bool:
        return self.clock() >= self.retry_at

    def remaining(self) -> float:
        return max(0.0, self.retry_at - self.clock())

    def retry_now(self) -> None:
        """The server is known to be back (another connection got in): stop waiting."""
        self.retry_at = 0.0
