"""Receipts: finding out whether a request in doubt reached the SMTP server (pure).

Between the final dot and the server's 250 a crash or a lost connection leaves a request
accepted or not, and SMTP cannot say which (RFC 1047). A *receipt* is evidence, found
later over IMAP, that the server accepted it. Two kinds, chosen by ``delivery.receipts``:

* ``sent_folder``: the SMTP service files every message it accepted from an authenticated
  client in the account's Sent folder. forwarder searches that folder (RFC 6154 ``\\Sent``,
  or ``delivery.sent_folder``) for the request's own Message-ID.
* ``copy``: every request carries one more envelope recipient, the owner's own address
  (``delivery.receipt_to``, default ``smtp.from``), in the *same* SMTP transaction: one
  DATA, one final dot, one 250 for both recipients (RFC 5321 §3.3), so the copy arriving
  in a watched folder proves the same acceptance the 250 would have. Intake recognises the
  copy by its Message-ID, records it as the receipt, marks it ``\\Seen`` and moves it to
  ``delivery.receipt_folder`` if one is set. The gateway never sees the extra recipient:
  the server delivers each recipient to its own domain.

Which services file SMTP-submitted mail in Sent (the sources are in README.md, "Receipts"):
Gmail and Outlook.com / Microsoft 365 do, so ``auto`` searches Sent when both smtp.host and
imap.host are theirs. Outlook.com / Microsoft 365 replace the Message-ID and keep ours in
``X-Microsoft-Original-Message-ID``, so that header is searched too. Zoho and Fastmail are
reported to; iCloud reports conflict; Yahoo does not: ``auto`` uses ``copy`` for everything
it does not know, which works wherever the copy lands in a folder forwarder watches.

What a doubt then becomes (``doubt_ruling``): a receipt → ``sent``, never sent again; no
receipt possible, or none found by a look begun after ``delivery.receipt_wait`` →
``delivery.on_doubt``: ``resend`` (default: a second SMS costs less than a missed one) or
``alert``. IMAP unable to look for as long again → ``on_doubt`` all the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum


class Receipts(StrEnum):
    AUTO = "auto"
    SENT_FOLDER = "sent_folder"
    COPY = "copy"
    OFF = "off"


#: What a request that reached the final dot can be proved by: stored per row at the dot.
NO_PROOF = ""


@dataclass(frozen=True)
class Provider:
    """A service that files what its SMTP submission service accepted in the Sent folder."""

    name: str
    smtp_hosts: tuple[str, ...]
    imap_hosts: tuple[str, ...]


#: Only services whose own documentation or several independent reports agree (README.md).
FILES_IN_SENT = (
    Provider("Gmail", ("smtp.gmail.com", "smtp.googlemail.com"), ("imap.gmail.com",)),
    Provider(
        "Outlook.com / Microsoft 365",
        ("smtp.office365.com", "smtp-mail.outlook.com"),
        ("outlook.office365.com", "imap-mail.outlook.com"),
    ),
)

#: Headers where a receipt carries the request's Message-ID: its own, and the ones servers
#: move it to when they replace it (Outlook.com / Microsoft 365 always; Gmail an invalid one).
ID_HEADERS = ("Message-ID", "X-Microsoft-Original-Message-ID", "X-Google-Original-Message-ID")


def provider(smtp_host: str, imap_host: str) -> Provider | None:
    """The known provider both hosts belong to, if any."""
    smtp_host, imap_host = smtp_host.lower().rstrip("."), imap_host.lower().rstrip(".")
    for known in FILES_IN_SENT:
        if smtp_host in known.smtp_hosts and imap_host in known.imap_hosts:
            return known
    return None


def resolve(mode: Receipts | str, smtp_host: str, imap_host: str) -> Receipts:
    """The receipt kind in use: ``auto`` becomes ``sent_folder`` for a known provider whose
    SMTP and IMAP hosts are both configured, ``copy`` otherwise."""
    mode = Receipts(mode)
    if mode is not Receipts.AUTO:
        return mode
    return Receipts.SENT_FOLDER if provider(smtp_host, imap_host) else Receipts.COPY


def own_ids(values: Iterable[str], own_domain: str) -> tuple[str, ...]:
    """The Message-IDs among header ``values`` that forwarder made (its own domain)."""
    suffix = f"@{own_domain.casefold()}>"
    found: list[str] = []
    for value in values:
        value = value.strip()
        if value.casefold().endswith(suffix) and value.startswith("<") and value not in found:
            found.append(value)
    return tuple(found)


class DoubtAction(Enum):
    CONFIRMED = "confirmed"  # a receipt: mark it sent, never send it again
    WAIT = "wait"  # a receipt may still come
    LOOK = "look"  # the wait is over, but no look since could have seen the receipt
    RESEND = "resend"  # no receipt: send it again (the same Message-ID)
    ALERT = "alert"  # no receipt: leave it, say so (delivery.on_doubt: alert)


@dataclass(frozen=True)
class DoubtRuling:
    action: DoubtAction
    reason: str


def doubt_ruling(
    *,
    proof: str,
    receipt: bool,
    began_at: float,
    now: float,
    wait: float,
    on_doubt: str,
    looked_at: float | None,
    imap_wait: float,
) -> DoubtRuling:
    """What to do with a request in doubt, ``now``.

    ``proof`` is what its last attempt could be proved by (``NO_PROOF``: nothing, e.g. the
    copy recipient was refused, or receipts are off); ``receipt`` whether one was found;
    ``began_at`` when this doubt was found (a crash, or a connection lost after the dot).

    "No receipt" is only concluded from a look that could have seen one: ``looked_at`` is
    when the latest complete look (every watched folder read, or the Sent folder searched)
    *began*, None if there was none. A receipt that arrives within ``wait`` is seen by any
    look begun after ``began_at + wait``; an older look proves nothing. Without that check a
    restart could rule on the receipts of before the crash, while intake is still reading
    the backlog that holds the copy, and send a second SMS. Where IMAP cannot look at all,
    the request is not held for ever: after ``imap_wait`` more it is ruled on without one
    (never missed comes before never twice).
    """
    if receipt:
        return DoubtRuling(
            DoubtAction.CONFIRMED, f"a receipt ({proof or 'found'}) shows the server accepted it"
        )
    if proof and now < began_at + wait:
        return DoubtRuling(
            DoubtAction.WAIT, f"waiting up to {wait:g}s for its receipt ({proof}) to arrive"
        )
    looked = looked_at is not None and looked_at >= began_at + wait
    if proof and not looked and now < began_at + wait + imap_wait:
        return DoubtRuling(
            DoubtAction.LOOK,
            f"waiting for a look at the mailbox for its receipt ({proof}), "
            f"up to {imap_wait:g}s more",
        )
    if not proof:
        why = "no receipt can tell whether it got through"
    elif looked:
        why = f"no receipt ({proof}) within delivery.receipt_wait ({wait:g}s)"
    else:
        why = (
            f"no look at the mailbox for its receipt ({proof}) was possible within "
            f"{wait + imap_wait:g}s (IMAP down?)"
        )
    if on_doubt == "alert":
        return DoubtRuling(DoubtAction.ALERT, f"{why}; not sent again (delivery.on_doubt: alert)")
    return DoubtRuling(
        DoubtAction.RESEND,
        f"{why}; sent again (delivery.on_doubt: resend; a second SMS is possible)",
    )
