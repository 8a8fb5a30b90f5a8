"""Which mail is new: checkpoints per folder, UIDVALIDITY, baselines and batches.

The rules of the game (RFC 3501):
* A UID is meaningful only with its folder's UIDVALIDITY (§2.3.1.1). When it
  changes, every old UID is void: the folder is re-baselined, not re-sent.
* UIDs only grow, so "new" is "UID above the checkpoint"; expunging older
  mail cannot make a handled one look new.
* On the first sight of a folder the mail already there is not forwarded:
  the checkpoint starts at UIDNEXT-1, one command, whatever the folder size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from forwarder.mail import Mail
from forwarder.mailbox import Mailbox
from forwarder.store import Store

logger = logging.getLogger(__name__)

#: New UIDs handled (fetched, decided, committed) per transaction.
BATCH = 200

HandleBatch = Callable[[str, int, Sequence[Mail], int], None]


@dataclass(frozen=True)
class PollResult:
    folder: str
    new: int
    baselined: bool = False


def poll_folder(mailbox: Mailbox, store: Store, folder: str, handle: HandleBatch) -> PollResult:
    """Find mail above the folder's checkpoint and hand it to ``handle`` in UID batches.

    ``handle(folder, uidvalidity, mails, advance_to)`` must commit the decisions
    and the checkpoint together; if it raises, the checkpoint stays put and the
    same mail is read again next time.
    """
    state = mailbox.select(folder)
    checkpoint = store.checkpoint(folder)
    if checkpoint is None or checkpoint.uidvalidity != state.uidvalidity:
        top = state.uidnext - 1 if state.uidnext is not None else mailbox.highest_uid()
        if checkpoint is None:
            logger.info(
                "%s: first start, %d message(s) already there are not forwarded",
                folder,
                state.exists,
            )
        else:
            logger.warning(
                "%s: UIDVALIDITY changed from %d to %d (folder recreated or restored); "
                "re-baselined at UID %d without forwarding its old mail",
                folder, checkpoint.uidvalidity, state.uidvalidity, top,
            )  # fmt: skip
        store.baseline(folder, state.uidvalidity, top)
        return PollResult(folder, 0, baselined=True)
    if state.uidnext is not None and state.uidnext - 1 <= checkpoint.last_uid:
        return PollResult(folder, 0)  # nothing new: one SELECT was enough
    uids = mailbox.uids_after(checkpoint.last_uid)
    for start in range(0, len(uids), BATCH):
        batch = uids[start : start + BATCH]
        mails = list(mailbox.fetch(batch, folder, state.uidvalidity))
        handle(folder, state.uidvalidity, mails, batch[-1])
    return PollResult(folder, len(uids))
