"""Delivery policy (pure: values in, values out): limits, dedup, summaries, read checks, backoff.

The daemon asks these functions what to do with an outbox row that has come
due; the store and the sender then do it. Nothing here reads a clock, a
socket or the database, so every rule below is tested with plain values and
an injected "now".

* **Dedup**: a row whose mail has the same sender and subject (``dedup_key``)
  as one already sent (or held) to the same recipient within
  ``limits.dedup_window`` becomes a ``duplicate`` of it: one SMS per storm of
  identical alerts. Arrival times (``created_at``) are compared, not send
  times, so a backlog drained after an outage dedups the same way.
* **Limits**: across all rules, at most ``per_minute``/``per_hour``/``per_day``
  requests reach the gateway's final dot (sliding windows over the ``sends``
  log, so a resent in-doubt SMS counts twice: it may be billed twice). A row
  that comes due while a window is full is ``held`` with the reason, never
  silently dropped.
* **Summary**: once every window has room again, held rows not yet reported
  are reported in one summary SMS ("7 more important mails held back: …"),
  queued through the normal outbox so it is durable and obeys the circuit.
* **unless_read**: a delayed SMS whose mail was read (``\\Seen``) meanwhile is
  ``cancelled``. If IMAP cannot say, the SMS waits up to
  ``delivery.unless_read_wait`` past its due time and then goes anyway: an
  important mail is never missed because the mailbox was unreachable.
* **Backoff**: a transient failure keeps the row ``pending`` with a
  ``not_before`` that doubles with each failed round (with jitter), so a dead
  SMTP server is not hammered every poll (``backoff.Policy``); ``delivery.max_age`` after its due
  time a row is given up (``failed``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from forwarder.delivery.states import ORIGINALS, State
from forwarder.text.smstext import SmsOptions, fit, sms_length

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

#: How many distinct "sender: subject" entries a summary names before "+N more".
SUMMARY_ENTRIES = 5


# -- limits ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LimitsConfig:
    """A wallet guard across all rules; a held SMS is summarised, never silently dropped.

    The ``limits:`` section of the config; it lives here because the policy is what reads it.
    """

    per_minute: int = 5
    per_hour: int = 30
    per_day: int = 100
    dedup_window: float = 600.0  # same sender + subject within this many seconds → one SMS


@dataclass(frozen=True)
class SendCounts:
    """How many requests reached the final dot in the last minute, hour and day."""

    minute: int = 0
    hour: int = 0
    day: int = 0

    @classmethod
    def at(cls, now: float, times: Sequence[float]) -> SendCounts:
        """Counts from a list of send times (for tests and simulations)."""
        return cls(
            minute=sum(now - MINUTE < t <= now for t in times),
            hour=sum(now - HOUR < t <= now for t in times),
            day=sum(now - DAY < t <= now for t in times),
        )


def limit_reason(counts: SendCounts, limits: LimitsConfig) -> str | None:
    """Which limit is full, as a sentence for the row's reason, or None if one more may go."""
    for count, limit, key, span in (
        (counts.minute, limits.per_minute, "per_minute", "minute"),
        (counts.hour, limits.per_hour, "per_hour", "hour"),
        (counts.day, limits.per_day, "per_day", "day"),
    ):
        if count >= limit:
            return f"limits.{key}: {count} SMS in the last {span} (limit {limit})"
    return None


# -- dedup ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """An earlier row with the same dedup key and recipient (from the store)."""

    id: int
    state: State
    created_at: float


def find_original(
    created_at: float, candidates: Sequence[Candidate], window: float
) -> Candidate | None:
    """The row a mail created at ``created_at`` duplicates, or None.

    An original is a row that went out or was held, created within ``window``
    seconds of this one (either side: a retried original may go after its
    duplicate came due). The oldest such row wins, so every duplicate of a
    storm points at the same one.
    """
    if window <= 0:
        return None
    found = [
        c for c in candidates if c.state in ORIGINALS and abs(c.created_at - created_at) <= window
    ]
    return min(found, key=lambda c: c.id, default=None)


# -- the verdict for one due row --------------------------------------------------------------
class Action(Enum):
    """What the policy says to do with a due row (the one vocabulary of delivery decisions)."""

    SEND = "send"
    HOLD = "hold"  # a limit is full: held, summarised later
    DUPLICATE = "drop_duplicate"  # same sender + subject recently: not sent
    WAIT = "wait"  # not yet: a summary waits for room, an unless_read row for IMAP's answer
    CANCEL = "cancel"  # unless_read: the mail was read before the SMS was due


@dataclass(frozen=True)
class Verdict:
    """An ``Action`` and the reason a person reads in the log and in ``status``."""

    action: Action
    reason: str = ""
    original: int | None = None  # for DUPLICATE: the row it duplicates


SEND = Verdict(Action.SEND)


def verdict(
    *,
    kind: str,
    created_at: float,
    counts: SendCounts,
    limits: LimitsConfig,
    candidates: Sequence[Candidate] = (),
) -> Verdict:
    """Send, hold, or mark as duplicate: dedup first (a duplicate costs no capacity), then limits.

    A summary or a self-alert is never deduplicated nor held: it waits for room.
    """
    if kind == "mail":
        original = find_original(created_at, candidates, limits.dedup_window)
        if original is not None:
            return Verdict(
                Action.DUPLICATE,
                f"same sender and subject as SMS #{original.id} within "
                f"limits.dedup_window ({_span(limits.dedup_window)})",
                original.id,
            )
    full = limit_reason(counts, limits)
    if full is None:
        return SEND
    # Forwarder's own SMS (a summary, a self-alert) wait for room: holding them would only
    # make another summary to report them.
    return Verdict(Action.HOLD if kind == "mail" else Action.WAIT, full)


def summary_due(held: int, counts: SendCounts, limits: LimitsConfig) -> bool:
    """A summary goes when there is held mail to report and every window has room again."""
    return held > 0 and limit_reason(counts, limits) is None


# -- the summary SMS --------------------------------------------------------------------------
@dataclass(frozen=True)
class HeldMail:
    """What a summary says about one held row."""

    sender: str
    subject: str


def compose_summary(held: Sequence[HeldMail], options: SmsOptions) -> str:
    """The summary SMS, e.g. "7 more important mails held back by the SMS limits:
    Alice: Disk full (x3); +4 more".

    Names the first few distinct sender/subject pairs (in arrival order, with
    a count when repeated) as long as the text fits ``options.max_length``,
    then says how many it left out (plain ASCII punctuation: one character outside
    GSM-7 would make the whole SMS UCS-2, at less than half the length). The result
    is passed through the normal SMS fitting (encoding, transliteration, segments),
    so it obeys the same limits as any SMS.
    """
    total = len(held)
    counted: dict[tuple[str, str], int] = {}
    for mail in held:
        key = (" ".join(mail.sender.split()), " ".join(mail.subject.split()))
        counted[key] = counted.get(key, 0) + 1
    noun = "mail" if total == 1 else "mails"
    head = f"{total} more important {noun} held back by the SMS limits"
    entries: list[str] = []
    named = 0
    for (sender, subject), count in counted.items():
        if len(entries) == SUMMARY_ENTRIES:
            break
        entry = f"{sender or '?'}: {subject or '(no subject)'}" + (
            f" (x{count})" if count > 1 else ""
        )
        candidate = _summary_text(head, [*entries, entry], total - named - count)
        if sms_length(candidate) > options.max_length:
            break
        entries.append(entry)
        named += count
    text = _summary_text(head, entries, total - named)
    # "{body}" keeps the options' encoding, transliteration and caps; the text is already short.
    return compose_summary_text(text, options)


def compose_summary_text(text: str, options: SmsOptions) -> str:
    """A text of forwarder's own fitted like any SMS (encoding, transliteration, length)."""
    return fit({"body": text}, dataclasses.replace(options, template="{body}")).text


def _summary_text(head: str, entries: Sequence[str], rest: int) -> str:
    if not entries:
        return head
    return head + ": " + "; ".join(entries) + (f"; +{rest} more" if rest > 0 else "")


# -- unless_read ------------------------------------------------------------------------------
class ReadState(Enum):
    SEEN = "seen"
    UNSEEN = "unseen"
    GONE = "gone"  # expunged or moved, or its folder's UIDVALIDITY changed: no way to know
    UNKNOWN = "unknown"  # IMAP could not be asked


def read_verdict(state: ReadState, *, due_at: float, now: float, wait: float) -> Verdict:
    """What an ``unless_read`` row does once due, given what IMAP said about its mail:
    SEND, CANCEL or WAIT."""
    if state is ReadState.SEEN:
        return Verdict(Action.CANCEL, "the mail was read (\\Seen) before the SMS was due")
    if state is ReadState.UNSEEN:
        return Verdict(Action.SEND, "the mail is still unread")
    if state is ReadState.GONE:
        return Verdict(Action.SEND, "the mail is no longer in its folder; sent to be safe")
    if now < due_at + wait:
        return Verdict(
            Action.WAIT,
            "waiting to learn from IMAP whether the mail was read "
            f"(sent anyway after delivery.unless_read_wait, {_span(wait)})",
        )
    return Verdict(
        Action.SEND, f"IMAP could not say whether the mail was read for {_span(wait)}; sent anyway"
    )


# -- giving up ------------------------------------------------------------------------------
def give_up_before(now: float, max_age: float) -> float:
    """Pending rows that came due before this moment are given up (``delivery.max_age``).

    Counted from when a row came due, not from when it was queued: quiet hours may hold a
    row longer than max_age on purpose.
    """
    return now - max_age


def _span(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
