"""Delivery: send what the outbox holds, after the delivery policy had its say.

``Delivery.flush(now)`` takes the rows that are due and, for each one, asks in this order:
unless_read (is the mail \\Seen now? — asked of IMAP through the ``read_states`` port, so
this class never touches a mailbox) → dedup → limits → the reply tracker's ``hold_reason``
(blocked recipient, open circuit) → SMTP. The pure answers come from
``forwarder.delivery.policy``; every move of a row is one of the store's named transitions.

``recover()`` runs once at start: a row a crash left ``sending`` never reached the final dot
and goes again; one left ``in_doubt`` opens a *doubt*. Every flush then settles the open
doubts first (``_settle_doubts``): a receipt (``forwarder.delivery.receipts``: the request's
copy that intake recorded, or its entry in the Sent folder, asked of IMAP through the
``find_in_sent`` port) marks the row sent; none possible, or none within
``delivery.receipt_wait``, and ``delivery.on_doubt`` decides: resend (default) or alert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from forwarder.backoff import Policy
from forwarder.clock import Clock
from forwarder.config import Config
from forwarder.delivery.policy import (
    DAY,
    Action,
    HeldMail,
    ReadState,
    compose_summary,
    compose_summary_text,
    give_up_before,
    limit_reason,
    read_verdict,
    summary_due,
    verdict,
)
from forwarder.delivery.receipts import DoubtAction, Receipts, doubt_ruling
from forwarder.delivery.sender import Sender
from forwarder.delivery.states import State
from forwarder.gateway.request import new_message_id
from forwarder.gateway.tracker import ReplyTracker
from forwarder.records import OutboxItem, OutboxRow, Receipt
from forwarder.store import StateUnwritable, Store

logger = logging.getLogger(__name__)

#: How a due row ended up in one flush; ``paused``: the tracker holds it (circuit, blocked).
Settled = State | Action | str
ReadStates = Callable[[Sequence[OutboxRow]], dict[int, ReadState]]
#: Message-IDs → the receipts found for them in the Sent folder; None: could not search.
FindInSent = Callable[[Sequence[str]], "dict[str, Receipt] | None"]

#: Receipts are kept this long: a doubt is settled within minutes, a late copy within days.
RECEIPT_RETENTION = 30 * DAY


def _no_imap(rows: Sequence[OutboxRow]) -> dict[int, ReadState]:
    return {}


def _no_sent_folder(message_ids: Sequence[str]) -> dict[str, Receipt] | None:
    return None


def _no_retry(delay: float) -> None:
    return None


def _never_looked() -> float | None:
    return None


class Delivery:
    """Sends due outbox rows through one ``Sender``; owns the sender across reloads."""

    def __init__(
        self,
        config: Config,
        store: Store,
        tracker: ReplyTracker,
        *,
        clock: Clock,
        read_states: ReadStates = _no_imap,
        find_in_sent: FindInSent = _no_sent_folder,
        retry_in: Callable[[float], None] = _no_retry,
        looked_at: Callable[[], float | None] = _never_looked,
        ask_look: Callable[[], None] = lambda: None,
        stopping: threading.Event | None = None,
        progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.store = store
        self.tracker = tracker
        self.clock = clock
        self.read_states = read_states
        self.find_in_sent = find_in_sent
        self._retry_in = retry_in  # a round when a doubt's receipt_wait ends
        # When the latest complete look at every account's folders began (copy receipts),
        # and a way to ask for one: a doubt is only ruled "no receipt" after such a look.
        self.looked_at = looked_at
        self.ask_look = ask_look
        self._stopping = stopping or threading.Event()
        self._cut_off: set[int] = set()  # rows whose doubt began in this run (server failed)
        self._scheduled: set[tuple[int, float]] = set()  # doubts whose wait end has a round
        self._looked_for: set[tuple[int, float]] = set()  # doubts that asked for a look
        self.unwritable: str | None = None  # why the state file cannot be written, if so
        self._progress = progress  # called per row: a long burst is progress, not a hang
        self.sender = self._new_sender(config)

    def _new_sender(self, config: Config) -> Sender:
        return Sender(
            config.smtp,
            config.gateway,
            self.store,
            attempts=config.delivery.retry_attempts,
            receipts=config.receipts,
            copy_to=config.receipt_to,
        )

    def reconfigure(self, fresh: Config) -> None:
        """A reloaded config: a new Sender when the SMTP side or the gateway changed."""
        if fresh.smtp != self.config.smtp or fresh.gateway != self.config.gateway:
            self.sender.close()
            self.sender = self._new_sender(fresh)
        self.config = fresh

    def close(self) -> None:
        self.sender.close()

    # -- one flush ------------------------------------------------------------------------------
    def flush(self, now: float) -> dict[Settled, int]:
        """Send what is due at ``now``; returns how many rows ended how (for logs and tests).

        The first transient SMTP failure ends the burst: the server is backing off, the other
        rows wait with it. A state file that cannot be written ends the flush: no request
        goes out whose step could not be committed first (the next flush tries again).
        """
        try:
            settled = self._flush(now)
        except StateUnwritable as exc:
            self.sender.close()
            if self.unwritable is None:
                logger.error(
                    "%s: no SMS is sent while its progress cannot be recorded (a crash could "
                    "then send it twice); sending goes on once there is room again",
                    exc,
                )
            self.unwritable = str(exc)
            return {}
        if self.unwritable is not None:
            self.unwritable = None
            logger.warning("the state file can be written again: sending goes on")
        return settled

    def _flush(self, now: float) -> dict[Settled, int]:
        self.tracker.tick()
        delivery = self.config.delivery
        sender = self.sender
        sender.attempts = delivery.retry_attempts  # the Sender outlives a reload
        sender.backoff = Policy(
            "smtp retry", first=delivery.retry_backoff, cap=delivery.retry_backoff_max
        )
        sender.receipts, sender.copy_to = self.config.receipts, self.config.receipt_to
        if sender.halted is not None and sender.config is not self.config.smtp:
            # Reloaded since the halt with equal smtp settings (so the Sender was kept):
            # the operator says the cause is fixed (e.g. on the server side); try again.
            logger.info("SMTP settings reloaded: sending resumes after '%s'", sender.halted)
            sender.resume(self.config.smtp)
        self._expire(now)
        self.store.prune_sends(now - 2 * DAY)
        self.store.prune_receipts(now - RECEIPT_RETENTION)
        for row in self.store.outbox_in(State.SENDING):
            # Nothing is in flight between sends: a row still 'sending' is one whose next
            # step could not be committed (a full disk); its dot never went out.
            self.store.wait(row.id)
        self._settle_doubts(now)
        settled: dict[Settled, int] = {}
        if not sender.ready(now):
            logger.debug("SMTP not tried this round: %s", sender.halted or "backing off")
            return settled
        self._queue_summary(now)
        seen: set[int] = set()
        try:
            while not self._stopping.is_set() and sender.ready(self.clock()):
                # In batches, so a storm of thousands is settled in one round; rows left
                # pending (circuit open, waiting for IMAP) are not taken twice.
                due = [r for r in self.store.due(now, limit=len(seen) + 100) if r.id not in seen]
                if not due:
                    break
                asked = [r for r in due if r.unless_read and r.kind == "mail"]
                reads = self.read_states(asked) if asked else {}
                for row in due:
                    if self._stopping.is_set() or not sender.ready(self.clock()):
                        break
                    seen.add(row.id)
                    self._progress()
                    what = self._deliver(row, reads.get(row.id, ReadState.UNKNOWN))
                    settled[what] = settled.get(what, 0) + 1
        finally:
            sender.close()
        if settled.get(State.HELD):
            full = limit_reason(self.store.send_counts(), self.config.limits)
            logger.warning(
                "%d SMS held back (%s); one summary SMS will report them when the limits allow",
                settled[State.HELD],
                full or "limits",
            )
        return settled

    def _deliver(self, row: OutboxRow, read: ReadState) -> Settled:
        """Decide about one due row and act; returns how it ended."""
        now = self.clock()
        if row.unless_read and row.kind == "mail":
            ruling = read_verdict(
                read, due_at=row.due_at, now=now, wait=self.config.delivery.unless_read_wait
            )
            if ruling.action is Action.CANCEL:
                self.store.settle(row.id, State.CANCELLED, ruling.reason)
                logger.info(
                    "SMS %s for %s cancelled: %s",
                    row.message_id,
                    row.source_message_id,
                    ruling.reason,
                )
                return State.CANCELLED
            if ruling.action is Action.WAIT:
                if row.reason != ruling.reason:
                    self.store.wait(row.id, reason=ruling.reason)
                    logger.info(
                        "SMS %s for %s: %s", row.message_id, row.source_message_id, ruling.reason
                    )
                return Action.WAIT
            if read is not ReadState.UNSEEN:
                logger.warning(
                    "SMS %s for %s: %s", row.message_id, row.source_message_id, ruling.reason
                )
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
            self.store.settle(
                row.id, State.DUPLICATE, decided.reason, duplicate_of=decided.original
            )
            logger.info(
                "SMS %s for %s not sent: %s", row.message_id, row.source_message_id, decided.reason
            )
            return State.DUPLICATE
        if decided.action is Action.HOLD:
            self.store.settle(row.id, State.HELD, decided.reason)
            logger.info(
                "SMS %s for %s held: %s", row.message_id, row.source_message_id, decided.reason
            )
            return State.HELD
        if decided.action is Action.WAIT:
            return Action.WAIT
        reason = self.tracker.hold_reason(row)  # last: it may pick this row as the probe
        if reason is not None:
            logger.debug("SMS %s held: %s", row.message_id, reason)
            return "paused"
        outcome = self.sender.send(row)
        if outcome is State.IN_DOUBT:
            self._after_doubt(row)
        return outcome

    def _after_doubt(self, row: OutboxRow) -> None:
        """A send cut off after the final dot, during this run: its doubt is open (the
        sender opened it); settle it now if no receipt can come, else when one does."""
        self._cut_off.add(row.id)
        self._settle_doubts(self.clock(), only=row.id)

    # -- doubts ---------------------------------------------------------------------------------
    def _settle_doubts(self, now: float, *, only: int | None = None) -> None:
        """Settle what can be settled of the rows in doubt: by a receipt, or by on_doubt."""
        rows = [r for r in self.store.outbox_in(State.IN_DOUBT) if only in (None, r.id)]
        if not rows:
            return
        doubts = self.store.open_doubts()
        if only is None and any(self.store.open_doubt(r.id) for r in rows if r.id not in doubts):
            # Left in_doubt without a doubt: the commit of sent (or of the doubt) failed
            # earlier in this run, e.g. on a full disk. Nothing is in flight during a flush.
            doubts = self.store.open_doubts()
        # Read before the receipts: a look that ends in between only adds receipts.
        copies_looked = self.looked_at()
        found = self.store.receipts_for(r.message_id for r in rows)
        searched: float | None = None  # when the Sent folder was searched, if it could be
        asked = [
            r.message_id
            for r in rows
            if r.id in doubts
            and r.message_id not in found
            and doubts[r.id].proof == Receipts.SENT_FOLDER
        ]
        if asked:
            began = self.clock()
            answer = self.find_in_sent(asked)
            if answer is not None:
                searched = began
            for message_id, receipt in (answer or {}).items():
                self.store.add_receipt(receipt)
                found[message_id] = receipt.how
        wait = self.config.delivery.receipt_wait
        imap_wait = wait  # as long again for IMAP to look, then ruled on without a look
        asked_look = False
        for row in rows:
            doubt, how = doubts.get(row.id), found.get(row.message_id)
            if doubt is None:
                if how is not None:  # a late receipt for one alerted about earlier
                    self._confirmed(row, how)
                continue
            ruling = doubt_ruling(
                proof=doubt.proof,
                receipt=how is not None,
                began_at=doubt.began_at,
                now=now,
                wait=wait,
                on_doubt=self.config.delivery.on_doubt,
                looked_at=searched if doubt.proof == Receipts.SENT_FOLDER else copies_looked,
                imap_wait=imap_wait,
            )
            if ruling.action is DoubtAction.CONFIRMED:
                self._confirmed(row, how or doubt.proof)
            elif ruling.action is DoubtAction.RESEND:
                self._resend(row, ruling.reason)
            elif ruling.action is DoubtAction.ALERT:
                self.store.settle_doubt(row.id, "alerted")
                logger.error(
                    "SMS %s for %s is in doubt and will not be sent again (delivery.on_doubt: "
                    "alert): %s; check your phone, and 'forwarder status'",
                    row.message_id,
                    row.source_message_id,
                    ruling.reason,
                )
            elif ruling.action is DoubtAction.LOOK:
                # Asked once per doubt: a round that cannot look (IMAP down, backing off)
                # wakes delivery too, and asking again then would spin. The polls go on.
                if (row.id, doubt.began_at) not in self._looked_for:
                    self._looked_for.add((row.id, doubt.began_at))
                    logger.debug("SMS %s: %s", row.message_id, ruling.reason)
                    if not asked_look:
                        asked_look = True
                        self.ask_look()
                    self._retry_in(max(0.0, doubt.began_at + wait + imap_wait - now))
            else:  # WAIT: a round when the wait ends, asked for once per doubt
                if only is not None:  # said once: when the doubt began
                    logger.warning(
                        "SMS %s for %s: the connection was lost after the final dot; %s",
                        row.message_id,
                        row.source_message_id,
                        ruling.reason,
                    )
                if (row.id, doubt.began_at) not in self._scheduled:
                    self._scheduled.add((row.id, doubt.began_at))
                    self._retry_in(max(0.0, doubt.began_at + wait - now))

    def _confirmed(self, row: OutboxRow, how: str) -> None:
        self._cut_off.discard(row.id)
        self.store.mark_sent(row.id, how=f"in doubt, then confirmed by its receipt ({how})")
        logger.info(
            "SMS %s for %s did get through: its receipt (%s) was found; not sent again (%s)",
            row.message_id,
            row.source_message_id,
            how,
            self._doubt_tally(),
        )

    def _resend(self, row: OutboxRow, reason: str) -> None:
        """Back to pending, the same Message-ID: after a cut-off in this run the server just
        failed, so the usual backoff first; after a restart at once."""
        if row.id in self._cut_off:
            self._cut_off.discard(row.id)
            wait = self.sender.backoff.delay(1)
            self.store.retry_later(row.id, error=reason, not_before=self.clock() + wait)
        else:
            wait = 0.0
            self.store.wait(row.id, reason=reason)
        logger.warning(
            "SMS %s for %s may or may not have been sent: %s; sending it again in %.0fs (%s)",
            row.message_id,
            row.source_message_id,
            reason,
            wait,
            self._doubt_tally(),
        )

    def _doubt_tally(self) -> str:
        counts = self.store.doubt_counts()
        return (
            f"in-doubt SMS so far: {counts.get('receipt', 0)} confirmed by a receipt, "
            f"{counts.get('resent', 0)} resent without one, {counts.get('alerted', 0)} alerted"
        )

    def _expire(self, now: float) -> None:
        """Pending SMS older than delivery.max_age (counted from when they were due) fail."""
        max_age = self.config.delivery.max_age
        reason = f"not delivered within delivery.max_age ({max_age / 3600:g} h) of being due"
        for row in self.store.expire(give_up_before(now, max_age), reason):
            logger.error(
                "SMS %s for %s given up: %s; last error: %s",
                row.message_id,
                row.source_message_id,
                reason,
                row.last_error or row.reason or "none",
            )

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

    def queue_notice(self, text: str, *, about: str) -> list[int]:
        """Queue an SMS of forwarder's own (a self-alert) to every recipient, through the
        normal outbox: durable, limited, subject to the circuit like any other SMS."""
        now = self.clock()
        domain = self.config.delivery.message_id_domain
        fitted = compose_summary_text(text, self.config.sms)
        ids = []
        for request in self.config.gateway.requests():
            item = OutboxItem(
                uid=0,
                source_message_id=f"({about})",
                rule=None,
                recipient=request.recipient,
                to_addr=request.to,
                sender=self.config.gateway.sender,
                subject_masked=request.masked_subject,
                text=fitted,
                message_id=new_message_id(domain),
                not_before=now,
            )
            ids.append(self.store.add_summary(item, kind="alert"))
        logger.warning("self-alert SMS queued (%s): %s", about, fitted)
        return ids

    # -- after a crash --------------------------------------------------------------------------
    def recover(self) -> None:
        """After a crash: 'sending' never reached the final dot → resend; 'in_doubt' opens a
        doubt, which the flushes settle (a receipt, or delivery.on_doubt).

        Rows backing off after a transient failure are made due again: a restart is often
        the fix (the operator changed something), so they are tried at once.
        """
        retried = self.store.reset_backoff()
        if retried:
            logger.info("%d SMS waiting to retry are due again after the restart", retried)
        for row in self.store.outbox_in(State.SENDING):
            logger.warning(
                "SMS %s was interrupted before the final dot; it will be sent again", row.message_id
            )
            self.store.wait(row.id)
        for row in self.store.outbox_in(State.IN_DOUBT):
            if not self.store.open_doubt(row.id):
                if row.id not in self.store.open_doubts():
                    logger.error(
                        "SMS %s for %s is still in doubt (delivery.on_doubt: alert); check your "
                        "phone, and 'forwarder status'",
                        row.message_id,
                        row.source_message_id,
                    )
                continue
            wait = self.config.delivery.receipt_wait
            logger.warning(
                "SMS %s for %s may or may not have been sent (a crash between the final dot "
                "and the 250); %s",
                row.message_id,
                row.source_message_id,
                f"looking for its receipt ({row.proof}) for up to {wait:g}s"
                if row.proof
                else f"no receipt can tell; delivery.on_doubt: {self.config.delivery.on_doubt}",
            )
