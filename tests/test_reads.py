"""``RuleSet.reads``: the header fields, structure and body the rules and guards read.

The IMAP side fetches, for a backlog, only ``reads.header_fields`` of each mail. So a mail
cut down to those fields (as ``BODY.PEEK[HEADER.FIELDS (...)]`` returns it) must be decided
exactly as the whole mail, by every guard and every kind of condition; and deciding must
never need the parsed MIME tree.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest

from forwarder.mail import Mail, Reads
from forwarder.rules.guards import GUARD_FIELDS, GUARD_NAMES
from tests.support.guards import CONTEXT, PASSED, STOPPED, rules_with
from tests.support.rules import MONDAY_NOON, compiled, make_mail

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def only_fields(raw: bytes, fields: frozenset[str]) -> bytes:
    """The header fields of ``raw`` named in ``fields``, as HEADER.FIELDS returns them."""
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    kept: list[bytes] = []
    keep = False
    for line in re.split(rb"(?<=\n)", head + b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        name = _FIELD_NAME.match(line)
        keep = name is not None and name.group(1).decode().lower() in fields
        if keep:
            kept.append(line)
    return b"".join(kept) + b"\r\n"


def assert_same_decision(ruleset, mail: Mail) -> None:
    cut = Mail(only_fields(mail.raw, ruleset.reads.header_fields), size=mail.total_size)
    whole, partial = ruleset.decide(mail, MONDAY_NOON), ruleset.decide(cut, MONDAY_NOON)
    assert (partial.action, partial.rule, partial.reason, partial.gateway_reply) == (
        whole.action,
        whole.rule,
        whole.reason,
        whole.gateway_reply,
    )
    assert "message" not in cut.__dict__  # decided on header fields, no MIME tree parsed


def dsn() -> Mail:
    message = EmailMessage()
    message["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    message["To"] = "me@example.com"
    message["Subject"] = "Your weekly report"  # not a bounce subject: the type says it
    message["Message-ID"] = "<dsn-1@mx.example.org>"
    message.set_content("The mail could not be delivered.\n")
    message.add_attachment(
        "Reporting-MTA: dns; mx.example.org\n", subtype="delivery-status", disposition="inline"
    )
    message.replace_header(
        "Content-Type",
        message["Content-Type"].replace("multipart/mixed", "multipart/report")
        + "; report-type=delivery-status",
    )
    return Mail(message.as_bytes())


@pytest.mark.parametrize(("guard", "fields"), STOPPED)
def test_guards_decide_the_same_on_their_fields_alone(guard: str, fields: dict) -> None:
    mail = make_mail(**fields)
    ruleset = rules_with()
    assert ruleset.decide(mail, MONDAY_NOON).rule == f"guard:{guard}"
    assert_same_decision(ruleset, mail)
    alone = rules_with({guard})
    assert alone.reads.header_fields == {f.lower() for f in GUARD_FIELDS[guard]}
    assert_same_decision(alone, mail)


@pytest.mark.parametrize("fields", PASSED)
def test_mail_the_guards_pass_is_decided_the_same_on_their_fields(fields: dict) -> None:
    assert_same_decision(rules_with(), make_mail(**fields))


def test_a_delivery_report_is_a_bounce_from_its_content_type_alone() -> None:
    ruleset = rules_with()
    assert ruleset.decide(dsn(), MONDAY_NOON).rule == "guard:bounces"
    assert_same_decision(ruleset, dsn())


RULES = """
guards: {gateway_replies: false, own_mail: false, auto_replies: false, bounces: false}
rules:
  - {name: bank, match: {from: "*@bank.com.ua"}, action: forward}
  - {name: ops, match: {any: [{to: "ops@example.com"}, {cc: "ops@example.com"}]}, action: forward}
  - {name: support, match: {reply_to: "*@support.example.com"}, action: skip}
  - {name: prio, match: {header: {X-Priority: ["1", "1 (Highest)"]}}, action: forward}
  - {name: weird, match: {header: {'X-Weird"Name(1)': {contains: 'yes'}}}, action: forward}
  - name: auto
    match: {auto_submitted: auto-generated, subject: {contains: down}}
    action: forward
  - name: notlist
    match: {not: {header: {list-id: "*"}}, subject: {regex: '^\\[ci\\]'}}
    action: forward
  - {name: big, match: {size: "> 2KB"}, action: forward}
"""
RULE_MAILS = [
    {"sender": "Bank <alerts@bank.com.ua>"},
    {"to": "Ops <OPS@example.com>"},
    {"cc": "a@example.org, ops@example.com"},
    {"reply_to": "help@support.example.com", "sender": "Bank <x@bank.com.ua>"},
    {"headers": [("X-Priority", "1 (Highest)")]},
    {"headers": [('X-Weird"Name(1)', "oh yes")]},
    {"headers": [("Auto-Submitted", "auto-generated")], "subject": "db1 is down"},
    {"subject": "[ci] failed"},
    {"subject": "[ci] failed", "headers": [("List-Id", "<ci.example.com>")]},
    {"subject": "plain", "body": "x" * 4000},
    {"subject": "plain"},
]


@pytest.mark.parametrize("fields", RULE_MAILS)
def test_rules_decide_the_same_on_the_fields_they_read(fields: dict) -> None:
    ruleset = compiled(RULES)
    assert ruleset.reads.header_fields == {
        "from",
        "to",
        "cc",
        "reply-to",
        "x-priority",
        'x-weird"name(1)',
        "auto-submitted",
        "subject",
        "list-id",
    }
    assert not ruleset.reads.structure and not ruleset.reads.body
    assert_same_decision(ruleset, make_mail(**fields))


def test_reads_knows_structure_and_body() -> None:
    assert compiled("rules: [{name: a, match: {has_attachment: true}, action: forward}]").reads == (
        Reads(frozenset(f.lower() for g in GUARD_NAMES for f in GUARD_FIELDS[g]), structure=True)
    )
    body = compiled("rules: [{name: b, match: {not: {body: {contains: x}}}, action: forward}]")
    assert body.reads.body and body.needs_body
    off = compiled(
        "guards: {gateway_replies: false, own_mail: false, auto_replies: false, bounces: false}\n"
        "rules: [{name: t, match: {time: '08:00-20:00', folder: INBOX}, action: forward}]"
    )
    assert off.reads == Reads()


def test_every_guard_reads_only_the_fields_it_declares() -> None:
    """Deciding on a mail that has every field a guard might look at, with one guard on."""
    headers = [
        ("Auto-Submitted", "auto-generated"),
        ("X-Autoreply", "no"),
        ("X-Autorespond", "no"),
        ("Precedence", "bulk"),
        ("X-Report", "multipart/report; report-type=delivery-status"),
    ]
    mails = [make_mail(**fields) for _, fields in STOPPED] + [
        make_mail(sender="mailer-daemon@x.org", subject="Undelivered", headers=headers),
        make_mail(sender="forwarder@example.com", to="380501234567@mail.alphasms.com.ua"),
        dsn(),
    ]
    for guard in GUARD_NAMES:
        ruleset = rules_with({guard}, context=CONTEXT)
        for mail in mails:
            assert_same_decision(ruleset, mail)
