"""Intake: one mailbox's connections, from new mail on the server to decisions in the state file.

One ``Intake`` owns everything about reading one IMAP account: the round's connection and
its backoff, the IDLE threads that announce new mail, which folders are missing, when the
last search for late arrivals ran. ``poll()`` looks at every folder once; each batch of new
mail is decided by the pure pipeline (``forwarder.pipeline.plan``) and committed with its
checkpoint in one transaction (``Store.record_batch``), then ``on_commit`` says so, so that
delivery can start on it while the next batch is fetched.

A mail in a watched folder whose Message-ID is one of our own requests' (or carries it in
``X-Microsoft-Original-Message-ID``, where Outlook.com moves it) is that request's *receipt*
(``forwarder.delivery.receipts``: the copy to the owner, ``delivery.receipts: copy``). It is
recorded with the batch, never forwarded whatever the rules and guards say, and then kept
out of the user's way: marked ``\\Seen`` (so it is no new mail to anyone's phone or client)
and moved to ``delivery.receipt_folder`` if one is set. Not deleted: it is the user's own
record of what forwarder sent.

It also answers delivery's two questions to IMAP: ``read_states`` (has the mail of an
``unless_read`` SMS been read meanwhile) and ``find_in_sent`` (is a request in doubt in the
Sent folder). All of it runs on the same connection under one lock: IMAP connections are
not safe to share between threads.

If the state file cannot be written (its disk is full), nothing moves: the batch's
transaction rolls back, the checkpoint stays, the mail waits on the server; this is said
once, plainly, and the next poll tries again.

Nothing here schedules, sends or handles signals: that is the daemon's and delivery's.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from forwarder import crashpoints
from forwarder.backoff import Backoff
from forwarder.clock import Clock
from forwarder.config import Config, ImapConfig
from forwarder.delivery.policy import ReadState
from forwarder.delivery.receipts import ID_HEADERS, Receipts, own_ids
from forwarder.gateway.request import new_message_id
from forwarder.gateway.tracker import ReplyTracker
from forwarder.imap.checkpoints import Batch, LikelySearchFailed, poll_folder
from forwarder.imap.connection import (
    CommandRefused,
    FolderMissing,
    Mailbox,
    MailboxError,
    PermanentError,
)
from forwarder.imap.idle import CONNECTED, DISCONNECTED, UNSUPPORTED, IdleWatchers
from forwarder.mail import Mail, Reads
from forwarder.pipeline import plan
from forwarder.records import LedgerEntry, OutboxItem, OutboxRow, Receipt
from forwarder.rules.ruleset import FORWARD, SKIP, Decision
from forwarder.store import DEFAULT_ACCOUNT, StateUnwritable, Store

logger = logging.getLogger(__name__)

#: A backlog's fetch carries only the header fields the rules read; a receipt copy is
#: recognised by these whatever the rules read (Outlook moves our Message-ID aside).
RECEIPT_READS = Reads(frozenset(name.lower() for name in ID_HEADERS))

#: The ledger's actions as a batch's summary line says them ("INBOX: 4950 skipped, 50 ...").
_PAST = {"forward": "forwarded", "skip": "skipped", "reply": "gateway replies", "error": "errors"}


def _needs_text(decision: Decision) -> bool:
    """Forwarded mail shows its text in the SMS; the reply tracker reads a gateway reply's."""
    return decision.action == FORWARD or decision.gateway_reply


class Observer:
    """What intake tells the rest of the process (systemd watchdog, metrics); no-ops here.

    The daemon passes one bound to the account (``forwarder.ops`` behind it).
    """

    def watch_idle(self, watchers: IdleWatchers) -> None:
        """IDLE threads about to start: the watchdog watches each."""

    def idle_heartbeat(self, folder: str, within: float | None) -> None:
        """An IDLE thread is alive (None: it ended on purpose)."""

    def forget_idle(self) -> None:
        """The IDLE threads are being stopped on purpose."""

    def idle_connected(self, folder: str, up: bool) -> None:
        """A folder's IDLE connection came up, or went down."""

    def batch_decided(self, counts: Counter[str]) -> None:
        """A batch was committed: how many mails got each ledger action."""

    def reply_recorded(self, code: str) -> None:
        """A gateway reply was recorded, with its code."""


class Intake:
    """Reads one IMAP account (``name``, an item of ``config.accounts``): polls, IDLE,
    batches decided and committed with checkpoints.

    ``wake()`` asks the daemon for a round (an IDLE announcement, a reconnection);
    ``retry_in(seconds)`` asks for one when the backoff ends; ``on_commit()`` is called after
    each batch that queued SMS was committed; ``drain()`` lets delivery send what a backlog's
    likely mail queued before the rest of the backlog is read (it returns when delivery is
    done with it, or could not be soon).
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        tracker: ReplyTracker,
        *,
        clock: Clock,
        wake: Callable[[], None],
        retry_in: Callable[[float], None],
        stopping: threading.Event,
        on_commit: Callable[[], None] = lambda: None,
        drain: Callable[[], None] = lambda: None,
        name: str = DEFAULT_ACCOUNT,
        observer: Observer | None = None,
    ) -> None:
        self.name = name
        self.observer = observer or Observer()
        self.config = config
        self.store = store.account(name)  # checkpoints, ledger and meta of this account
        self.tracker = tracker
        self.clock = clock
        self._wake = wake
        self._retry_in = retry_in
        self._stopping = stopping
        self._on_commit = on_commit
        self._drain = drain
        self._queued = False  # a batch of this folder's poll queued SMS
        # All state is made here, before any IDLE thread exists that could touch it.
        self.backoff = Backoff(clock=clock.monotonic)  # the round connection's failures
        self.mailbox: Mailbox | None = None
        self._lock = threading.RLock()  # one thread at a time on the connection
        self._late_checked: dict[str, float] = {}  # folder → last late-arrival search
        self._missing: set[str] = set()  # folders found missing (reported once)
        self._watchers: list[IdleWatchers] = []  # a list so that stopping them is one pop
        self.looked_at: set[str] = set()  # folders polled (or baselined) at least once
        #: When the latest complete look (every folder read) began, wall time; None: none
        #: yet in this run. A receipt copy that had arrived by then is recorded (delivery).
        self.looked_from: float | None = None
        self._tidy: dict[str, list[int]] = {}  # folder → UIDs of receipts to mark and move
        self._sent_folder: str | None = None  # found on the server (RFC 6154)
        self._said: set[str] = set()  # problems said once (no Sent folder, ...)
        #: A backlog's SEARCH for likely mail broke a connection once: read in order.
        self._in_order = False
        self.unwritable: str | None = None  # why the state file cannot be written, if so
        self.last_error: MailboxError | None = None  # of the last poll; None: it worked
        # The account's own round: one account down or slow never delays another.
        self.round_lock = threading.Lock()
        self.again = threading.Event()

    @property
    def imap(self) -> ImapConfig:
        """This account's settings in the config of the moment."""
        return self.config.account(self.name)

    # -- lifecycle ------------------------------------------------------------------------------
    def start_idle(self) -> None:
        imap = self.imap
        if imap.idle_folders and not self._stopping.is_set():
            watchers = IdleWatchers(
                imap,
                self._idle_event,
                folders=imap.idle_folders,
                heartbeat=self.observer.idle_heartbeat,
            )
            self.observer.watch_idle(watchers)
            self._watchers.append(watchers)
            watchers.start()

    def stop_idle(self) -> None:
        if self._watchers:
            self.observer.forget_idle()
        while self._watchers:
            self._watchers.pop().stop()

    def close(self) -> None:
        """Stop IDLE and log out of the round's connection."""
        self.stop_idle()
        with self._lock:
            self._disconnect(graceful=True)

    def reconfigure(self, fresh: Config) -> None:
        """Take a reloaded config. New IMAP settings: new connections and a fresh backoff;
        the same ones: the operator may have fixed the account, so every wait ends now."""
        changed = fresh.account(self.name) != self.imap
        with self._lock:
            if changed:
                self.stop_idle()
                self._disconnect(graceful=True)
                self.backoff.succeeded()
                self._missing.clear()
                self.looked_at.clear()
            self._said.clear()
            self._sent_folder = None
            self.config = fresh
        if changed:
            self.start_idle()
        else:
            self.reachable()

    def reachable(self) -> None:
        """Stop every IMAP backoff wait: the round's and the IDLE threads'."""
        self.backoff.retry_now()
        for watchers in self._watchers:
            watchers.retry_now()

    def idle_alive(self) -> bool:
        """Every IDLE thread that should run is running (connected or reconnecting)."""
        return all(w.alive for watchers in self._watchers for w in watchers.watchers)

    def _idle_event(self, folder: str, event: str) -> None:
        """From an IDLE thread: new mail, a (re)connection that proves the server is up, or
        a lost connection. Whether each folder's IDLE is connected is kept in the state
        file (``idle:<folder>``), for ``status`` and for tests to wait on."""
        if event in (CONNECTED, DISCONNECTED, UNSUPPORTED):
            self.store.set_meta(f"idle:{folder}", event)
            self.observer.idle_connected(folder, event == CONNECTED)
        if event in (DISCONNECTED, UNSUPPORTED):
            return
        if event == CONNECTED:
            self.backoff.retry_now()
        logger.debug("IDLE on %s: %s", folder, event)
        self._wake()

    # -- polling --------------------------------------------------------------------------------
    def poll(self) -> None:
        """Look for new mail in every folder, unless backing off after a failure."""
        with self._lock:
            try:
                self._poll()
            except StateUnwritable as exc:
                self._cannot_record(exc)
                return
        if self.unwritable is not None:
            self.unwritable = None
            logger.warning("the state file can be written again: forwarder goes on")

    def _cannot_record(self, exc: StateUnwritable) -> None:
        if self.unwritable is None:
            logger.error(
                "%s. forwarder cannot record what it handles, so it stops here: the "
                "checkpoint stays where it was, new mail waits on the server and nothing is "
                "lost; it goes on by itself once there is room again (free some space)",
                exc,
            )
        self.unwritable = str(exc)

    def _poll(self) -> None:
        if not self.backoff.due():
            return  # the retry job, an IDLE reconnect or the next poll ends the wait
        for attempt in (1, 2):
            kept = self.mailbox is not None
            began = self.clock.time()
            complete = True
            try:
                mailbox = self._connection()
                for folder in self.imap.folders:
                    if self._stopping.is_set():
                        return
                    complete = self._poll_folder(mailbox, folder) and complete
            except MailboxError as exc:
                self._disconnect()
                if isinstance(exc, LikelySearchFailed):
                    self._in_order = True  # the server cannot afford it: never again
                if attempt == 1 and kept and not isinstance(exc, PermanentError):
                    # The connection kept from the last round may have died with a server
                    # restart (that an IDLE thread just announced): one fresh try at once.
                    logger.debug("IMAP: %s on the kept connection; reconnecting", exc)
                    continue
                self._failed(exc)
                return
            self._succeeded()
            if complete:
                self.looked_from = began
            return

    def _poll_folder(self, mailbox: Mailbox, folder: str) -> bool:
        """Read one folder's new mail; whether it was read (or is missing: nothing to read)."""
        now = self.clock.monotonic()
        # The late-arrival check costs a SEARCH when nothing is new: once per poll_interval.
        last = self._late_checked.get(folder)
        check_late = last is None or now - last >= self.imap.poll_interval
        self._queued = False
        try:
            try:
                poll_folder(
                    mailbox,
                    self.store,
                    folder,
                    self._handle_batch,
                    check_late=check_late,
                    reads=self.config.ruleset.reads | RECEIPT_READS,  # a backlog: what is read
                    likely=None if self._in_order else self.config.ruleset.likely,
                    after_likely=self._after_likely,
                )
            finally:
                self._tidy_receipts(mailbox, folder)
        except FolderMissing as exc:
            if folder not in self._missing:  # said once, not every round
                self._missing.add(folder)
                logger.error("%s; check imap.folders (the other folders are watched)", exc)
            self.looked_at.add(folder)  # looked at: there is nothing there to miss
            return True
        except CommandRefused as exc:
            # The connection is fine and the checkpoint did not move: this folder is tried
            # again next round, and the folders after it must not wait for it.
            logger.warning("%s: %s; the other folders go on", folder, exc)
            return False
        self.looked_at.add(folder)
        if check_late:
            self._late_checked[folder] = now
        if folder in self._missing:
            self._missing.discard(folder)
            logger.info("IMAP folder %r exists again", folder)
        return True

    def _after_likely(self) -> None:
        """A backlog's likely mail is committed: its SMS go out before the rest is read.

        Delivery and intake share one interpreter: while intake parses thousands of
        headers, each of delivery's SMTP replies and state commits waits for its turn, and
        the 50 SMS of a backlog took as long as reading all of it (bench_catchup). The
        rest of the backlog is what the rules' words did not find: it can wait the
        moment these SMS take.
        """
        if self._queued:
            self._queued = False
            self._drain()

    def _tidy_receipts(self, mailbox: Mailbox, folder: str) -> None:
        """Keep the receipts just recorded out of the user's way: ``\\Seen``, and moved to
        ``delivery.receipt_folder`` if set. They are committed already: a failure here
        costs only the tidying (said, never retried)."""
        uids = self._tidy.pop(folder, [])
        if not uids:
            return
        target = self.config.delivery.receipt_folder
        try:
            mailbox.select(folder, readonly=False)
            mailbox.mark_seen(uids)
            if target:
                mailbox.ensure_folder(target)
                mailbox.move(uids, target)
        except CommandRefused as exc:
            logger.warning(
                "%s: %d receipt(s) recorded but not %s: %s",
                folder,
                len(uids),
                f"moved to {target!r}" if target else "marked read",
                exc,
            )

    def _failed(self, exc: MailboxError) -> None:
        """Back off, and say so: a wrong password once, not every round."""
        self.last_error = exc
        permanent = isinstance(exc, PermanentError)
        delay, news = self.backoff.failed(str(exc), permanent=permanent)
        self.store.set_meta("last_poll_error", str(exc))
        if permanent:
            logger.log(
                logging.ERROR if news else logging.DEBUG,
                "%s; trying again in %.0f s (or at once after SIGHUP)",
                exc,
                delay,
            )
        else:
            logger.log(
                logging.WARNING if news else logging.INFO,
                "IMAP: %s; reconnecting in %.1f s (attempt %d)",
                exc,
                delay,
                self.backoff.failures,
            )
        self._retry_in(delay)

    def _succeeded(self) -> None:
        self.last_error = None
        failures = self.backoff.succeeded()
        if failures:
            logger.info("IMAP %s works again after %d failed attempt(s)", self.imap.host, failures)
            self.reachable()  # an IDLE thread may be in a long backoff
        self.store.set_meta("last_poll", str(self.clock.time()))
        self.store.set_meta("last_poll_error", "")

    def _connection(self) -> Mailbox:
        if self.mailbox is None:
            if not self.backoff.due():
                raise MailboxError(
                    f"IMAP unreachable ({self.backoff.last_error}); next try in "
                    f"{self.backoff.remaining():.0f} s"
                )
            mailbox = Mailbox(self.imap)
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

    def drop_connection(self) -> None:
        """Abort the round's connection (a test or a watchdog's way to force a reconnect)."""
        with self._lock:
            self._disconnect()

    # -- one batch ------------------------------------------------------------------------------
    def _handle_batch(self, batch: Batch) -> list[int]:
        """Decide every mail of a batch; commit decisions, SMS and checkpoint together.

        The batch comes with headers and MIME structure only; the start of the text is
        fetched for every mail if a rule reads the body, else only for the mail that will
        be forwarded (the SMS shows it) and for gateway replies (the tracker reads them).
        A mail that makes the core raise is logged with its traceback and
        recorded as an error: it never blocks the mail behind it.
        Returns the UIDs forwarded, for ``imap.keyword``.
        """
        now = self.clock.utc()
        entries: list[LedgerEntry] = []
        outbox: list[OutboxItem] = []
        domain = self.config.delivery.message_id_domain
        in_batch: dict[str, str] = {}  # Message-ID → folder/UID forwarded earlier in this batch

        def forwarded_as(message_id: str) -> str | None:
            return in_batch.get(message_id) or self.store.forwarded_as(message_id)

        receipts: list[Receipt] = []
        for mail, decided in self._with_text(batch, now):
            if (request := self._receipt_of(mail)) is not None:
                receipts.append(Receipt(request, Receipts.COPY.value, batch.folder, mail.uid))
                reason = f"the receipt of SMS request {request}: the SMTP server accepted it"
                entries.append(
                    LedgerEntry(mail.uid, mail.message_id or request, SKIP, None, reason)
                )
                logger.info("mail %s: %s", mail.describe(), reason)
                continue
            try:
                result = plan(
                    mail,
                    self.config,
                    now,
                    new_message_id=lambda: new_message_id(domain),
                    forwarded_as=forwarded_as,
                    decision=decided,
                )
            except Exception as exc:
                logger.exception("mail %s could not be processed; skipped", mail.describe())
                reason = f"error: {exc.__class__.__name__}: {exc}"[:300]
                entries.append(LedgerEntry(mail.uid, mail.message_id or "", "error", None, reason))
                continue
            if result.decision.gateway_reply:
                self._record_reply(mail)
            entries.append(result.entry)
            outbox.extend(result.outbox)
            if result.entry.action == FORWARD and mail.message_id:
                in_batch[mail.message_id] = f"{batch.folder}/{mail.uid}"
            # Skipped mail at DEBUG: a backlog of 5 000 must not become 5 000 INFO lines.
            logger.log(
                logging.DEBUG if result.entry.action == SKIP else logging.INFO,
                "mail %s: %s (%s)",
                mail.describe(),
                result.entry.action,
                result.entry.reason,
                extra={
                    "folder": mail.folder,
                    "uid": mail.uid,
                    "message_id": mail.message_id,
                    "rule": result.entry.rule,
                },
            )
        if outbox:
            crashpoints.reach(crashpoints.AFTER_FETCH)
        self.store.record_batch(
            batch.folder,
            batch.uidvalidity,
            entries,
            outbox,
            advance_to=batch.advance_to,
            receipts=receipts,
        )
        if receipts:
            self._tidy.setdefault(batch.folder, []).extend(r.uid for r in receipts)
        if outbox:
            crashpoints.reach(crashpoints.AFTER_COMMIT)
            self._queued = True
            self._on_commit()
        counts = Counter(e.action for e in entries)
        self.observer.batch_decided(counts)
        logger.info(
            "%s: %s",
            batch.folder if self.name == DEFAULT_ACCOUNT else f"{self.name}:{batch.folder}",
            ", ".join(f"{n} {_PAST.get(action, action)}" for action, n in sorted(counts.items()))
            + (f"; {len(outbox)} SMS queued" if outbox else ""),
            extra={"folder": batch.folder},
        )
        return [e.uid for e in entries if e.action == FORWARD]

    def _receipt_of(self, mail: Mail) -> str | None:
        """The request this mail is the copy of, if it is one (checked before any rule)."""
        # The header block alone: parsing each mail of a backlog whole to look for a copy
        # was a third of a catch-up's time (bench_catchup, py-spy).
        values = itertools.chain.from_iterable(mail.head.get_all(header) for header in ID_HEADERS)
        for message_id in own_ids(values, self.config.delivery.message_id_domain):
            if self.store.is_request(message_id):
                return message_id
        return None

    def _with_text(self, batch: Batch, now: datetime) -> list[tuple[Mail, Decision | None]]:
        """The batch's mails, with their text where it is needed, each with the decision made
        on the headers when that decision stands (None: decide again, with the text).

        Without a rule that reads the body, the header-only decision is final for the mail
        that gets no text; the few that will be forwarded (or are gateway replies) are
        decided again once their text is here, since the guards may read it.
        """
        if self.config.ruleset.needs_body:
            return [(self._own(mail), None) for mail in batch.with_text(batch.mails)]
        decided = [(mail, self._header_decision(mail, now)) for mail in map(self._own, batch.mails)]
        wanted = [mail for mail, decision in decided if decision is None or _needs_text(decision)]
        if not wanted:
            return decided
        # with_text gives every mail of the batch (those wanted with their text), less any
        # the server refused to send: those stay out of the ledger and are tried again.
        asked = {mail.uid for mail in wanted}
        decisions = {mail.uid: decision for mail, decision in decided}
        return [
            (self._own(mail), None if mail.uid in asked else decisions[mail.uid])
            for mail in batch.with_text(wanted)
        ]

    def _own(self, mail: Mail) -> Mail:
        """The mail, saying which account it came from (rules may match on ``account``)."""
        if mail.account == self.name:
            return mail
        return dataclasses.replace(mail, account=self.name)

    def _header_decision(self, mail: Mail, now: datetime) -> Decision | None:
        """The rules' decision on the headers alone; None if deciding raised (plan() meets
        the same error with the whole mail, and logs it)."""
        try:
            return self.config.ruleset.decide(mail, now)
        except Exception:
            return None

    def _record_reply(self, mail: Mail) -> None:
        """Hand a gateway reply to the tracker before the checkpoint passes it.

        Recording is idempotent per (folder, UID), so a crash between here and the
        checkpoint commit re-reads the reply without acting on it twice.
        """
        try:
            reply = self.tracker.record(mail)
        except Exception:
            logger.exception("gateway reply %s could not be recorded", mail.describe())
            return
        self.observer.reply_recorded(reply.code.value)

    # -- delivery's questions -------------------------------------------------------------------
    def find_in_sent(self, message_ids: Sequence[str]) -> dict[str, Receipt] | None:
        """Search the Sent folder for each request's Message-ID; None when it cannot.

        The folder is ``delivery.sent_folder``, else the one the server names ``\\Sent``
        (RFC 6154; XLIST on old Gmail; then the usual names). One UID SEARCH per request.
        """
        if not message_ids:
            return {}
        with self._lock:
            try:
                mailbox = self._connection()
                folder = self.config.delivery.sent_folder or self._find_sent(mailbox)
                if folder is None:
                    self._say_once(
                        "no sent folder",
                        "IMAP: the server names no Sent folder, so requests in doubt cannot be "
                        "looked up there; set delivery.sent_folder, or delivery.receipts: copy",
                    )
                    return None
                mailbox.select(folder, readonly=True)
                found: dict[str, Receipt] = {}
                for message_id in message_ids:
                    uids = mailbox.search_message_id(message_id)
                    if uids:
                        found[message_id] = Receipt(
                            message_id, Receipts.SENT_FOLDER.value, folder, max(uids)
                        )
                return found
            except FolderMissing as exc:
                self._say_once("sent folder missing", f"{exc}; check delivery.sent_folder")
                return None
            except MailboxError as exc:
                logger.warning(
                    "IMAP: cannot look for %d request(s) in doubt in the Sent folder: %s",
                    len(message_ids),
                    exc,
                )
                self._disconnect()
                return None

    def _find_sent(self, mailbox: Mailbox) -> str | None:
        if self._sent_folder is None:  # asked once (until a reload): names rarely change
            self._sent_folder = mailbox.find_sent_folder()
            if self._sent_folder is not None:
                logger.info("IMAP: requests in doubt are looked up in %r", self._sent_folder)
        return self._sent_folder

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            logger.error("%s", message)

    def read_states(self, rows: Sequence[OutboxRow]) -> dict[int, ReadState]:
        """Ask IMAP whether each unless_read row's mail is \\Seen; UNKNOWN where it cannot."""
        states: dict[int, ReadState] = {}
        if not rows:
            return states
        by_folder: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_folder.setdefault(row.folder, []).append(row)
        with self._lock:
            try:
                mailbox = self._connection()
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
