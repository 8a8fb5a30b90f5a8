"""The daemon's one clock, injected everywhere time matters.

Two readings, because they answer different questions: ``time()`` is wall time (what the
state file stores, what limits, max_age, quiet hours and the log mean), ``monotonic()``
measures intervals that must not jump when the host's clock is set (backoff, the late-arrival
check, the watchdog). Tests pass a clock they move by hand, so no test waits for time to pass.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """The system clock. Subclass it (or pass any object with these methods) to control time.

    Calling the clock is ``time()``, so a ``Clock`` is also a plain ``Callable[[], float]``
    for the store, the tracker and the sender.
    """

    def __call__(self) -> float:
        return self.time()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def utc(self) -> datetime:
        """Wall time as an aware UTC datetime, for the pure core's ``now`` arguments."""
        return datetime.fromtimestamp(self.time(), UTC)


SYSTEM_CLOCK = Clock()
