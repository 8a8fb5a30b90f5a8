"""Push: one IDLE connection per folder (RFC 2177) that only announces new mail.

IDLE watches the one folder selected on its connection, so each configured
folder gets a thread and a connection of its own (N folders: N + 1 connections
with the daemon's own; Dovecot allows 10 per user and address by default).
A watcher never fetches or decides: on EXISTS it calls ``notify(folder,
NEW_MAIL)``, and the daemon runs its one round, which already copes with
wake-ups that arrive while it runs. After each (re)connection it calls
``notify(folder, CONNECTED)``, so mail that came during an outage is looked
for at once rather than at the next poll.

Bounded everywhere: every read has ``imap.timeout``; one wait in IDLE lasts at
most ``IDLE_SLICE``; IDLE is re-issued every ``imap.idle_renew`` (RFC 2177 §3:
servers may drop a client idle for 30 minutes), which is also when a frozen
server is found out (DONE gets no answer within the timeout); a closed
connection is noticed by ``Mailbox.idle_wait``. Failures reconnect with
``backoff`` (the slow policy for a refused login). ``stop()`` shuts the socket
down under the blocked read, so stopping is immediate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from forwarder.backoff import Backoff
from forwarder.config import ImapConfig
from forwarder.imap.connection import CredentialsExpired, Mailbox, MailboxError, PermanentError

logger = logging.getLogger(__name__)

#: One IDLE wait lasts at most this long (stop() interrupts it anyway).
IDLE_SLICE = 30.0

#: Failures in a row after which a watcher that cannot get back in says so at WARNING;
#: before that a lost connection (a server restart) is routine and logged at INFO.
WARN_AFTER = 5

NEW_MAIL = "new mail"
CONNECTED = "connected"
#: The IDLE connection is gone and the watcher backs off before the next try.
DISCONNECTED = "disconnected"
#: The server offers no IDLE: the watcher ends; the folder is polled.
UNSUPPORTED = "unsupported"

#: ``notify(folder, event)``: called from the watcher's thread; must be quick.
Notify = Callable[[str, str], None]

#: ``heartbeat(folder, within)``: called from the watcher's thread whenever it makes
#: progress — in IDLE, connecting, or before a backoff wait — with the number of seconds
#: within which the next call comes unless the thread is stuck; ``within=None`` once, when
#: the thread ends on purpose (stopped, or no IDLE on the server). For the systemd
#: watchdog (``forwarder.ops.watchdog.Progress``); must be quick.
Heartbeat = Callable[[str, float | None], None]


def connect_budget(config: ImapConfig) -> float:
    """Seconds a (re)connection may take: connect, TLS, greeting, login, SELECT, IDLE,
    each bounded by ``imap.timeout``, with room to spare."""
    return 8 * config.timeout + 5


def idle_budget(config: ImapConfig) -> float:
    """Seconds between two heartbeats in IDLE: one wait, then DONE and IDLE at renewal."""
    return IDLE_SLICE + 3 * config.timeout + 5


class IdleUnsupported(MailboxError):
    """The server does not offer IDLE: polling is the only way."""


class IdleWatcher:
    """A thread holding one folder in IDLE on its own connection, reconnecting as needed."""

    def __init__(
        self,
        config: ImapConfig,
        folder: str,
        notify: Notify,
        *,
        on_unsupported: Callable[[], None] | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.config = config
        self.folder = folder
        self._notify_cb = notify
        self._on_unsupported = on_unsupported
        self._heartbeat_cb = heartbeat
        self._stopping = threading.Event()
        self._retry = threading.Event()  # ends a backoff wait early
        self._lock = threading.Lock()
        self._mailbox: Mailbox | None = None
        self.backoff = Backoff()
        self.sessions = 0  # connections that reached IDLE, for tests and benchmarks
        self.renewals = 0  # DONE + IDLE on the same connection
        self._expired_in_session = -1  # session whose token expiry was met, reconnected at once
        self._thread = threading.Thread(target=self._run, name=f"idle {folder}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and break its current wait; does not wait for it."""
        self._stopping.set()
        self._retry.set()
        with self._lock:
            if self._mailbox is not None:
                self._mailbox.interrupt()

    def retry_now(self) -> None:
        """The server is known to be back (the round got in): end a backoff wait now."""
        self._retry.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        self._loop()  # returns only when stopped or when the server has no IDLE
        self._heartbeat(None)  # ended on purpose; a thread that dies never says so

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._heartbeat(connect_budget(self.config))
            try:
                self._session()
            except IdleUnsupported:
                self._notify(UNSUPPORTED)
                if self._on_unsupported is not None:
                    self._on_unsupported()
                return
            except CredentialsExpired as exc:
                # Log in again at once with a fresh token; only once per session that got
                # in, so a server that keeps saying so is backed off from like any other.
                if self._stopping.is_set():
                    break
                if self._expired_in_session != self.sessions:
                    self._expired_in_session = self.sessions
                    logger.info("IDLE on %s: %s; logging in again", self.folder, exc)
                    continue
                self._wait_after(str(exc), permanent=False)
            except MailboxError as exc:
                if self._stopping.is_set():
                    break
                self._wait_after(str(exc), permanent=isinstance(exc, PermanentError))
            except Exception:  # a bug must not end push for good: log it, back off, go on
                if self._stopping.is_set():
                    break
                logger.exception("IDLE on %s failed unexpectedly", self.folder)
                self._wait_after("unexpected error", permanent=False)
            finally:
                self._drop()

    def _wait_after(self, error: str, *, permanent: bool) -> None:
        self._notify(DISCONNECTED)
        delay, news = self.backoff.failed(error, permanent=permanent)
        if permanent:
            level = logging.DEBUG  # the daemon's round reports those, once
        elif self.backoff.failures == WARN_AFTER:
            level = logging.WARNING
        else:
            level = logging.INFO if news else logging.DEBUG
        logger.log(
            level,
            "IDLE on %s: %s; reconnecting in %.1f s (attempt %d)",
            self.folder,
            error,
            delay,
            self.backoff.failures,
        )
        # Backing off is progress: a server that is down is not a hang.
        self._heartbeat(delay + connect_budget(self.config))
        self._retry.wait(delay)
        self._retry.clear()

    def _session(self) -> None:
        mailbox = Mailbox(self.config)
        with self._lock:
            if self._stopping.is_set():
                return
            self._mailbox = mailbox
        mailbox.connect()
        if not mailbox.supports_idle():
            raise IdleUnsupported(f"IMAP server {self.config.host} does not offer IDLE")
        selected = mailbox.select(self.folder, readonly=True)
        mailbox.idle_start()
        self.sessions += 1
        self._retry.clear()  # a retry_now() meant for an earlier wait
        failures = self.backoff.succeeded()
        if self.sessions == 1:
            logger.info("IDLE on %s: connected; new mail is pushed", self.folder)
        elif failures:
            logger.info(
                "IDLE on %s: connected again after %d failed attempt(s)", self.folder, failures
            )
        # After IDLE has started: whatever came before it (during an outage, or between
        # SELECT and IDLE) is found by the round this starts; everything later is announced.
        self._notify(CONNECTED)
        while True:
            renew_at = time.monotonic() + self.config.idle_renew
            while not self._stopping.is_set():
                left = renew_at - time.monotonic()
                if left <= 0:
                    break
                if mailbox.idle_wait(min(left, IDLE_SLICE)):
                    self._notify(NEW_MAIL)
                self._heartbeat(idle_budget(self.config))
            if self._stopping.is_set():
                return
            # DONE, then IDLE again: keeps the server's inactivity timer from firing, and a
            # server that stopped answering fails here within imap.timeout. NOOP and a fresh
            # SELECT between them: some Exchange servers stop reporting in a long IDLE until
            # the mailbox is selected again; anything that came meanwhile is announced.
            if mailbox.idle_done():
                self._notify(NEW_MAIL)
            if mailbox.credentials_expiring(self.config.idle_renew):
                # Its OAuth2 token would run out before the next renewal, and servers like
                # Microsoft then end the session: a new connection with a fresh token now.
                # The next session announces CONNECTED, so nothing arriving between is missed.
                logger.info(
                    "IDLE on %s: the access token is about to expire; logging in "
                    "again with a fresh one",
                    self.folder,
                )
                return
            mailbox.noop()
            again = mailbox.select(self.folder, readonly=True)
            if (again.uidnext, again.exists) != (selected.uidnext, selected.exists):
                self._notify(NEW_MAIL)  # news the server did not push: a round looks
            selected = again
            mailbox.idle_start()
            self.renewals += 1

    def _notify(self, event: str) -> None:
        try:
            self._notify_cb(self.folder, event)
        except Exception:
            logger.exception("IDLE on %s: announcing %s failed", self.folder, event)

    def _heartbeat(self, within: float | None) -> None:
        if self._heartbeat_cb is None:
            return
        try:
            self._heartbeat_cb(self.folder, within)
        except Exception:
            logger.exception("IDLE on %s: heartbeat failed", self.folder)

    def _drop(self) -> None:
        with self._lock:
            mailbox, self._mailbox = self._mailbox, None
        if mailbox is not None:
            mailbox.abort()


class IdleWatchers:
    """One ``IdleWatcher`` per configured folder, started and stopped together."""

    def __init__(
        self,
        config: ImapConfig,
        notify: Notify,
        *,
        folders: Sequence[str] | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.config = config
        self._said_unsupported = threading.Event()
        self.watchers = [
            IdleWatcher(
                config, folder, notify, on_unsupported=self._unsupported, heartbeat=heartbeat
            )
            for folder in (config.folders if folders is None else folders)
        ]

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop every watcher; wait for each up to ``timeout`` (default: one imap.timeout)."""
        for watcher in self.watchers:
            watcher.stop()
        deadline = time.monotonic() + (self.config.timeout + 1 if timeout is None else timeout)
        for watcher in self.watchers:
            watcher.join(max(0.0, deadline - time.monotonic()))
            if watcher.alive:
                logger.warning("IDLE on %s did not stop in time; leaving it", watcher.folder)

    def retry_now(self) -> None:
        for watcher in self.watchers:
            watcher.retry_now()

    def _unsupported(self) -> None:
        if not self._said_unsupported.is_set():
            self._said_unsupported.set()
            logger.info(
                "IMAP server %s does not offer IDLE: new mail is found by polling every %g s",
                self.config.host,
                self.config.poll_interval,
            )
