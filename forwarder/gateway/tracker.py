"""The reply tracker: records every gateway answer, ties it to its SMS, and acts on it.

What each code does (issue: "every gateway error is caught, tied to its SMS, and acted on"):

* ``AUTH``, ``FORBIDDEN``, ``NO LIST``: every further send would fail the same way, so the
  circuit opens: nothing is sent, important mail stays queued in the outbox, one error is
  logged (not one per mail). After ``gateway.pause`` — or at once after a restart or a reload,
  when the user has probably fixed the cause — one *probe* SMS goes out. If no error answers
  it within ``gateway.probe_wait`` the circuit closes and the queue drains; an error re-opens it.
* ``BANNED``: the recipient of the SMS it answers is blocked until ``forwarder unblock``.
* ``MSG:XXX``: recorded; that SMS is sent once more after ``MSG_RESEND_DELAY`` under a new
  Message-ID, unless it was already resent (so a repeating code does not loop).
* ``OK``/``UNKNOWN``: recorded (UNKNOWN also logged as a warning, with its text).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from forwarder.delivery.states import State
from forwarder.gateway.replies import (
    GatewayReply,
    ReplyCode,
    SentRequest,
    explain,
    parse_reply,
    tie_reply,
)
from forwarder.mail import Mail
from forwarder.records import OutboxRow
from forwarder.store import Store

logger = logging.getLogger(__name__)

#: Replies are kept this long (issue 7: 90 days).
REPLY_RETENTION = 90 * 86400.0
#: Requests older than this are not candidates for tying a reply by text or time.
TIE_WINDOW = 2 * 86400.0
#: MSG:XXX: wait this long before the one resend.
MSG_RESEND_DELAY = 600.0

CIRCUIT_CODES = frozenset({ReplyCode.AUTH, ReplyCode.FORBIDDEN, ReplyCode.NO_LIST})


class ReplyTracker:
    def __init__(
        self,
        store: Store,
        *,
        pause: float,
        probe_wait: float,
        new_message_id: Callable[[], str],
        scrub: Callable[[str], str] = lambda text: text,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.pause = pause
        self.probe_wait = probe_wait
        self.new_message_id = new_message_id
        self.scrub = scrub  # masks known secret values: line-based masking can miss a wrapped one
        self.clock = clock

    # -- replies in -----------------------------------------------------------------------------
    def record(self, mail: Mail) -> GatewayReply:
        """Parse, tie, store and act on one gateway reply; idempotent per (folder, UID)."""
        reply = parse_reply(mail)
        reply = dataclasses.replace(reply, detail=self.scrub(reply.detail))
        now = self.clock()
        requests = [
            SentRequest(
                message_id=row["message_id"],
                sent_at=datetime.fromtimestamp(row["sent_at"] or row["updated_at"], UTC),
                subject=row["subject_masked"],
                text=row["text"],
                answered=bool(row["answered"]),
            )
            for row in self.store.sent_requests(since=now - TIE_WINDOW)
        ]
        tie = tie_reply(mail, requests)
        received = mail.internal_date or mail.date
        received_at = received.timestamp() if received is not None else now
        fresh = self.store.add_reply(
            mail.folder,
            mail.uidvalidity,
            mail.uid,
            code=reply.code.value,
            msg_code=reply.msg_code,
            detail=reply.detail,
            request_message_id=tie.message_id,
            tie=tie.how,
            received_at=received_at,
            account=mail.account,
        )
        row = self.store.outbox_by_message_id(tie.message_id) if tie.message_id else None
        source = row.source_message_id if row else "an unknown SMS"
        logger.log(
            logging.INFO if reply.code is ReplyCode.OK else logging.WARNING,
            "gateway reply %s for %s (SMS %s, tied by %s): %s",
            reply.label(),
            source,
            tie.message_id or "?",
            tie.how,
            reply.detail,
        )
        if fresh:
            self._act(reply, row)
        return reply

    def _act(self, reply: GatewayReply, row: OutboxRow | None) -> None:
        now = self.clock()
        circuit = self.store.circuit()
        if reply.code in CIRCUIT_CODES:
            if circuit is None or circuit.code != reply.label() or circuit.probe_id:
                logger.error(
                    "gateway said %s: %s. Sending is paused; queued SMS wait, and one probe "
                    "goes out in %ds (or at once after a restart or reload)",
                    reply.label(),
                    explain(reply.code),
                    int(self.pause),
                )
            self.store.open_circuit(reply.label(), reply.detail, probe_at=now + self.pause)
            if row is not None and row.state is State.SENT:
                # The gateway refused this one: it must go again once the circuit closes.
                self.store.resend_as(row.id, self.new_message_id(), not_before=now)
        elif reply.code is ReplyCode.BANNED:
            if row is None:
                logger.error(
                    "gateway said BANNED but the reply names no SMS we know; nothing blocked"
                )
            else:
                self.store.block(row.recipient, f"BANNED reply to {row.message_id}")
                logger.error(
                    "gateway said BANNED: %s is blocked; no SMS will go to it until "
                    "'forwarder unblock %s'",
                    row.recipient,
                    row.recipient,
                )
        elif reply.code is ReplyCode.MSG:
            if row is not None and not row.previous_ids:
                self.store.resend_as(
                    row.id, self.new_message_id(), not_before=now + MSG_RESEND_DELAY
                )
                logger.warning(
                    "gateway said %s for %s; it will be sent once more in %ds",
                    reply.label(),
                    row.source_message_id,
                    int(MSG_RESEND_DELAY),
                )
            elif row is not None:
                logger.error(
                    "gateway said %s again for %s; not resent: %s",
                    reply.label(),
                    row.source_message_id,
                    explain(reply.code),
                )
        elif reply.code is ReplyCode.OK and circuit and row and circuit.probe_id == row.message_id:
            self._close("the gateway accepted the probe SMS")

    # -- sends out ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Once a round: close a circuit whose probe went unanswered, prune old replies."""
        now = self.clock()
        circuit = self.store.circuit()
        if circuit and circuit.probe_id and circuit.probe_sent is not None:
            probe = self.store.outbox_by_message_id(circuit.probe_id)
            if probe is not None and probe.state in (State.FAILED, State.PENDING):
                self.store.set_probe(None)  # the probe never reached the gateway: pick another
            elif now >= circuit.probe_sent + self.probe_wait:
                self._close(f"no error answered the probe SMS within {int(self.probe_wait)}s")
        self.store.prune_replies(now - REPLY_RETENTION)

    def hold_reason(self, row: OutboxRow) -> str | None:
        """Why ``row`` must not be sent now, or None. May make ``row`` the circuit's probe."""
        blocked = self.store.blocked()
        if row.recipient in blocked:
            return f"recipient {row.recipient} is blocked ({blocked[row.recipient][1]})"
        circuit = self.store.circuit()
        if circuit is None:
            return None
        if circuit.probe_id is None and self.clock() >= circuit.probe_at:
            self.store.set_probe(row.message_id)
            logger.warning("circuit open (%s): sending %s as a probe", circuit.code, row.message_id)
            return None
        return f"sending paused: the gateway said {circuit.code}"

    def probe_soon(self) -> None:
        """After a restart or reload the user may have fixed the cause: probe at once."""
        circuit = self.store.circuit()
        if circuit is not None and circuit.probe_id is None:
            self.store.set_probe(None, probe_at=self.clock())

    def _close(self, why: str) -> None:
        circuit = self.store.circuit()
        self.store.close_circuit()
        if circuit is not None:
            logger.warning("circuit closed (%s: %s); queued SMS go out now", circuit.code, why)
