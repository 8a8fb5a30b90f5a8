"""From one mail to its decision and the SMS requests it needs (pure: no I/O, no clock)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from forwarder.config import Config
from forwarder.gateway.account import Account
from forwarder.mail import Mail
from forwarder.records import LedgerEntry, OutboxItem
from forwarder.rules.ruleset import Decision
from forwarder.text import transform
from forwarder.text.smstext import SmsOptions, SmsText


@dataclass(frozen=True)
class Plan:
    """What becomes of one mail: the rules' ``decision``, the ledger ``entry`` written for it,
    and the SMS requests to queue (``outbox``, with the ``sms`` text they carry)."""

    decision: Decision
    entry: LedgerEntry
    outbox: tuple[OutboxItem, ...] = ()
    sms: SmsText | None = None


def sms_options(config: Config, decision: Decision) -> SmsOptions:
    """The global ``sms:`` settings with the deciding rule's overrides on top."""
    rule = decision.options
    overrides = {
        "template": rule.template,
        "max_length": min(rule.max_length, config.gateway.max_length) if rule.max_length else None,
        "encoding": rule.encoding,
        "transliterate": rule.transliterate,
        "max_segments": rule.max_segments,
    }
    return dataclasses.replace(config.sms, **{k: v for k, v in overrides.items() if v is not None})


def dedup_key(mail: Mail) -> str:
    """Same sender and subject → same key: a storm of identical alerts becomes one SMS."""
    basis = f"{mail.sender[1]}\0{' '.join(mail.subject.lower().split())}"
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:32]


def quotes_gateway_secret(account: Account, mail: Mail, text: str) -> bool:
    """Whether the mail carries a request Subject's secret field (``login;password``, ``;key``).

    The secret is looked for as the Subject writes it, after a ';', so a short password
    that happens to be a common word does not stop ordinary mail.
    """
    needles = []
    if account.password is not None and account.password.reveal():
        needles.append(f"{account.login};{account.password.reveal()}")
    if account.api_key is not None and account.api_key.reveal():
        needles.append(f";{account.api_key.reveal()}")
    if not needles:
        return False
    try:
        body = mail.body
    except Exception:  # render already logged it and sent without the body
        body = ""
    haystacks = [mail.subject, body, text]
    return any(needle in haystack for needle in needles for haystack in haystacks)


def _not_forwarded(_message_id: str) -> str | None:
    return None


def plan(
    mail: Mail,
    config: Config,
    now: datetime,
    *,
    new_message_id: Callable[[], str],
    forwarded_as: Callable[[str], str | None] = _not_forwarded,
    explain: bool = False,
    decision: Decision | None = None,
) -> Plan:
    """Decide about one mail and, if it is to be forwarded, compose its SMS requests.

    ``forwarded_as(message_id)`` names the mail (``folder/UID``) already forwarded with
    the same Message-ID, if any: one message can stand in two watched folders (a Gmail
    label is a folder; a filter may copy), or be delivered twice, and must cost one SMS.
    ``explain`` keeps the rules' trace in the decision (``forwarder try --explain``).
    ``decision`` is the rules' decision about this very ``mail`` at ``now`` when the caller
    has it already (intake decides once to know which mail needs its text fetched).
    """
    if decision is None:
        decision = config.ruleset.decide(mail, now, explain=explain)
    message_id = mail.message_id or f"<uid-{mail.uid}@{mail.folder}>"
    if decision.gateway_reply:
        return Plan(
            decision, LedgerEntry(mail.uid, message_id, "reply", decision.rule, decision.reason)
        )
    if decision.action != "forward":
        return Plan(
            decision, LedgerEntry(mail.uid, message_id, "skip", decision.rule, decision.reason)
        )
    if mail.message_id and (earlier := forwarded_as(mail.message_id)):
        reason = f"{decision.reason}; but already forwarded as {earlier} (same Message-ID)"
        return Plan(decision, LedgerEntry(mail.uid, message_id, "skip", decision.rule, reason))
    sms = transform.render(mail, sms_options(config, decision), rule=decision.rule or "", now=now)
    if quotes_gateway_secret(config.gateway, mail, sms.text):
        # A gateway reply from an address gateway.reply_from does not know, a bounce with the
        # guard off, a copy of a request: forwarding it would put the secret in an SMS, the
        # log and the state database, and answer forwarder's own mail (a loop).
        reason = (
            f"{decision.reason}; but it quotes the gateway Subject with forwarder's password or "
            "API key (a gateway reply or a copy of a request?)"
        )
        return Plan(decision, LedgerEntry(mail.uid, message_id, "skip", decision.rule, reason))
    # The row is due after the rule's delay (unless_read checks \Seen then), and never inside
    # quiet hours with then: hold (it goes when the window ends).
    delay = decision.options.delay or 0.0
    not_before = now.timestamp() + delay
    if decision.hold_until is not None:
        not_before = max(not_before, decision.hold_until.timestamp())
    sender = decision.options.sender or config.gateway.sender
    from_name, from_addr = mail.sender
    items = tuple(
        OutboxItem(
            uid=mail.uid,
            source_message_id=message_id,
            rule=decision.rule,
            recipient=request.recipient,
            to_addr=request.to,
            sender=sender,
            subject_masked=request.masked_subject,
            text=sms.text,
            message_id=new_message_id(),
            not_before=not_before,
            unless_read=decision.options.unless_read,
            dedup_key=dedup_key(mail),
            mail_from=from_name or from_addr,
            mail_subject=mail.subject,
        )
        for request in config.gateway.requests(sender)
    )
    entry = LedgerEntry(mail.uid, message_id, "forward", decision.rule, decision.reason)
    return Plan(decision, entry, items, sms)
