"""The sd_notify protocol: a few datagrams to ``$NOTIFY_SOCKET`` tell systemd how we are.

sd_notify(3): each message is one datagram of newline-separated ``KEY=value`` lines,
sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket). systemd learns the sender's PID from the socket's credentials, so with
``NotifyAccess=main`` any thread of the main process may send.

Hand-written rather than a library: the protocol is one ``sendto`` (the client is the
class below). The PyPI ``sdnotify`` package (last release 2017) encodes messages as
Latin-1, so a STATUS naming a Cyrillic folder would be dropped, swallows every error
without a word, and does not read ``$WATCHDOG_USEC``/``$WATCHDOG_PID``;
``systemd-python`` needs libsystemd headers and a C compiler to install.

Without ``$NOTIFY_SOCKET`` (a terminal, a test, ``Type=exec``) every call is a no-op,
and no send ever raises: telling systemd is never worth stopping the daemon for.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)

__all__ = ["Notifier", "watchdog_interval"]


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds after which systemd kills a service that sent no ``WATCHDOG=1``; None if off.

    As sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` is the interval in microseconds, and a
    ``$WATCHDOG_PID`` naming another process means the watchdog is not ours (it was
    inherited). Ping at least every half of it.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "").strip()
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000


def _address(value: str) -> str | None:
    """The socket address from ``$NOTIFY_SOCKET``; '@' starts an abstract name."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. vsock: (systemd 253+, virtual machines): not forwarder's case


class Notifier:
    """Sends sd_notify messages; does nothing when not started by systemd with Type=notify.

    Thread-safe (one socket under a lock): the round, the watchdog thread and the
    signal loop all send. ``sent`` counts datagrams that left, for tests.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = _address(raw) if raw else None
        if raw and self.address is None:
            logger.warning("NOTIFY_SOCKET=%r is not a socket path; not notifying systemd", raw)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failing = False  # said once, not for every ping
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one message of ``KEY=value`` lines; True if it left. Never raises."""
        if self.address is None:
            return False
        data = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    self._sock = socket.socket(socket.AF_UNIX, kind)
                self._sock.sendto(data, self.address)
            except OSError as exc:
                if not self._failing:
                    logger.warning("cannot notify systemd (%s): %s", self.address.lstrip("\0"), exc)
                    self._failing = True
                self._close()
                return False
            if self._failing:
                logger.info("notifying systemd works again")
                self._failing = False
            self.sent += 1
            return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: systemd calls the service started."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status``."""
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        """A reload starts; ``ready()`` ends it. MONOTONIC_USEC is required from systemd 253
        on (Type=notify-reload) and ignored by 252, so it is always sent."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """We make progress: reset systemd's watchdog timer."""
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
