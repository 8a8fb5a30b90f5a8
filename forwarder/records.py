"""The values that travel between the pure core and the state file.

The pipeline makes ``LedgerEntry`` and ``OutboxItem`` values, the store writes them and
reads ``OutboxRow`` values back for delivery and the reply tracker. They live here, not in
``forwarder.store``, so that the core can make and read them without importing SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass

from forwarder.delivery.states import State


@dataclass(frozen=True)
class Checkpoint:
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class LedgerEntry:
    """The ledger's line for one mail looked at: what was decided and why.

    Written in the same transaction as the checkpoint that covers the mail, so the ledger
    and the checkpoint always agree (``Store.record_batch``).
    """

    uid: int
    message_id: str
    action: str
    rule: str | None
    reason: str


@dataclass(frozen=True)
class OutboxItem:
    """An SMS to send, as the pipeline hands it to the store (no secrets in here)."""

    uid: int
    source_message_id: str
    rule: str | None
    recipient: str
    to_addr: str
    sender: str
    subject_masked: str
    text: str
    message_id: str
    not_before: float
    unless_read: bool = False
    dedup_key: str | None = None
    state: State = State.PENDING
    mail_from: str = ""
    mail_subject: str = ""
    kind: str = "mail"


@dataclass(frozen=True)
class OutboxRow:
    """An outbox row as the store reads it back (no secrets in here either)."""

    id: int
    folder: str
    uidvalidity: int
    uid: int
    source_message_id: str
    rule: str | None
    recipient: str
    to_addr: str
    sender: str
    subject_masked: str
    text: str
    message_id: str
    state: State
    created_at: float
    updated_at: float
    not_before: float
    unless_read: bool
    attempts: int
    last_error: str | None
    sent_at: float | None
    dedup_key: str | None
    previous_ids: str = ""
    kind: str = "mail"
    mail_from: str = ""
    mail_subject: str = ""
    reason: str | None = None
    due_at: float = 0.0
    retries: int = 0
    attempted_at: float | None = None
    duplicate_of: int | None = None
    summary_id: int | None = None
    account: str = "default"
    proof: str = ""  # what the last attempt that reached the final dot can be proved by


@dataclass(frozen=True)
class Receipt:
    """Evidence that the SMTP server accepted a request: its copy, or its Sent-folder entry.

    ``message_id`` is the request's; ``how`` a ``delivery.receipts.Receipts`` value;
    ``folder``/``uid`` where it was found.
    """

    message_id: str
    how: str
    folder: str = ""
    uid: int = 0
