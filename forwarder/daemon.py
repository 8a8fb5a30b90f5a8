"""The long-running process: scheduler, signals, and the wiring of every stage.

One APScheduler job drives the flow (poll IMAP → rules → transformer →
outbox → SMTP). It is registered with ``max_instances=1`` and ``coalesce``:
a slow round is never run twice at once and a backlog of missed runs
collapses into one. Because APScheduler *skips* a run while the previous
one is still going ("maximum number of running instances reached"), a wake-up
that arrives mid-round is remembered and the round goes again before it ends,
so nothing waits for the next interval.

Push comes from ``idle``: one IDLE connection per folder whose only job is to
call ``wake()`` when the server announces mail; all fetching and deciding
stays in the single round, so there is one place where state changes.

Signals are taken synchronously by the main thread (``sigwait``): SIGTERM and
SIGINT stop after the current mail, SIGHUP re-reads the config (keeping the old
one if the new one is invalid).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from forwarder import config as config_module
from forwarder.backoff import Backoff as ReconnectBackoff
from forwarder.backoff import Policy
from forwarder.config import Config, ConfigError, ImapConfig
from forwarder.delivery.policy import (
    DAY,
    Action,
    HeldMail,
    ReadAction,
    ReadState,
    compose_summary,
    limit_reason,
    read_verdict,
    summary_due,
    verdict,
)
from forwarder.delivery.sender import Outcome, Sender
from forwarder.gateway.request import new_message_id
from forwarder.gateway.tracker import ReplyTracker
from forwarder.imap.checkpoints import Batch, poll_folder
from forwarder.imap.connection import (
    CommandRefused,
    FolderMissing,
    Mailbox,
    MailboxError,
    PermanentError,
)
from forwarder.imap.idle import CONNECTED, IdleWatchers
from forwarder.mail import Mail
from forwarder.pipeline import plan
from forwarder.rules.ruleset import FORWARD
from forwarder.store import Handled, OutboxItem, OutboxRow, Store

logger = logging.getLogger(__name__)

POLL_JOB = "poll"
HANDLED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
RETRY_JOB = "imap-retry"


class Daemon:
    def __init__(self, config: Config, *, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.state)
        self.mailbox: Mailbox | None = None
        self.sender = Sender(
            config.smtp, config.gateway, self.store, attempts=config.delivery.retry_attempts
        )
        self.tracker = ReplyTracker(
            self.store,
            pause=config.pause,
            probe_wait=config.probe_wait,
            # The config of the moment: a reload may change the domain.
            new_message_id=lambda: new_message_id(self.config.delivery.message_id_domain),
            scrub=lambda text: self.sender.scrub(text),  # the sender of the moment knows them
        )
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self._round_lock = threading.Lock()
        self._again = threading.Event()
        self._stopping = threading.Event()
        self.rounds = 0  # completed rounds, for tests and status

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the outbox, schedule the first round at once, start IDLE (push)."""
        self._recover_outbox()
        self.tracker.probe_soon()
        self.store.set_meta("started_at", str(time.time()))
        self.store.set_meta("pid", str(os.getpid()))
        imap = self.config.imap
        self._imap_backoff.succeeded()  # created here, before any IDLE thread can touch it
        # The poll is the safety net under IDLE (and all there is without it):
        # max_instances=1: rounds never overlap (run_round's lock also guards that);
        # coalesce: runs missed while a round was slow, or the host slept, become one;
        # misfire_grace_time=None: a late run is never dropped, however late.
        # Every network call in a round is bounded by imap.timeout / smtp.timeout, so a
        # round always returns: APScheduler skips every run while the last is still going.
        self.scheduler.add_job(
            self._round_job,
            "interval",
            seconds=imap.poll_interval,
            id=POLL_JOB,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.scheduler.start()
        self._start_idle(imap)
        logger.info(
            "forwarder started: %s as %s, folders %s, polling every %gs%s",
            imap.host, imap.username, ", ".join(imap.folders), imap.poll_interval,
            " (IDLE where the server offers it)" if imap.idle else " (IDLE off)",
        )  # fmt: skip

    def shutdown(self) -> None:
        """Wait for the round in progress to finish, then close everything."""
        self._stopping.set()
        self._stop_idle()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self._disconnect(graceful=True)
        self.sender.close()
        self.store.set_meta("stopped_at", str(time.time()))
        logger.info("forwarder stopped")

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP re-reads the config. Call from the main thread.

        The three signals are blocked before any thread starts (threads inherit the mask)
        and taken one at a time with ``sigwait``: no code runs inside a signal handler,
        so a signal can never interrupt a thread holding a lock the handler would need,
        and a reload runs in plain main-thread code.
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        self.start()
        try:
            while True:
                signum = signal.sigwait(HANDLED_SIGNALS)
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                logger.info("%s: stopping after the current mail", signal.Signals(signum).name)
                break
        finally:
            self.shutdown()
        return 0

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
                self._reconfigure_imap(fresh.imap)
            else:  # the operator may have fixed the account on the server: try at once
                self._imap_reachable()
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
        """Ask for a round now (new mail announced, reload…); never lost if one is running.

        Called from IDLE threads. While a round runs the flag is enough: the round goes
        again before it ends, and ``_round_job`` catches a flag set just as it ended.
        Moving the job under a running round would only make APScheduler log a skipped
        run for every announcement.
        """
        self._again.set()
        if self._round_lock.locked() or not self.scheduler.running:
            return
        with contextlib.suppress(JobLookupError, SchedulerNotRunningError):  # shutting down
            self.scheduler.modify_job(POLL_JOB, next_run_time=datetime.now(UTC))

    def _round_job(self) -> None:
        """The scheduled job: a round, and another if a wake-up slipped in as it ended."""
        self.run_round()
        while (
            self._again.is_set()
            and not self._stopping.is_set()
            and not self._round_lock.locked()  # whoever holds it goes again, or wakes us
        ):
            self.run_round()

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
        """Look for new mail in every folder, unless backing off after a failure."""
        if not self._imap_backoff.due():
            return  # the retry job, an IDLE reconnect or the next poll ends the wait
        for attempt in (1, 2):
            kept = self.mailbox is not None
            try:
                mailbox = self._mailbox()
                for folder in self.config.imap.folders:
                    if self._stopping.is_set():
                        return
                    self._poll_folder(mailbox, folder)
            except MailboxError as exc:
                self._disconnect()
                if attempt == 1 and kept and not isinstance(exc, PermanentError):
                    # The connection kept from the last round may have died with a server
                    # restart (that an IDLE thread just announced): one fresh try at once.
                    logger.debug("IMAP: %s on the kept connection; reconnecting", exc)
                    continue
                self._imap_failed(exc)
                return
            self._imap_ok()
            return

    def _poll_folder(self, mailbox: Mailbox, folder: str) -> None:
        now = time.monotonic()
        # The late-arrival check costs a SEARCH when nothing is new: once per poll_interval.
        check_late = now - self._late_checked.get(folder, -1e9) >= self.config.imap.poll_interval
        try:
            poll_folder(mailbox, self.store, folder, self._handle_batch, check_late=check_late)
        except FolderMissing as exc:
            if folder not in self._missing_folders:  # said once, not every round
                self._missing_folders.add(folder)
                logger.error("%s; check imap.folders (the other folders are watched)", exc)
            return
        except CommandRefused as exc:
            # The connection is fine and the checkpoint did not move: this folder is tried
            # again next round, and the folders after it must not wait for it.
            logger.warning("%s: %s; the other folders go on", folder, exc)
            return
        if check_late:
            self._late_checked[folder] = now
        if folder in self._missing_folders:
            self._missing_folders.discard(folder)
            logger.info("IMAP folder %r exists again", folder)

    def _imap_failed(self, exc: MailboxError) -> None:
        """Back off, and say so: a wrong password once, not every round."""
        backoff = self._imap_backoff
        permanent = isinstance(exc, PermanentError)
        delay, news = backoff.failed(str(exc), permanent=permanent)
        self.store.set_meta("last_poll_error", str(exc))
        if permanent:
            logger.log(
                logging.ERROR if news else logging.DEBUG,
                "%s; trying again in %.0f s (or at once after SIGHUP)", exc, delay,
            )  # fmt: skip
        else:
            logger.log(
                logging.WARNING if news else logging.INFO,
                "IMAP: %s; reconnecting in %.1f s (attempt %d)", exc, delay, backoff.failures,
            )  # fmt: skip
        self._schedule_retry(delay)

    def _imap_ok(self) -> None:
        failures = self._imap_backoff.succeeded()
        if failures:
            logger.info(
                "IMAP %s works again after %d failed attempt(s)", self.config.imap.host, failures
            )
            self._imap_reachable()  # an IDLE thread may be in a long backoff
        self.store.set_meta("last_poll", str(time.time()))
        self.store.set_meta("last_poll_error", "")

    def _schedule_retry(self, delay: float) -> None:
        """A round when the backoff ends, unless the poll comes first anyway."""
        if not self.scheduler.running or self._stopping.is_set():
            return
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
        job = self.scheduler.get_job(POLL_JOB)
        if job is not None and job.next_run_time is not None and job.next_run_time <= run_at:
            return
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.add_job(
                self.wake, "date", run_date=run_at, id=RETRY_JOB, replace_existing=True,
                misfire_grace_time=None,
            )  # fmt: skip

    def _mailbox(self) -> Mailbox:
        if self.mailbox is None:
            backoff = self._imap_backoff
            if not backoff.due():
                raise MailboxError(
                    f"IMAP unreachable ({backoff.last_error}); next try in "
                    f"{backoff.remaining():.0f} s"
                )
            mailbox = Mailbox(self.config.imap)
            mailbox.connect()
            self.mailbox = mailbox
        return self.mailbox

    def _disconnect(self, *, graceful: bool = False) -> None:
        """Drop the round's connection: LOGOUT when ``graceful``, else at once (it failed)."""
        if self.mailbox is not None:
            mailbox, self.mailbox = self.mailbox, None
            if graceful:
                mailbox.close()
            else:
                mailbox.abort()

    # -- IMAP side state and IDLE ------------------------------------------------------------
    @cached_property
    def _imap_backoff(self) -> ReconnectBackoff:
        """Failures of the round's IMAP connection in a row, and when to try again."""
        return ReconnectBackoff()

    @cached_property
    def _late_checked(self) -> dict[str, float]:
        """Per folder, when the last search for late arrivals ran (monotonic)."""
        return {}

    @cached_property
    def _missing_folders(self) -> set[str]:
        """Configured folders found missing (reported once)."""
        return set()

    @cached_property
    def _idle_watchers(self) -> list[IdleWatchers]:
        """The running IDLE watchers (a list so that stopping them is one pop)."""
        return []

    def _start_idle(self, imap: ImapConfig) -> None:
        if imap.idle and not self._stopping.is_set():
            watchers = IdleWatchers(imap, self._idle_event)
            self._idle_watchers.append(watchers)
            watchers.start()

    def _stop_idle(self) -> None:
        while self._idle_watchers:
            self._idle_watchers.pop().stop()

    def _idle_event(self, folder: str, event: str) -> None:
        """From an IDLE thread: new mail, or a (re)connection that proves the server is up."""
        if event == CONNECTED:
            self._imap_backoff.retry_now()
        logger.debug("IDLE on %s: %s", folder, event)
        self.wake()

    def _imap_reachable(self) -> None:
        """Stop every IMAP backoff wait: the round's and the IDLE threads'."""
        self._imap_backoff.retry_now()
        for watchers in self._idle_watchers:
            watchers.retry_now()

    def _reconfigure_imap(self, imap: ImapConfig) -> None:
        """New IMAP settings (SIGHUP): new connections, and a fresh start for the backoff."""
        self._stop_idle()
        self._disconnect(graceful=True)
        self._imap_backoff.succeeded()
        self._missing_folders.clear()
        if self.scheduler.running:
            if imap.poll_interval != self.config.imap.poll_interval:
                self.scheduler.reschedule_job(
                    POLL_JOB, trigger="interval", seconds=imap.poll_interval
                )
            self._start_idle(imap)

    def _handle_batch(self, batch: Batch) -> list[int]:
        """Decide every mail of a batch; commit decisions, SMS and checkpoint together.

        The batch comes with headers and MIME structure only; the start of the text is
        fetched for every mail if a rule reads the body, else only for the mail that will
        be forwarded (the SMS shows it) and for gateway replies (the tracker reads them).
        A mail that makes the core raise is logged with its traceback and
        recorded as an error: it never blocks the mail behind it.
        Returns the UIDs forwarded, for ``imap.keyword``.
        """
        now = datetime.now(UTC)
        handled: list[Handled] = []
        outbox: list[OutboxItem] = []
        domain = self.config.delivery.message_id_domain
        in_batch: dict[str, str] = {}  # Message-ID → folder/UID forwarded earlier in this batch

        def forwarded_as(message_id: str) -> str | None:
            return in_batch.get(message_id) or self.store.forwarded_as(message_id)

        for mail in self._with_text(batch, now):
            try:
                result = plan(
                    mail, self.config, now,
                    new_message_id=lambda: new_message_id(domain), forwarded_as=forwarded_as,
                )  # fmt: skip
            except Exception as exc:
                logger.exception("mail %s could not be processed; skipped", mail.describe())
                reason = f"error: {exc.__class__.__name__}: {exc}"[:300]
                handled.append(Handled(mail.uid, mail.message_id or "", "error", None, reason))
                continue
            if result.decision.gateway_reply:
                self._record_reply(mail)
            handled.append(result.handled)
            outbox.extend(result.outbox)
            if result.handled.action == FORWARD and mail.message_id:
                in_batch[mail.message_id] = f"{batch.folder}/{mail.uid}"
            logger.info(
                "mail %s: %s (%s)", mail.describe(), result.handled.action, result.handled.reason
            )
        self.store.record_batch(
            batch.folder, batch.uidvalidity, handled, outbox, advance_to=batch.advance_to
        )
        return [h.uid for h in handled if h.action == FORWARD]

    def _with_text(self, batch: Batch, now: datetime) -> list[Mail]:
        ruleset = self.config.ruleset
        if ruleset.needs_body:
            wanted = batch.mails
        else:
            wanted = [mail for mail in batch.mails if self._text_needed(mail, now)]
        return batch.with_text(wanted) if wanted else batch.mails

    def _text_needed(self, mail: Mail, now: datetime) -> bool:
        """Would the header-only rules forward it, or is it a gateway reply? (Pure, cheap.)"""
        try:
            decision = self.config.ruleset.decide(mail, now)
        except Exception:  # plan() meets the same error with the whole mail, and logs it
            return True
        return decision.action == FORWARD or decision.gateway_reply

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
        """Send what is due, after the delivery policy (``forwarder.delivery.policy``) had its say.

        Per due row: unless_read (IMAP \\Seen) → dedup → limits → the reply tracker's
        ``hold_reason`` (blocked recipient, open circuit) → SMTP. The first transient SMTP
        failure ends the burst: the server is backing off, the other rows wait with it.
        """
        self.tracker.tick()
        delivery = self.config.delivery
        self.sender.attempts = delivery.retry_attempts  # the Sender outlives a reload
        self.sender.backoff = Policy(
            "smtp retry", first=delivery.retry_backoff, cap=delivery.retry_backoff_max
        )
        if self.sender.halted is not None and self.sender.config is not self.config.smtp:
            # Reloaded since the halt with equal smtp settings (so the Sender was kept):
            # the operator says the cause is fixed (e.g. on the server side); try again.
            logger.info("SMTP settings reloaded: sending resumes after '%s'", self.sender.halted)
            self.sender.resume(self.config.smtp)
        now = self.store.clock()
        self._expire_outbox(now)
        self.store.prune_sends(now - 2 * DAY)
        if not self.sender.ready(now):
            logger.debug("SMTP not tried this round: %s", self.sender.halted or "backing off")
            return
        self._queue_summary(now)
        settled: dict[str, int] = {}
        seen: set[int] = set()
        try:
            while not self._stopping.is_set() and self.sender.ready(self.store.clock()):
                # In batches, so a storm of thousands is settled in one round; rows left
                # pending (circuit open, waiting for IMAP) are not taken twice.
                due = [r for r in self.store.due(now, limit=len(seen) + 100) if r.id not in seen]
                if not due:
                    break
                reads = self._read_states([r for r in due if r.unless_read and r.kind == "mail"])
                for row in due:
                    if self._stopping.is_set() or not self.sender.ready(self.store.clock()):
                        break
                    seen.add(row.id)
                    what = self._deliver(row, reads.get(row.id, ReadState.UNKNOWN))
                    settled[what] = settled.get(what, 0) + 1
        finally:
            self.sender.close()
        if settled.get("held"):
            full = limit_reason(self.store.send_counts(), self.config.limits)
            logger.warning(
                "%d SMS held back (%s); one summary SMS will report them when the limits allow",
                settled["held"], full or "limits",
            )  # fmt: skip

    def _deliver(self, row: OutboxRow, read: ReadState) -> str:
        """Decide about one due row and act; returns what happened (for the round's log line)."""
        now = self.store.clock()
        if row.unless_read and row.kind == "mail":
            action, why = read_verdict(
                read, due_at=row.due_at, now=now, wait=self.config.delivery.unless_read_wait
            )
            if action is ReadAction.CANCEL:
                self.store.settle(row.id, "cancelled", why)
                logger.info(
                    "SMS %s for %s cancelled: %s", row.message_id, row.source_message_id, why
                )
                return "cancelled"
            if action is ReadAction.WAIT:
                if row.reason != why:
                    self.store.set_state(row.id, "pending", reason=why)
                    logger.info("SMS %s for %s: %s", row.message_id, row.source_message_id, why)
                return "waiting"
            if read is not ReadState.UNSEEN:
                logger.warning("SMS %s for %s: %s", row.message_id, row.source_message_id, why)
        candidates = (
            self.store.dedup_candidates(row.dedup_key, row.recipient, row.id)
            if row.dedup_key
            else []
        )
        decided = verdict(
            kind=row.kind,
            created_at=row.created_at,
            counts=self.store.send_counts(now),
            limits=self.config.limits,
            candidates=candidates,
        )
        if decided.action is Action.DUPLICATE:
            self.store.settle(row.id, "duplicate", decided.reason, duplicate_of=decided.original)
            logger.info(
                "SMS %s for %s not sent: %s", row.message_id, row.source_message_id, decided.reason
            )
            return "duplicate"
        if decided.action is Action.HOLD:
            self.store.settle(row.id, "held", decided.reason)
            logger.info(
                "SMS %s for %s held: %s", row.message_id, row.source_message_id, decided.reason
            )
            return "held"
        if decided.action is Action.WAIT:
            return "waiting"
        reason = self.tracker.hold_reason(row)  # last: it may pick this row as the probe
        if reason is not None:
            logger.debug("SMS %s held: %s", row.message_id, reason)
            return "paused"
        outcome = self.sender.send(row)
        if outcome is Outcome.IN_DOUBT:
            self._after_doubt(row)
        return outcome.value

    def _after_doubt(self, row: OutboxRow) -> None:
        """A send cut off after the final dot, during this run: apply delivery.on_doubt."""
        if self.config.delivery.on_doubt != "resend":
            logger.error(
                "SMS %s for %s is in doubt and will not be sent again (delivery.on_doubt: "
                "alert); check your phone, and 'forwarder status'",
                row.message_id, row.source_message_id,
            )  # fmt: skip
            return
        wait = self.sender.backoff.delay(1)
        logger.warning(
            "SMS %s for %s is in doubt; sending it again in %.0fs because delivery.on_doubt is "
            "resend (the same Message-ID; a second SMS is possible)",
            row.message_id, row.source_message_id, wait,
        )  # fmt: skip
        self.store.retry_later(
            row.id,
            error="connection lost after the final dot; resent (delivery.on_doubt: resend)",
            not_before=self.store.clock() + wait,
        )

    def _expire_outbox(self, now: float) -> None:
        """Pending SMS older than delivery.max_age (counted from when they were due) fail."""
        max_age = self.config.delivery.max_age
        reason = f"not delivered within delivery.max_age ({max_age / 3600:g} h) of being due"
        for row in self.store.expire(now - max_age, reason):
            last_error = row.last_error or row.reason or "none"
            logger.error(
                "SMS %s for %s given up: %s; last error: %s",
                row.message_id, row.source_message_id, reason, last_error,
            )  # fmt: skip

    def _queue_summary(self, now: float) -> None:
        """When the limits allow again, queue one summary SMS per recipient of the held mail."""
        held = self.store.held_unsummarised()
        if not held or self.store.summary_pending():
            return
        if not summary_due(len(held), self.store.send_counts(now), self.config.limits):
            return
        groups: dict[str, list[OutboxRow]] = {}
        for row in held:
            groups.setdefault(row.recipient, []).append(row)
        requests = {r.recipient: r for r in self.config.gateway.requests()}
        domain = self.config.delivery.message_id_domain
        for recipient, rows in groups.items():
            text = compose_summary(
                [HeldMail(r.mail_from, r.mail_subject) for r in rows], self.config.sms
            )
            request, last = requests.get(recipient), rows[-1]
            item = OutboxItem(
                uid=0,
                source_message_id=f"(summary of {len(rows)} held SMS)",
                rule=None,
                recipient=recipient,
                to_addr=request.to if request else last.to_addr,
                sender=self.config.gateway.sender if request else last.sender,
                subject_masked=request.masked_subject if request else last.subject_masked,
                text=text,
                message_id=new_message_id(domain),
                not_before=now,
            )
            summary_id = self.store.add_summary(item, [r.id for r in rows])
            logger.warning(
                "summary SMS #%d queued for %s: %d held SMS reported",
                summary_id,
                recipient,
                len(rows),
            )

    def _read_states(self, rows: Sequence[OutboxRow]) -> dict[int, ReadState]:
        """Ask IMAP whether each unless_read row's mail is \\Seen; UNKNOWN where it cannot."""
        states: dict[int, ReadState] = {}
        if not rows:
            return states
        by_folder: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_folder.setdefault(row.folder, []).append(row)
        try:
            mailbox = self._mailbox()
            for folder, folder_rows in by_folder.items():
                try:
                    current = mailbox.select(folder)
                except FolderMissing:
                    states.update((r.id, ReadState.GONE) for r in folder_rows)
                    continue
                # RFC 3501 §2.3.1.1: a UID from another UIDVALIDITY names no mail any more.
                valid = [r for r in folder_rows if r.uidvalidity == current.uidvalidity]
                states.update((r.id, ReadState.GONE) for r in folder_rows if r not in valid)
                flags = mailbox.flags([r.uid for r in valid]) if valid else {}
                for r in valid:
                    found = flags.get(r.uid)
                    if found is None:
                        states[r.id] = ReadState.GONE
                    elif "\\seen" in {f.lower() for f in found}:
                        states[r.id] = ReadState.SEEN
                    else:
                        states[r.id] = ReadState.UNSEEN
        except MailboxError as exc:
            logger.warning(
                "IMAP: cannot check whether %d delayed mail(s) were read: %s", len(rows), exc
            )
            self._disconnect()
        return states

    def _recover_outbox(self) -> None:
        """After a crash: 'sending' never reached the final dot → resend; 'in_doubt' per config.

        Rows backing off after a transient failure are made due again: a restart is often
        the fix (the operator changed something), so they are tried at once.
        """
        retried = self.store.reset_backoff()
        if retried:
            logger.info("%d SMS waiting to retry are due again after the restart", retried)
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
