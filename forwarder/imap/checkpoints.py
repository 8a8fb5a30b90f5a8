"""Which mail is new: checkpoints per folder, UIDVALIDITY, baselines, late arrivals, batches.

The rules of the game (RFC 3501):
* A UID is meaningful only with its folder's UIDVALIDITY (§2.3.1.1). When it
  changes, every old UID is void: the folder is re-baselined, not re-sent.
* UIDs only grow, so "new" is "UID above the checkpoint"; expunging or moving
  older mail away cannot make a handled one look new.
* On the first sight of a folder the mail already there is not forwarded:
  the checkpoint starts at UIDNEXT-1, one command, whatever the folder size.
* A server may make a UID visible after a higher one (parallel deliveries on a
  cluster). So the last ``LATE_WINDOW`` UIDs below the checkpoint (and all the
  UIDs its latest advance jumped over, after a burst) are searched
  again, and any the ``handled`` ledger does not know is handled late: on every
  search for new mail (same command) and, when nothing is new, on the
  safety-net poll (``check_late``). Nothing at or below the folder's baseline is
  ever looked at again.
* A server may refuse, for good, to FETCH one particular message (Gmail, Yahoo and
  Exchange do). The batch is halved until that mail stands alone, and it is left
  out: the mail behind it goes on, and, absent from the ledger, it is tried again
  by the late-arrival search while it is among the last ``LATE_WINDOW`` UIDs.

Each batch of UIDs costs one FETCH of summaries: of a large batch, only the size and
the header fields the rules and guards read (``reads``, from ``RuleSet.reads``); of a few
UIDs, or without ``reads``, the size, flags, BODYSTRUCTURE and whole header. The caller
then asks for the rest of the mails it needs (``Batch.with_text``), so a header-only rule
set reads no body, nor any header field it does not use, of the mail it skips.

No server-side SEARCH narrows what is fetched beyond the UID range (exact everywhere).
The rules' conditions are substrings, globs and regexes of decoded, casefolded header
text: SEARCH SUBJECT/FROM/HEADER match words, not substrings, on Gmail and on servers with
a full-text-search plugin, and decode RFC 2047 and 8-bit headers their own way, so a
prefilter built from them could drop mail a rule forwards. The conditions that would be
exact (SINCE, flags) are not ones the rules have; and with only the fields the rules read
fetched, a mail skipped costs a few hundred bytes.

A SEARCH may *order* a backlog, though. When more new mail than one batch waits (after an
outage), the mail the server finds for the forward rules' words (``RuleSet.likely``) is
decided first, in batches that record it without moving the checkpoint, and its SMS leave
while the rest is read; then every other new mail is decided in UID order, as always. What
the SEARCH misses is only decided later, never skipped: the second pass reads every UID
above the checkpoint that the ledger does not hold (a crash between the passes resumes
there too). A server that refuses the SEARCH is read in order; one whose SEARCH breaks the
connection (a timeout) makes ``LikelySearchFailed``, and the caller reads in order from
then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from forwarder.imap.connection import CommandRefused, FolderState, Mailbox, MailboxError, Summary
from forwarder.mail import Likely, Mail, Reads
from forwarder.store import Store

logger = logging.getLogger(__name__)

#: New UIDs handled (fetched, decided, committed) per transaction.
BATCH = 200

#: A backlog's likely mail: how many make the first batch (the rest follow in BATCHes).
FIRST_FEW = 10

#: UIDs below the checkpoint searched again for mail that became visible late.
LATE_WINDOW = 100

#: Meta key prefix: per folder, "uidvalidity:uid" at or below which nothing is re-examined.
_FLOOR_KEY = "late_floor:"
_FROM_KEY = "late_from:"  # the checkpoint before its latest advance


class LikelySearchFailed(MailboxError):
    """The SEARCH for a backlog's likely mail broke the connection: read in order instead."""


@dataclass
class Batch:
    """Mails of one folder to decide together, committed with one checkpoint move."""

    folder: str
    uidvalidity: int
    mails: list[Mail]  # what the rules read (header fields, skeleton); no body
    advance_to: int | None  # None for late arrivals below the checkpoint
    mailbox: Mailbox = field(repr=False)
    _summaries: dict[int, Summary] = field(default_factory=dict, repr=False)

    def with_text(self, wanted: Sequence[Mail]) -> list[Mail]:
        """All mails of the batch, those in ``wanted`` now whole: with their whole header,
        flags, date and MIME skeleton, and the start of their text.

        Call it for every mail that may be forwarded, and for gateway replies, before
        anything but the rules reads them: the others may carry only the header fields
        the rules read (see ``poll_folder``).

        A mail whose text the server refuses to send is left out, so it stays out of
        the ledger and is tried again (``_left_out``).
        """
        summaries = [self._summaries[m.uid] for m in wanted if m.uid in self._summaries]
        fetched, refused = _tolerant(self.mailbox.fetch_text, summaries)
        gone = _left_out(
            self.mailbox,
            self.folder,
            [(s.mail.uid, exc) for s, exc in refused],
            asked=len(summaries),
            fetched=len(fetched),
            new=self.advance_to is not None,
        )
        complete = {m.uid: m for m in fetched}
        return [complete.get(m.uid, m) for m in self.mails if m.uid not in gone]


#: Decides and commits a batch (decisions, SMS and checkpoint in one transaction) and
#: returns the UIDs to flag with ``imap.keyword``. If it raises, nothing moves.
HandleBatch = Callable[[Batch], Sequence[int] | None]


def poll_folder(
    mailbox: Mailbox,
    store: Store,
    folder: str,
    handle: HandleBatch,
    *,
    check_late: bool = False,
    reads: Reads | None = None,
    likely: Likely | None = None,
    after_likely: Callable[[], None] = lambda: None,
) -> None:
    """Find mail above the folder's checkpoint (and late arrivals) and hand it over in batches.

    ``reads`` (``RuleSet.reads``) is what the rules and guards read: a large batch then
    comes with only those header fields (``Mailbox.fetch_summaries``), and ``Batch.with_text``
    completes the mail that may be forwarded. Without it every mail comes whole, as before.
    ``likely`` (``RuleSet.likely``): a backlog's likely mail is handed over first, and
    ``after_likely()`` is called before the rest is read (delivery may send it meanwhile).
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
                folder,
                checkpoint.uidvalidity,
                state.uidvalidity,
                top,
            )
        store.baseline(folder, state.uidvalidity, top)
        store.set_meta(_FLOOR_KEY + folder, f"{state.uidvalidity}:{top}")
        return

    last = checkpoint.last_uid
    maybe_new = state.uidnext is None or state.uidnext - 1 > last
    if not maybe_new and not check_late:
        return  # nothing new: one SELECT was enough
    floor = _late_floor(store, folder, state.uidvalidity, last)
    start = min(last - LATE_WINDOW, _late_from(store, folder, state.uidvalidity, last))
    found = mailbox.uids_from(max(floor, start) + 1)
    below = [uid for uid in found if uid <= last]
    new = [uid for uid in found if uid > last]

    late = sorted(set(below) - store.handled_uids(folder, state.uidvalidity, below))
    if news := [uid for uid in late if _REFUSED.format(folder, uid) not in mailbox.said]:
        logger.warning(
            "%s: %d mail(s) appeared below the checkpoint (UID %s); handling them now",
            folder,
            len(news),
            ", ".join(map(str, news[:10])),
        )
    _handle_uids(mailbox, store, folder, state, late, handle, advance=False, reads=reads)
    rest: list[int] = []
    if new:
        # Above the checkpoint, the ledger holds only what a first pass for likely mail
        # recorded (this round's, or one a crash interrupted): the rest is new.
        done = store.handled_uids(folder, state.uidvalidity, new)
        if len(new) - len(done) > BATCH and likely is not None:
            first = [uid for uid in _likely_uids(mailbox, folder, new, likely) if uid not in done]
            # A few first, so that the first SMS waits for a few mails, not for all of them.
            for part in (first[:FIRST_FEW], first[FIRST_FEW:]):
                if part:
                    _handle_uids(
                        mailbox, store, folder, state, part, handle, advance=False, reads=reads
                    )
                    after_likely()
            done |= store.handled_uids(folder, state.uidvalidity, first)
        rest = [uid for uid in new if uid not in done]
        _handle_uids(mailbox, store, folder, state, rest, handle, advance=True, reads=reads)
        # The window must cover everything the checkpoint just jumped over, however many
        # batches that was, or a late arrival inside a burst would be missed for ever.
        store.set_meta(_FROM_KEY + folder, f"{state.uidvalidity}:{last}")
    reached = rest[-1] if rest else last
    # UIDs up to UIDNEXT-1 that the search did not return were expunged before we saw
    # them; moving past them keeps the next quiet poll at one SELECT. And the newest mail
    # may all have been decided by the first pass: the checkpoint moves over it too.
    top = max(new[-1] if new else last, state.uidnext - 1 if state.uidnext is not None else 0)
    if top > reached:
        store.record_batch(folder, state.uidvalidity, [], [], advance_to=top)


def _likely_uids(mailbox: Mailbox, folder: str, new: Sequence[int], likely: Likely) -> list[int]:
    """The new UIDs the server finds for the likely terms; [] if it will not search."""
    try:
        found = mailbox.search_likely(new[0], likely)
    except CommandRefused as exc:
        if "likely" not in mailbox.said:
            mailbox.said.add("likely")
            logger.info("%s: %s; the backlog is read in UID order", folder, exc)
        return []
    except MailboxError as exc:
        raise LikelySearchFailed(f"{exc} (the search for likely mail first)") from None
    wanted = set(new)
    first = [uid for uid in found if uid in wanted]
    logger.info(
        "%s: %d new mails; the %d the rules' words find are decided first",
        folder,
        len(new),
        len(first),
        extra={"folder": folder},
    )
    return first


def _handle_uids(
    mailbox: Mailbox,
    store: Store,
    folder: str,
    state: FolderState,
    uids: Sequence[int],
    handle: HandleBatch,
    *,
    advance: bool,
    reads: Reads | None = None,
) -> None:
    keyword = mailbox.config.keyword
    for start in range(0, len(uids), BATCH):
        chunk = uids[start : start + BATCH]
        summaries, refused = _tolerant(
            lambda part: mailbox.fetch_summaries(part, folder, state.uidvalidity, reads), chunk
        )
        _left_out(mailbox, folder, refused, asked=len(chunk), fetched=len(summaries), new=advance)
        batch = Batch(
            folder=folder,
            uidvalidity=state.uidvalidity,
            mails=[s.mail for s in summaries],
            advance_to=chunk[-1] if advance else None,
            mailbox=mailbox,
            _summaries={s.mail.uid: s for s in summaries},
        )
        flag = handle(batch) or ()
        if not keyword or not flag:
            continue
        if not state.can_store(keyword):
            if f"keyword {folder}" not in mailbox.said:
                mailbox.said.add(f"keyword {folder}")
                logger.warning(
                    "%s: the server does not keep the keyword %s here (PERMANENTFLAGS: %s); "
                    "forwarded mail is not flagged",
                    folder,
                    keyword,
                    " ".join(sorted(state.permanent_flags)) or "none",
                )
            continue
        try:
            mailbox.add_keyword(flag, keyword)
        except MailboxError as exc:
            # Committed already: the SMS is queued, only the flag is missing.
            logger.warning(
                "%s: could not flag UIDs %s with %s: %s", folder, list(flag), keyword, exc
            )
            raise


_T = TypeVar("_T")
_R = TypeVar("_R")

#: ``Mailbox.said`` key: this mail's refusal was logged on this connection.
_REFUSED = "refused {}/{}"


def _tolerant(
    fetch: Callable[[Sequence[_T]], list[_R]], items: Sequence[_T]
) -> tuple[list[_R], list[tuple[_T, CommandRefused]]]:
    """``fetch(items)``, halved again and again until every item the server refuses stands
    alone: what was fetched, and the refused items with the server's answer."""
    try:
        return fetch(items), []
    except CommandRefused as exc:
        if len(items) <= 1:
            return [], [(item, exc) for item in items]
    half = len(items) // 2
    first, first_refused = _tolerant(fetch, items[:half])
    second, second_refused = _tolerant(fetch, items[half:])
    return first + second, first_refused + second_refused


def _left_out(
    mailbox: Mailbox,
    folder: str,
    refused: Sequence[tuple[int, CommandRefused]],
    *,
    asked: int,
    fetched: int,
    new: bool,
) -> set[int]:
    """The UIDs of mail the server refused to FETCH, said once per connection.

    Some servers refuse, for good, to send one particular message; it must not block
    the mail behind it. It is left out of the batch, so it stays out of the ledger and
    the late window tries it again on every search while it is among the last
    ``LATE_WINDOW`` UIDs. When not one of several new mails could be read, the trouble is
    the server's, not a mail's: raise, so the checkpoint stays where it is.
    """
    if refused and new and asked > 1 and not fetched:
        raise refused[0][1]
    for uid, exc in refused:
        if _REFUSED.format(folder, uid) not in mailbox.said:
            mailbox.said.add(_REFUSED.format(folder, uid))
            logger.warning(
                "%s/%d: the server would not let it be read (%s); the mail behind it goes on, "
                "and it is tried again while among the last %d UIDs",
                folder,
                uid,
                exc,
                LATE_WINDOW,
            )
    return {uid for uid, _ in refused}


def _late_from(store: Store, folder: str, uidvalidity: int, last_uid: int) -> int:
    """Where the checkpoint stood before its latest advance (``last_uid`` if unknown)."""
    value = store.get_meta(_FROM_KEY + folder) or ""
    stored_validity, _, uid = value.partition(":")
    return int(uid) if stored_validity == str(uidvalidity) and uid.isdigit() else last_uid


def _late_floor(store: Store, folder: str, uidvalidity: int, last_uid: int) -> int:
    """The UID at or below which nothing is re-examined: the baseline of this UIDVALIDITY.

    A state file from before this was kept (or one whose floor was lost) starts the
    floor at the current checkpoint: what is below it was decided, or never will be.
    """
    value = store.get_meta(_FLOOR_KEY + folder) or ""
    stored_validity, _, uid = value.partition(":")
    if stored_validity == str(uidvalidity) and uid.isdigit():
        return int(uid)
    store.set_meta(_FLOOR_KEY + folder, f"{uidvalidity}:{last_uid}")
    return last_uid
