"""Fetch what the rules read, against a real Dovecot: HEADER.FIELDS summaries decide as whole ones.

A large fetch (a backlog, a burst) asks each mail only for its size and the header fields
the rule set and the guards read (``RuleSet.reads``); the mail that may be forwarded is
completed afterwards (``Mailbox.fetch_text``). Here every rule kind, arbitrary ``header:``
names (quoted on the wire when they must be), 8-bit headers and obsolete syntax are decided
on such summaries and on the whole mail, and the completed mail is compared with the one
the whole fetch gives.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from forwarder.imap import connection
from forwarder.imap.checkpoints import Batch, poll_folder
from forwarder.imap.connection import Mailbox
from forwarder.mail import Mail
from forwarder.store import Store
from tests.support.configs import imap_config
from tests.support.rules import compiled
from tests.support.servers.mails import make_mail

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

RULES = """
rules:
  - {name: foo, match: {header: {X-Foo: {contains: bar}}}, action: forward}
  - {name: foo-any, match: {header: {x-foo-list: ["one", "two"]}}, action: forward}
  - {name: weird, match: {header: {'X-Weird"Name(1)': {contains: 'yes'}}}, action: forward}
  - {name: bank, match: {from: "*@bank.com.ua"}, action: forward}
  - {name: ops, match: {to: "ops@example.com"}, action: forward}
  - {name: cc, match: {cc: "boss@example.com", subject: {contains: review}}, action: forward}
  - {name: urgent, match: {subject: {contains: urgent}}, action: forward}
  - {name: prio, match: {header: {X-Priority: "1*"}}, action: forward}
  - name: nolist
    match: {not: {header: {List-Id: "*"}}, subject: {contains: digest}}
    action: skip
  - {name: big, match: {size: "> 20KB"}, action: forward}
default: skip
"""


def mails() -> list[tuple[bytes, str | None]]:
    """(raw mail, the rule that must decide it; None for the default or a guard)."""
    cases: list[tuple[bytes, str | None]] = [
        (make_mail("hello", headers={"X-Foo": "some bar here"}), "foo"),
        (make_mail("hello", headers={"x-foo": "BAR " + "long " * 30}), "foo"),  # folded
        (make_mail("hello", headers={"X-Foo": "nope"}), None),
        (make_mail("hello", headers={"X-Foo-List": "two"}), "foo-any"),
        (make_mail("hello", headers={"X-Foo": "=?utf-8?q?b=C3=A4r_bar?="}), "foo"),
        (make_mail("hello", from_="Bank <alerts@bank.com.ua>"), "bank"),
        (make_mail("hello", to="Ops <OPS@example.com>"), "ops"),
        (make_mail("please review", headers={"Cc": "a@x.org, boss@example.com"}), "cc"),
        (make_mail("=?utf-8?b?0YLQtdGA0LzRltC90L7QstC+IHVyZ2VudA==?="), "urgent"),
        (make_mail("digest", headers={"List-Id": "<l.example.com>"}), None),
        (make_mail("digest"), "nolist"),
        (make_mail("hello", headers={"X-Priority": "1 (Highest)"}), "prio"),
        (make_mail("large", "x" * 30_000), "big"),
        (make_mail("Automatic reply: urgent"), None),  # the auto_replies guard
        (make_mail("urgent", from_="AlphaSMS <noreply@alphasms.com.ua>"), None),  # gateway
        (make_mail("nothing matches"), None),
        # RFC 5322 §4.5.3 obsolete syntax: Dovecot's HEADER.FIELDS finds "Subject :" too.
        (
            b"From: a@example.org\r\nSubject : urgent, spaced\r\nMessage-ID: <s1@x>\r\n\r\nhi\r\n",
            "urgent",
        ),
        (b'From: a@example.org\r\nX-Weird"Name(1): oh yes\r\nSubject: q\r\n\r\nhi\r\n', "weird"),
    ]
    message = EmailMessage()
    message["From"] = "Alice <alice@example.org>"
    message["Subject"] = "report"
    message.set_content("see the file")
    message.add_attachment(
        b"%PDF-1.4" * 10, maintype="application", subtype="pdf", filename="r.pdf"
    )
    cases.append((message.as_bytes(), None))
    return cases


@pytest.fixture
def filled(imap_user):
    imap_user.server.create_folder(imap_user.user, "INBOX", exist_ok=True)
    cases = mails()
    uids = [imap_user.server.append(imap_user.user, "INBOX", raw) for raw, _ in cases]
    return imap_user, uids, [rule for _, rule in cases]


def test_header_rules_decide_on_the_fields_dovecot_returns(filled) -> None:
    account, uids, expected = filled
    ruleset = compiled(RULES)
    whole_raw = account.server.fetch_raw(account.user, "INBOX", uids)
    with Mailbox(imap_config(account)) as mailbox:
        state = mailbox.select("INBOX")
        summaries = mailbox.fetch_summaries(uids, "INBOX", state.uidvalidity, ruleset.reads)
    assert len(uids) > connection.WHOLE_UP_TO
    assert [s.mail.uid for s in summaries] == uids
    assert not any(s.complete for s in summaries)
    for summary, rule in zip(summaries, expected, strict=True):
        decided = ruleset.decide(summary.mail, NOW)
        assert decided.rule == rule or (rule is None and decided.action == "skip"), decided
        whole = ruleset.decide(Mail(whole_raw[summary.mail.uid], size=summary.mail.size), NOW)
        assert (decided.action, decided.rule, decided.reason) == (
            whole.action,
            whole.rule,
            whole.reason,
        )
        assert b"Received" not in summary.mail.raw  # nothing the rules do not read


def test_completed_mail_is_the_mail_a_whole_fetch_gives(filled) -> None:
    account, uids, _ = filled
    ruleset = compiled(RULES)
    with Mailbox(imap_config(account)) as mailbox:
        state = mailbox.select("INBOX")
        partial = mailbox.fetch_summaries(uids, "INBOX", state.uidvalidity, ruleset.reads)
        partial_bytes = mailbox.fetched_bytes
        completed = mailbox.fetch_text(partial)
        mailbox.fetched_bytes = 0
        whole = mailbox.fetch_summaries(uids, "INBOX", state.uidvalidity)
        whole_bytes = mailbox.fetched_bytes
        expected = mailbox.fetch_text(whole)
    assert all(s.complete for s in whole)
    assert partial_bytes < whole_bytes  # these test mails carry no trace headers to save
    for got, want in zip(completed, expected, strict=True):
        assert got.raw == want.raw
        assert (got.uid, got.size, got.flags, got.internal_date, got.attachment_hint) == (
            want.uid,
            want.size,
            want.flags,
            want.internal_date,
            want.attachment_hint,
        )
        assert (got.subject, got.sender, got.message_id, got.body) == (
            want.subject,
            want.sender,
            want.message_id,
            want.body,
        )


def test_a_few_uids_are_fetched_whole(filled) -> None:
    account, uids, _ = filled
    with Mailbox(imap_config(account)) as mailbox:
        state = mailbox.select("INBOX")
        few = mailbox.fetch_summaries(uids[:3], "INBOX", state.uidvalidity, compiled(RULES).reads)
    assert all(s.complete for s in few)


def test_an_8bit_header_is_fetched_whole_and_decoded_as_before(imap_user) -> None:
    """Raw windows-1251 in Subject: its decoding takes the charset the text part declares."""
    server, user = imap_user.server, imap_user.user
    server.create_folder(user, "INBOX", exist_ok=True)
    eight_bit = (
        b"From: a@example.org\r\nSubject: \xd2\xe5\xf0\xec\xb3\xed\xee\xe2\xee\r\n"  # Терміново
        b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=windows-1251\r\n\r\n"
        b"\xd2\xe5\xf1\xf2\r\n--b--\r\n"
    )
    uids = [server.append(user, "INBOX", make_mail(f"filler {n}")) for n in range(11)]
    uids.append(server.append(user, "INBOX", eight_bit))
    ruleset = compiled(
        "rules: [{name: t, match: {subject: {contains: терміново}}, action: forward}]"
    )
    with Mailbox(imap_config(imap_user)) as mailbox:
        state = mailbox.select("INBOX")
        summaries = mailbox.fetch_summaries(uids, "INBOX", state.uidvalidity, ruleset.reads)
    assert [s.complete for s in summaries] == [False] * 11 + [True]
    assert summaries[-1].mail.subject == "Терміново"
    assert ruleset.decide(summaries[-1].mail, NOW).rule == "t"


def test_has_attachment_rules_get_the_structure_up_front(filled) -> None:
    account, uids, _ = filled
    ruleset = compiled("rules: [{name: a, match: {has_attachment: true}, action: forward}]")
    assert ruleset.reads.structure
    with Mailbox(imap_config(account)) as mailbox:
        state = mailbox.select("INBOX")
        summaries = mailbox.fetch_summaries(uids, "INBOX", state.uidvalidity, ruleset.reads)
    decided = [ruleset.decide(s.mail, NOW).rule == "a" for s in summaries]
    assert decided == [False] * (len(uids) - 1) + [True]  # only the PDF mail, the last


def test_a_batch_hands_over_partial_mail_and_completes_what_is_wanted(filled, tmp_path) -> None:
    account, uids, _ = filled
    ruleset = compiled(RULES)
    store = Store(tmp_path / "state.db")
    originals = account.server.fetch_raw(account.user, "INBOX", uids)
    seen: list[list[Mail]] = []

    def handle(batch: Batch) -> None:
        wanted = [m for m in batch.mails if ruleset.decide(m, NOW).action == "forward"]
        seen.append(batch.with_text(wanted))

    with Mailbox(imap_config(account)) as mailbox:
        state = mailbox.select("INBOX")
        store.baseline("INBOX", state.uidvalidity, 0)
        poll_folder(mailbox, store, "INBOX", handle, reads=ruleset.reads)
    (mails,) = seen
    forwarded = {m.uid for m in mails if ruleset.decide(m, NOW).action == "forward"}
    assert forwarded
    for mail in mails:
        assert (mail.internal_date is not None) == (mail.uid in forwarded)
        if mail.uid in forwarded:  # the whole header, as the server has it
            assert mail.raw.startswith(originals[mail.uid].split(b"\r\n\r\n")[0] + b"\r\n")
    checkpoint = store.checkpoint("INBOX")
    assert checkpoint is not None and checkpoint.last_uid == 0  # handle() committed nothing
    store.close()
