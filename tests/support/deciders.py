"""A ``handle`` for ``poll_folder`` that decides like a tiny daemon: for the IMAP-side tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from forwarder.imap.checkpoints import Batch
from forwarder.mail import Mail
from forwarder.records import LedgerEntry
from forwarder.store import Store


class Decider:
    """A ``handle`` for poll_folder: mail whose subject says urgent is forwarded, and only
    its text is fetched; every mail is recorded with the checkpoint, as the daemon does."""

    def __init__(self, store: Store, forwards: Callable[[Mail], bool] | None = None) -> None:
        self.store = store
        self.forwards = forwards or (lambda mail: "urgent" in mail.subject.lower())
        self.batches: list[Batch] = []
        self.texts: list[Mail] = []

    def __call__(self, batch: Batch) -> Sequence[int]:
        self.batches.append(batch)
        urgent = [m for m in batch.mails if self.forwards(m)]
        mails = batch.with_text(urgent) if urgent else batch.mails
        forwarded = {m.uid for m in urgent}
        self.texts += [m for m in mails if m.uid in forwarded]
        handled = [
            LedgerEntry(
                m.uid, m.message_id, "forward" if m.uid in forwarded else "skip", None, "test"
            )
            for m in mails
        ]
        self.store.record_batch(
            batch.folder, batch.uidvalidity, handled, [], advance_to=batch.advance_to
        )
        return sorted(forwarded)

    @property
    def uids(self) -> list[int]:
        return [m.uid for b in self.batches for m in b.mails]
