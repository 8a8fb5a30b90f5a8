"""What IDLE watchers announce, recorded for tests to wait on."""

from __future__ import annotations

import threading
import time


class Events:
    """What an IdleWatcher announced, with the time, for waiting on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float]] = []
        self._cond = threading.Condition()

    def __call__(self, folder: str, event: str) -> None:
        with self._cond:
            self.seen.append((folder, event, time.monotonic()))
            self._cond.notify_all()

    def count(self, event: str) -> int:
        with self._cond:
            return sum(1 for _, e, _ in self.seen if e == event)

    def wait_for(self, event: str, count: int = 1, timeout: float = 5.0) -> float:
        """Until ``event`` was announced ``count`` times; return when the last one was."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.count(event) >= count, timeout):
                raise TimeoutError(f"{event!r} announced {self.count(event)} of {count} times")
            return [t for _, e, t in self.seen if e == event][count - 1]
