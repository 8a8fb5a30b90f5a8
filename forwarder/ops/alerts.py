"""When to text the owner that forwarder itself cannot work: pure policy, values in and out.

The worst failure of a mail-to-SMS forwarder is the quiet one: the password was changed,
the log says so once, and no SMS ever comes again. So when the mailbox cannot be read
for ``alerts.imap_down_after`` (30 min by default), one SMS says so in plain words, and
one says when it works again. The SMS goes through the normal outbox, limits and
gateway, which do not depend on IMAP; when the SMTP side is what fails, no SMS can
go, and ``status``, the log and the health ping say so instead.

``ImapOutage`` is the whole memory of the policy: when the outage began, what kind it
is, and whether the owner was told. ``observe()`` takes it and one round's outcome and
returns the next one and, at most once per outage, the text to queue. It is plain data
(``to_json``/``from_json``) so the daemon can keep it in the state file: a restart in the
middle of an outage must neither forget that it began an hour ago nor text again.

Texts are plain ASCII ("-", not "—"), like the summary SMS: one character outside GSM-7
would make the SMS UCS-2, at less than half the length.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

__all__ = ["Alert", "ImapOutage", "Trouble", "observe"]

DEFAULT_AFTER = 30 * 60.0


class Trouble(enum.Enum):
    """Why the mailbox cannot be read, sorted by what the owner must do."""

    AUTH = "auth"  # the server refused the login: password, expired token, locked account
    LOGIN = "login"  # the OAuth2 sign-in is gone (refresh refused): forwarder login again
    TLS = "tls"  # the certificate was refused
    UNREACHABLE = "unreachable"  # no connection: server down, DNS, network


@dataclass(frozen=True)
class ImapOutage:
    """The policy's memory; ``ImapOutage()`` means the mailbox works."""

    since: float | None = None  # Unix time of the first failure of this outage
    trouble: Trouble | None = None  # the latest failure's kind
    alerted: bool = False  # the "cannot" SMS was queued for this outage

    @property
    def down(self) -> bool:
        return self.since is not None

    def to_json(self) -> str:
        return json.dumps(
            {
                "since": self.since,
                "trouble": self.trouble.value if self.trouble else None,
                "alerted": self.alerted,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> ImapOutage:
        """The stored state; anything unreadable counts as "no outage known"."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            since = data.get("since")
            trouble = data.get("trouble")
            return cls(
                since=float(since) if since is not None else None,
                trouble=Trouble(trouble) if trouble is not None else None,
                alerted=bool(data.get("alerted", False)),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()


@dataclass(frozen=True)
class Alert:
    """An SMS to queue for the owner."""

    text: str
    recovered: bool  # False: "cannot …"; True: "works again"


def observe(
    outage: ImapOutage,
    *,
    ok: bool,
    now: float,
    host: str,
    trouble: Trouble | None = None,
    after: float = DEFAULT_AFTER,
    enabled: bool = True,
    tz: tzinfo | None = None,
    account: str = "default",
) -> tuple[ImapOutage, Alert | None]:
    """One round's outcome against the mailbox: the next state, and an SMS to queue or None.

    ``ok``: every folder was read (or the connection worked); else ``trouble`` says why
    (``runtime.classify(error)`` sorts an IMAP error). ``now`` is Unix time; times in the
    texts are local (``tz``).
    While down the "cannot" SMS is queued once, when the outage has lasted ``after``; the
    "works again" SMS only if the first one was. ``enabled=False`` keeps the state but
    never queues.
    """
    if ok:
        if not outage.down:
            return outage, None
        alert = None
        if outage.alerted and enabled:
            assert outage.since is not None
            alert = Alert(_recovered_text(host, outage.since, now, tz), recovered=True)
        return ImapOutage(), alert
    trouble = trouble or Trouble.UNREACHABLE
    if not outage.down:
        outage = ImapOutage(since=now, trouble=trouble)
    else:
        outage = replace(outage, trouble=trouble)
    assert outage.since is not None
    if outage.alerted or not enabled or now - outage.since < after:
        return outage, None
    return replace(outage, alerted=True), Alert(
        _down_text(host, trouble, outage.since, now, tz, account), recovered=False
    )


def _clock(at: float, now: float, tz: tzinfo | None) -> str:
    """09:12 today; "3 May 09:12" on another day."""
    when = datetime.fromtimestamp(at, tz).astimezone(tz)
    today = datetime.fromtimestamp(now, tz).astimezone(tz)
    if when.date() == today.date():
        return f"{when:%H:%M}"
    return f"{when.day} {when:%b %H:%M}"


def _down_text(
    host: str,
    trouble: Trouble,
    since: float,
    now: float,
    tz: tzinfo | None,
    account: str = "default",
) -> str:
    at = _clock(since, now, tz)
    if trouble is Trouble.LOGIN:
        command = "forwarder login" + ("" if account == "default" else f" --account {account}")
        return f"forwarder: the sign-in to {host} ended at {at} - run {command}"
    if trouble is Trouble.AUTH:
        return f"forwarder: cannot log in to {host} since {at} - check the password"
    if trouble is Trouble.TLS:
        return (
            f"forwarder: the TLS certificate of {host} is refused since {at} - "
            "check imap.host and imap.ca_file"
        )
    return f"forwarder: cannot connect to {host} since {at} - is the server or the network down?"


def _recovered_text(host: str, since: float, now: float, tz: tzinfo | None) -> str:
    return (
        f"forwarder: {host} works again (failing since {_clock(since, now, tz)}); "
        "mail that came meanwhile is forwarded now"
    )
