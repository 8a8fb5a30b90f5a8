"""Built-in guards: mail that must never become an SMS, checked before any rule.

Each guard stops a loop or a waste of money that no user wants: the gateway's
own replies (forwarding them would answer the gateway with another SMS), the
requests forwarder itself sent, auto-replies and bounces (an out-of-office
answer to an alert would otherwise come back as an SMS). Each can be turned
off in ``guards:``. What is deliberately *not* guarded: ``Auto-Submitted:
auto-generated`` and ``Precedence: bulk``, because monitoring alerts, the mail
many users want on their phone most, carry exactly those headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from forwarder.gateway import account as gateway
from forwarder.mail import Mail, Reads
from forwarder.rules.patterns import Glob, squash

# The defaults of the config keys these come from (gateway.reply_from, delivery.message_id_domain).
DEFAULT_REPLY_FROM = ("*@alphasms.com.ua", "*@*.alphasms.com.ua")
DEFAULT_OWN_DOMAIN = "forwarder.invalid"

GATEWAY_REPLIES = "gateway_replies"
OWN_MAIL = "own_mail"
AUTO_REPLIES = "auto_replies"
BOUNCES = "bounces"
GUARD_NAMES = (GATEWAY_REPLIES, OWN_MAIL, AUTO_REPLIES, BOUNCES)  # the order they are checked in

# RFC 3834 §5: Auto-Submitted: auto-replied marks a reply made by a program.
# (auto-generated is *not* here; see the module docstring.)
_AUTO_REPLIED = "auto-replied"
# Headers whose mere presence marks an auto-reply (de facto, set by many responders).
_AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond")
# Precedence: auto_reply is what several vacation programs put on their answers.
_PRECEDENCE_AUTO_REPLY = "auto_reply"
# Subjects that out-of-office responders use, checked at the start of the subject only and
# kept to phrases a person rarely opens a message with: a human "On vacation next week, the
# backups are yours" must still get through. (No "OOO": in Latin transliteration and in
# Cyrillic it is also the common company prefix, "ООО Ромашка".)
_OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\s*(?:"
    r"auto(?:matic)?[ -]?(?:reply|response|answer)|autoreply|out of (?:the )?office|"
    # Russian
    r"автоответ|автоматический ответ|нет на месте|вне офиса|не в офисе|"
    # Ukrainian
    r"автовідповідь|автоматична відповідь|поза офісом|не в офісі"
    r")",
    re.IGNORECASE,
)
# RFC 3464 §2: a delivery status notification is multipart/report; report-type=delivery-status.
_REPORT_TYPE_DSN = "delivery-status"
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|returned to sender|delivery status notification|"
    r"delivery (?:has )?failed|delivery failure|failure notice|mail delivery|"
    r"could not (?:be )?(?:send|sent|deliver)|couldn't be delivered|not delivered|"
    r"delivery (?:delayed|incomplete)|mail system error|"
    r"недоставлен|не доставлен|не удалось доставить|ошибка доставки|"
    r"не вдалося доставити|помилка доставки",
    re.IGNORECASE,
)
_AUTO_SUBMITTED_KEYWORD = re.compile(r"\s*([a-z0-9-]+)", re.IGNORECASE)

#: The header fields each guard reads (tests/test_guards.py checks that no guard reads more):
#: the IMAP side fetches only the fields the enabled guards and the rules read.
GUARD_FIELDS = {
    GATEWAY_REPLIES: ("From",),
    OWN_MAIL: ("Message-ID", "From", "To"),
    AUTO_REPLIES: ("Auto-Submitted", *_AUTOREPLY_HEADERS, "Precedence", "Subject"),
    BOUNCES: ("Content-Type", "Subject", "From"),
}


class MailFacts(Protocol):
    """What the guards read: the mail, with its headers and addresses read once per decision.

    The rule set passes its per-decision cache (``rules._Facts``), so a header
    the guards decode is not decoded again for the rules: the stdlib address
    parser is the most expensive step of a decision.
    """

    @property
    def mail(self) -> Mail: ...

    def headers(self, name: str) -> Sequence[str]: ...

    def addresses(self, header: str) -> Sequence[tuple[str, str]]: ...

    def may_contain(self, header: str, needles: tuple[str, ...]) -> bool:
        """False only when no address in ``header`` can hold all the squashed ``needles``."""
        ...


_Check = Callable[[MailFacts], "str | None"]


def auto_submitted_keyword(value: str) -> str:
    """The keyword of an Auto-Submitted value, without parameters or comments (RFC 3834 §5).

    ``auto-generated (warning-timeout)`` → ``auto-generated``; lowercased.
    """
    match = _AUTO_SUBMITTED_KEYWORD.match(value)
    return match.group(1).lower() if match else ""


@dataclass(frozen=True)
class GuardContext:
    """What the guards need to know about this installation, from the gateway/smtp config."""

    reply_from: tuple[str, ...] = DEFAULT_REPLY_FROM  # globs of the gateway's reply addresses
    own_domain: str = DEFAULT_OWN_DOMAIN  # domain of the Message-IDs forwarder gives its requests
    own_from: str = ""  # smtp.from; '' when unknown
    gateway_domain: str = gateway.DEFAULT_DOMAIN


@dataclass(frozen=True)
class GuardHit:
    """A guard stopped the mail: which one, and one line saying what it saw."""

    guard: str
    reason: str

    @property
    def gateway_reply(self) -> bool:
        return self.guard == GATEWAY_REPLIES


class Guards:
    """The enabled guards compiled for one context; ``check`` runs them in ``GUARD_NAMES`` order."""

    def __init__(self, context: GuardContext, enabled: Iterable[str] = GUARD_NAMES) -> None:
        self.context = context
        self._reply_from = tuple(Glob(pattern) for pattern in context.reply_from)
        self._own_id_suffix = f"@{context.own_domain.casefold()}>" if context.own_domain else ""
        self._reply_from_needles = tuple(
            tuple(squash(piece) for piece in pattern.literals) for pattern in self._reply_from
        )
        self._own_from = context.own_from.strip().casefold()
        self._gateway_suffix = f"@{context.gateway_domain.casefold()}"
        wanted = set(enabled)
        checks: dict[str, _Check] = {
            GATEWAY_REPLIES: self._gateway_reply,
            OWN_MAIL: self._own_mail,
            AUTO_REPLIES: _auto_reply,
            BOUNCES: _bounce,
        }
        self._checks = tuple((name, checks[name]) for name in GUARD_NAMES if name in wanted)
        self.enabled = tuple(name for name, _ in self._checks)
        self.reads = Reads(
            frozenset(field.lower() for name in self.enabled for field in GUARD_FIELDS[name])
        )

    def check(self, facts: MailFacts) -> GuardHit | None:
        for name, check in self._checks:
            reason = check(facts)
            if reason is not None:
                return GuardHit(name, reason)
        return None

    def explain(self, facts: MailFacts) -> tuple[GuardHit | None, list[str]]:
        """Like ``check``, with one trace line per guard tried (and one per guard turned off)."""
        trace = [f"guard {name!r}: turned off" for name in GUARD_NAMES if name not in self.enabled]
        for name, check in self._checks:
            reason = check(facts)
            if reason is not None:
                trace.append(f"guard {name!r}: stopped the mail ({reason})")
                return GuardHit(name, reason), trace
            trace.append(f"guard {name!r}: passed")
        return None, trace

    # -- the guards that depend on the context ---------------------------------------------
    def _gateway_reply(self, facts: MailFacts) -> str | None:
        for pattern, needles in zip(self._reply_from, self._reply_from_needles, strict=True):
            if not facts.may_contain("From", needles):
                continue  # most mail: From need not even be parsed
            for _, address in facts.addresses("From"):
                if pattern.matches(address.casefold()):
                    return f"From {address!r} is the gateway ({pattern.source!r})"
        return None

    def _own_mail(self, facts: MailFacts) -> str | None:
        message_id = facts.mail.message_id
        if self._own_id_suffix and message_id.casefold().endswith(self._own_id_suffix):
            return f"Message-ID {message_id} is one forwarder made"
        if (
            self._own_from
            and facts.may_contain("From", (squash(self._own_from),))
            and _sender(facts) == self._own_from
        ):
            for _, address in facts.addresses("To"):
                if address.endswith(self._gateway_suffix):
                    return f"sent by forwarder ({self._own_from}) to the gateway ({address})"
        return None


# -- the guards that only look at the mail -------------------------------------------------
def _sender(facts: MailFacts) -> str:
    """The (first) From address, '' when there is none."""
    found = facts.addresses("From")
    return found[0][1] if found else ""


def _auto_reply(facts: MailFacts) -> str | None:
    for value in facts.headers("Auto-Submitted"):
        if auto_submitted_keyword(value) == _AUTO_REPLIED:
            return f"Auto-Submitted: {value}"
    for header in _AUTOREPLY_HEADERS:
        if facts.headers(header):
            return f"{header} header present"
    for value in facts.headers("Precedence"):
        if value.strip().lower() == _PRECEDENCE_AUTO_REPLY:
            return f"Precedence: {_PRECEDENCE_AUTO_REPLY}"
    subject = facts.mail.subject
    if _OUT_OF_OFFICE_SUBJECT.match(subject):
        return f"out-of-office subject {subject!r}"
    return None


def _bounce(facts: MailFacts) -> str | None:
    mail = facts.mail
    if _delivery_report(mail.head.get("Content-Type")):
        return "multipart/report; report-type=delivery-status"
    if _BOUNCE_SUBJECT.search(mail.subject) and any(
        facts.may_contain("From", (sender,)) for sender in _BOUNCE_SENDERS
    ):
        sender = _sender(facts)
        if sender.partition("@")[0] in _BOUNCE_SENDERS:
            return f"From {sender} with a bounce subject {mail.subject!r}"
    return None


def _delivery_report(content_type: str | None) -> bool:
    """``multipart/report; report-type=delivery-status``, read as the stdlib reads it.

    From the header alone, so no mail is parsed whole for this guard: a multipart type
    with a boundary parameter stands for "is multipart" (a parsed message is, unless its
    body lacks the boundary lines, which only a broken report does).
    """
    if content_type is None or "report" not in content_type.lower():
        return False  # nearly all mail: no need to parse the parameters
    from email.message import Message
    from email.utils import collapse_rfc2231_value

    header = Message()
    header["Content-Type"] = content_type
    if header.get_content_type() != "multipart/report" or header.get_boundary() is None:
        return False
    return collapse_rfc2231_value(header.get_param("report-type", "")).lower() == _REPORT_TYPE_DSN
