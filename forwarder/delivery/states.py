"""The outbox state machine: the states an SMS request can be in, and the legal moves.

This module is the only place that knows the states' names (the SQL schema aside) and the
only place that says which transitions are legal; ``Store`` enforces ``check`` inside the
transaction that makes each move, so an illegal one raises instead of being written.

::

    pending ──► sending ──► in_doubt ──► sent
       │  ▲        │  ▲        │  │ ▲      │
       │  └────────┘  └────────┘  │ │      │   back to pending: a transient failure, a crash
       │  └───────────────────────┘ │      │   before the dot, a resend (MSG:XXX, a refused
       │                            │      │   SMS after a circuit opened, an unconfirmed
       ▼                            ▼      ▼   in-doubt SMS)
    held · duplicate · cancelled · failed

Why ``in_doubt`` exists at all: between the final dot and the server's 250 a crash leaves
the request accepted or not, and SMTP cannot say which (RFC 1047). The receipts in
``forwarder.delivery.receipts`` find out where the setup allows it.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"  # queued, or waiting: delay, quiet hours, backoff, open circuit
    SENDING = "sending"  # an SMTP transaction is under way; the final dot is not sent yet
    IN_DOUBT = "in_doubt"  # the final dot went out; the 250 has not been seen
    SENT = "sent"  # the server said 250 after the final dot (or a receipt proved it)
    FAILED = "failed"  # a permanent error, or delivery.max_age passed: a person must look
    HELD = "held"  # a limit was full; a summary SMS reports it
    DUPLICATE = "duplicate"  # same sender and subject as an SMS sent recently
    CANCELLED = "cancelled"  # unless_read: the mail was read before the SMS was due


class IllegalTransition(RuntimeError):
    """A move the state machine does not allow: a bug, never a condition to handle."""


P, S, D, T = State.PENDING, State.SENDING, State.IN_DOUBT, State.SENT

#: state → the states it may move to. A state may "move" to itself where a step updates
#: the row without changing what it means (a new reason, one more SMTP attempt).
TRANSITIONS: dict[State, frozenset[State]] = {
    P: frozenset({P, S, State.HELD, State.DUPLICATE, State.CANCELLED, State.FAILED}),
    S: frozenset({S, D, P, State.FAILED}),
    # in_doubt → sending: the server answered the final dot with a 4xx, so it did not take the
    # message and tenacity tries again; → failed: it answered 5xx.
    D: frozenset({D, T, P, S, State.FAILED}),
    T: frozenset({P}),  # resent under a new Message-ID (MSG:XXX, refused while a circuit opened)
    State.FAILED: frozenset(),
    State.HELD: frozenset(),
    State.DUPLICATE: frozenset(),
    State.CANCELLED: frozenset(),
}

#: The request went out, or is going out: what dedup and ``status``'s SMS-today count count.
DELIVERED: frozenset[State] = frozenset({S, D, T})
#: The request reached the final dot: what a gateway reply can answer.
ANSWERABLE: frozenset[State] = frozenset({D, T})
#: States a later identical mail is a duplicate of: it went out, or it was held and summarised.
ORIGINALS: frozenset[State] = DELIVERED | {State.HELD}
#: Waiting for nothing more: no step of forwarder will move these rows again by itself.
FINAL: frozenset[State] = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
#: A summary SMS still on its way (at most one at a time).
UNDER_WAY: frozenset[State] = frozenset({P, S})


def check(current: State | str, new: State | str) -> None:
    """Raise ``IllegalTransition`` unless ``current → new`` is in ``TRANSITIONS``."""
    src, dst = State(current), State(new)
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(f"an outbox row cannot move from {src} to {dst}")
