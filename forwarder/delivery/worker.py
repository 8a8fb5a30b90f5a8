"""Delivery: send what the outbox holds, after the delivery policy had its say.

``Delivery.flush(now)`` takes the rows that are due and, for each one, asks in this order:
unless_read (is the mail \\Seen now? — asked of IMAP through the ``read_states`` port, so
this class never touches a mailbox) → dedup → limits → the reply tracker's ``hold_reason``
(blocked recipient, open circuit) → SMTP. The pure answers come from
``forwarder.delivery.policy``; every move of a row is one of the store's named transitions.

``recover()`` runs once at start: a row a crash left ``sending`` never reached the final dot
and goes again; one left ``in_doubt`` is settled by ``delivery.on_doubt``.
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
from forwarder.delivery.sender import Sender
from forwarder.delivery.states import State
from forwarder.gateway.request import new_message_id
from forwarder.gateway.tracker import ReplyTracker
from forwarder.records import OutboxItem, OutboxRow
from forwarder.store import Store

logger = logging.getLogger(__name__)

#: How a due row ended up in one flush; ``paused``: the tracker holds it (circuit, blocked).
Settled = State | Action | str
ReadStates = Callable[[Sequence[OutboxRow]], dict[int, ReadState]]


def _no_imap(rows: Sequence[OutboxRow]) -> dict[int, ReadState]:
    return {}


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
        stopping: threading.Event | None = None,
        progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.store = store
        self.tracker = tracker
        self.clock = clock
        self.read_states = read_states
        self._stopping = stopping or threading.Event()
        self._progress = progress  # called per row: a long burst is progress, not a hang
        self.sender = self._new_sender(config)

    def _new_sender(self, config: Config) -> Sender:
        return Sender(
            config.smtp, config.gateway, self.store, attempts=config.delivery.retry_attempts
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
        rows wait with it.
        """
        self.tracker.tick()
        delivery = self.config.delivery
        sender = self.sender
        sender.attempts = delivery.retry_attempts  # the Sender outlives a reload
        sender.backoff = Policy(
            "smtp retry", first=delivery.retry_backoff, cap=delivery.retry_backoff_max
        )
        if sender.halted is not None and sender.config is not self.config.smtp:
            # Reloaded since the halt with equal smtp settings (so the Sender was kept):
            # the operator says the cause is fixed (e.g. on the server side); try again.
            logger.info("SMTP settings reloaded: sending resumes after '%s'", sender.halted)
            sender.resume(self.config.smtp)
        self._expire(now)
        self.store.prune_sends(now - 2 * DAY)
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
        """A send cut off after the final dot, during this run: apply delivery.on_doubt."""
        if self.config.delivery.on_doubt != "resend":
            logger.error(
                "SMS %s for %s is in doubt and will not be sent again (delivery.on_doubt: "
                "alert); check your phone, and 'forwarder status'",
                row.message_id,
                row.source_message_id,
            )
            return
        wait = self.sender.backoff.delay(1)
        logger.warning(
            "SMS %s for %s is in doubt; sending it again in %.0fs because delivery.on_doubt is "
            "resend (the same Message-ID; a second SMS is possible)",
            row.message_id,
            row.source_message_id,
            wait,
        )
        self.store.retry_later(
            row.id,
            error="connection lost after the final dot; resent (delivery.on_doubt: resend)",
            not_before=self.clock() + wait,
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
        """After a crash: 'sending' never reached the final dot → resend; 'in_doubt' per config.

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
            if self.config.delivery.on_doubt == "resend":
                logger.warning(
                    "SMS %s may have been sent already (connection lost after the final dot); "
                    "sending again because delivery.on_doubt is resend",
                    row.message_id,
                )
                self.store.wait(row.id)
            else:
                logger.error(
                    "SMS %s for %s may or may not have been sent (connection lost after the final "
                    "dot); not resent because delivery.on_doubt is alert",
                    row.message_id,
                    row.source_message_id,
                )
