"""The long-running process: scheduler, signals, and the wiring of every stage.

One APScheduler job drives the flow (poll IMAP → rules → transformer →
outbox → SMTP). It is registered with ``max_instances=1`` and ``coalesce``:
a slow round is never run twice at once and a backlog of missed runs
collapses into one. Because APScheduler *skips* a run while the previous
one is still going ("maximum number of running instances reached"), a wake-up
that arrives mid-round is remembered and the round goes again before it ends,
so nothing waits for the next interval.

Signals are turned into events for the main thread: SIGTERM/SIGINT stop
after the current mail, SIGHUP re-reads the config (keeping the old one if
the new one is invalid).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from forwarder import config as config_module
from forwarder.config import Config, ConfigError
from forwarder.mail import Mail
from forwarder.mailbox import AuthError, FolderMissing, Mailbox, MailboxError
from forwarder.pipeline import plan
from forwarder.sender import Sender
from forwarder.sms import new_message_id
from forwarder.store import Handled, OutboxItem, Store
from forwarder.tracker import ReplyTracker
from forwarder.watcher import poll_folder

logger = logging.getLogger(__name__)

POLL_JOB = "poll"


class Daemon:
    def __init__(self, config: Config, *, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.state)
        self.mailbox: Mailbox | None = None
        self.sender = Sender(
            config.smtp, config.gateway, self.store, attempts=config.delivery.retry_attempts
        )
        domain = config.delivery.message_id_domain
        self.tracker = ReplyTracker(
            self.store,
            pause=config.pause,
            probe_wait=config.probe_wait,
            new_message_id=lambda: new_message_id(domain),
        )
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self._round_lock = threading.Lock()
        self._again = threading.Event()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        self.rounds = 0  # completed rounds, for tests and status

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the outbox, then schedule the first round at once."""
        self._recover_outbox()
        self.tracker.probe_soon()
        self.store.set_meta("started_at", str(time.time()))
        interval = self.config.imap.poll_interval
        self.scheduler.add_job(
            self.run_round,
            "interval",
            seconds=interval,
            id=POLL_JOB,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval)),
        )
        self.scheduler.start()
        logger.info(
            "forwarder started: %s as %s, folders %s, polling every %gs",
            self.config.imap.host, self.config.imap.username,
            ", ".join(self.config.imap.folders), interval,
        )  # fmt: skip

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    def shutdown(self) -> None:
        """Wait for the round in progress to finish, then close everything."""
        self._stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self._disconnect()
        self.sender.close()
        self.store.set_meta("stopped_at", str(time.time()))
        logger.info("forwarder stopped")

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; must be called from the main thread."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        self.start()
        try:
            while not self._stopping.is_set():
                self._wakeup.wait()
                self._wakeup.clear()
                if self._reload_requested.is_set() and not self._stopping.is_set():
                    self._reload_requested.clear()
                    self.reload()
        finally:
            self.shutdown()
        return 0

    def request_reload(self) -> None:
        self._reload_requested.set()
        self._wakeup.set()

    def reload(self) -> bool:
        """Re-read the config file; keep running on the old one if the new one is bad."""
        try:
            fresh = config_module.load(self.config.source)
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error("reload refused: %s", problem)
            logger.error("reload refused: keeping the rules and settings already running")
            return False
        with self._round_lock:
            if fresh.imap != self.config.imap:
                self._disconnect()
            if fresh.smtp != self.config.smtp or fresh.gateway != self.config.gateway:
                self.sender.close()
                self.sender = Sender(
                    fresh.smtp, fresh.gateway, self.store, attempts=fresh.delivery.retry_attempts
                )
            self.config = fresh
            self.tracker.pause, self.tracker.probe_wait = fresh.pause, fresh.probe_wait
            self.tracker.probe_soon()
        logger.info(
            "configuration reloaded from %s (%d rules)", fresh.source, len(fresh.ruleset.names)
        )
        self.wake()
        return True

    def wake(self) -> None:
        """Ask for a round now (new mail announced, reload…); never lost if one is running."""
        self._again.set()
        job = self.scheduler.get_job(POLL_JOB) if self.scheduler.running else None
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    # -- one round ----------------------------------------------------------------------------
    def run_round(self) -> None:
        """Poll every folder, then send what is due. Never raises: the scheduler must live on."""
        if not self._round_lock.acquire(blocking=False):
            self._again.set()
            return
        try:
            while not self._stopping.is_set():
                self._again.clear()
                self._poll_all()
                self._flush_outbox()
                if not self._again.is_set():
                    break
            self.rounds += 1
        except Exception:
            logger.exception("unexpected error in a round; the next round will try again")
        finally:
            self._round_lock.release()

    def _poll_all(self) -> None:
        try:
            mailbox = self._mailbox()
            for folder in self.config.imap.folders:
                if self._stopping.is_set():
                    return
                try:
                    poll_folder(mailbox, self.store, folder, self._handle_batch)
                except FolderMissing as exc:
                    logger.error("%s; check imap.folders", exc)
            self.store.set_meta("last_poll", str(time.time()))
            self.store.set_meta("last_poll_error", "")
        except AuthError as exc:
            logger.error("%s", exc)
            self.store.set_meta("last_poll_error", str(exc))
            self._disconnect()
        except MailboxError as exc:
            logger.warning("IMAP: %s; will reconnect on the next round", exc)
            self.store.set_meta("last_poll_error", str(exc))
            self._disconnect()

    def _mailbox(self) -> Mailbox:
        if self.mailbox is None:
            mailbox = Mailbox(self.config.imap)
            mailbox.connect()
            self.mailbox = mailbox
        return self.mailbox

    def _disconnect(self) -> None:
        if self.mailbox is not None:
            self.mailbox.close()
            self.mailbox = None

    def _handle_batch(
        self, folder: str, uidvalidity: int, mails: Sequence[Mail], advance_to: int
    ) -> None:
        """Decide every mail of a batch; commit decisions, SMS and checkpoint together.

        A mail that makes the core raise is logged with its traceback and
        recorded as an error: it never blocks the mail behind it.
        """
        now = datetime.now(UTC)
        handled: list[Handled] = []
        outbox: list[OutboxItem] = []
        domain = self.config.delivery.message_id_domain
        for mail in mails:
            try:
                result = plan(mail, self.config, now, new_message_id=lambda: new_message_id(domain))
            except Exception as exc:
                logger.exception("mail %s could not be processed; skipped", mail.describe())
                reason = f"error: {exc.__class__.__name__}: {exc}"[:300]
                handled.append(Handled(mail.uid, mail.message_id or "", "error", None, reason))
                continue
            if result.decision.gateway_reply:
                self._record_reply(mail)
            handled.append(result.handled)
            outbox.extend(result.outbox)
            logger.info(
                "mail %s: %s (%s)", mail.describe(), result.handled.action, result.handled.reason
            )
        self.store.record_batch(folder, uidvalidity, handled, outbox, advance_to=advance_to)

    def _record_reply(self, mail: Mail) -> None:
        """Hand a gateway reply to the tracker before the checkpoint passes it.

        Recording is idempotent per (folder, UID), so a crash between here and the
        checkpoint commit re-reads the reply without acting on it twice.
        """
        try:
            self.tracker.record(mail)
        except Exception:
            logger.exception("gateway reply %s could not be recorded", mail.describe())

    def _flush_outbox(self) -> None:
        self.tracker.tick()
        for row in self.store.due():
            if self._stopping.is_set():
                break
            reason = self.tracker.hold_reason(row)
            if reason is not None:
                logger.debug("SMS %s held: %s", row.message_id, reason)
                continue
            self.sender.send(row)
        self.sender.close()

    def _recover_outbox(self) -> None:
        """After a crash: 'sending' never reached the final dot → resend; 'in_doubt' per config."""
        for row in self.store.outbox_in("sending"):
            logger.warning(
                "SMS %s was interrupted before the final dot; it will be sent again", row.message_id
            )
            self.store.set_state(row.id, "pending")
        for row in self.store.outbox_in("in_doubt"):
            if self.config.delivery.on_doubt == "resend":
                logger.warning(
                    "SMS %s may have been sent already (connection lost after the final dot); "
                    "sending again because delivery.on_doubt is resend", row.message_id,
                )  # fmt: skip
                self.store.set_state(row.id, "pending")
            else:
                logger.error(
                    "SMS %s for %s may or may not have been sent (connection lost after the final "
                    "dot); not resent because delivery.on_doubt is alert", row.message_id,
                    row.source_message_id,
                )  # fmt: skip
