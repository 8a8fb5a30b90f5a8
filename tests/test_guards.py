"""Built-in guards: each on and off, and what they must never block."""

from __future__ import annotations

from pathlib import Path

import pytest

from forwarder.mail import Mail
from forwarder.rules.guards import GUARD_NAMES, GuardContext
from forwarder.rules.ruleset import RuleSet
from tests.support.rules import MONDAY_NOON, compiled, make_mail
from tests.support.shared import shared_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OWN_FROM = "forwarder@example.com"
CONTEXT = GuardContext(own_domain="fwd.example.invalid", own_from=OWN_FROM)


def rules_with(enabled: set[str] | None = None, context: GuardContext = CONTEXT) -> RuleSet:
    """A catch-all forward rule behind the guards; ``enabled`` None keeps the defaults."""
    guards = ""
    if enabled is not None:
        flags = ", ".join(f"{name}: {str(name in enabled).lower()}" for name in GUARD_NAMES)
        guards = f"guards: {{{flags}}}\n"
    return compiled(guards + "rules: [{name: all, action: forward}]\n", context=context)


def stopped_by(mail: Mail, enabled: set[str] | None = None, **kwargs: GuardContext) -> str | None:
    """The guard that stopped the mail, or None when the catch-all rule forwarded it."""
    decision = rules_with(enabled, **kwargs).decide(mail, MONDAY_NOON)
    if decision.rule == "all":
        assert decision.action == "forward"
        return None
    assert decision.action == "skip"
    assert decision.rule is not None and decision.rule.startswith("guard:")
    return decision.rule.removeprefix("guard:")


# Each case: a mail one guard must stop, and which guard that is.
STOPPED = [
    # gateway_replies: From one of the gateway's reply addresses
    ("gateway_replies", {"sender": "AlphaSMS <noreply@alphasms.com.ua>"}),
    ("gateway_replies", {"sender": "robot@mail.alphasms.com.ua", "subject": "AUTH"}),
    # own_mail: a Message-ID forwarder made, or its own request to the gateway
    ("own_mail", {"message_id": "<sms-1.2@fwd.example.invalid>"}),
    ("own_mail", {"message_id": "<SMS-1@FWD.Example.Invalid>"}),
    ("own_mail", {"sender": OWN_FROM, "to": "380501234567@mail.alphasms.com.ua"}),
    # auto_replies
    ("auto_replies", {"headers": [("Auto-Submitted", "auto-replied")]}),
    ("auto_replies", {"headers": [("Auto-Submitted", "Auto-Replied; owner-email=x@y.org")]}),
    ("auto_replies", {"headers": [("X-Autoreply", "yes")]}),
    ("auto_replies", {"headers": [("X-Autorespond", "Out of office")]}),
    ("auto_replies", {"headers": [("Precedence", "auto_reply")]}),
    ("auto_replies", {"subject": "Automatic reply: Server down"}),
    ("auto_replies", {"subject": "Out of Office: back on Monday"}),
    ("auto_replies", {"subject": "Auto-Reply: your message"}),
    ("auto_replies", {"subject": "Автоответ: Re: счёт"}),
    ("auto_replies", {"subject": "Автоматический ответ: отчёт"}),
    ("auto_replies", {"subject": "Автовідповідь: рахунок"}),
    ("auto_replies", {"subject": "Автоматична відповідь: звіт"}),
    ("auto_replies", {"subject": "Нет на месте до 10.01"}),
    ("auto_replies", {"subject": "Поза офісом"}),
    # bounces (From mailer-daemon/postmaster with a bounce subject)
    (
        "bounces",
        {
            "sender": "MAILER-DAEMON@mx.example.org",
            "subject": "Undelivered Mail Returned to Sender",
        },
    ),
    (
        "bounces",
        {"sender": "Postmaster <postmaster@example.org>", "subject": "Returned mail: User unknown"},
    ),
    (
        "bounces",
        {
            "sender": "mailer-daemon@googlemail.com",
            "subject": "Delivery Status Notification (Failure)",
        },
    ),
    ("bounces", {"sender": "MAILER-DAEMON@mail.ru", "subject": "Недоставленное сообщение"}),
]


@pytest.mark.parametrize(("guard", "fields"), STOPPED)
def test_each_guard_stops_its_mail(guard: str, fields: dict[str, object]) -> None:
    mail = make_mail(**fields)  # type: ignore[arg-type]
    assert stopped_by(mail) == guard
    assert stopped_by(mail, {guard}) == guard  # alone, it still does
    assert stopped_by(mail, set(GUARD_NAMES) - {guard}) is None  # turned off, the mail passes


# Mail the guards must let through: the alerts many users want most carry these.
PASSED = [
    {"headers": [("Auto-Submitted", "auto-generated")]},
    {"headers": [("Auto-Submitted", "auto-generated (warning-timeout)")]},
    {"headers": [("Precedence", "bulk")]},
    {"headers": [("Precedence", "list")]},
    {"headers": [("Auto-Submitted", "no")]},
    {"subject": "Re: out of office tomorrow?"},  # a person, answering
    {"subject": "URGENT: the office is out of power"},
    {"subject": "On vacation next week, the backups are yours"},
    {"subject": "ООО Ромашка: рахунок"},  # Cyrillic OOO is a company prefix
    {"sender": "alerts@alphasms.example.com"},  # not the gateway's domain
    {"sender": "Grafana <grafana@example.com>", "subject": "[FIRING:1] mail delivery failed"},
    {"sender": "mailer-daemon@example.org", "subject": "Your weekly report"},
    {"sender": OWN_FROM, "to": "boss@example.com"},  # forwarder's address, not to the gateway
    {"message_id": "<x@other.example.invalid>"},
    {"message_id": "<fwd.example.invalid@example.com>"},
]


@pytest.mark.parametrize("fields", PASSED)
def test_guards_let_alerts_through(fields: dict[str, object]) -> None:
    assert stopped_by(make_mail(**fields)) is None  # type: ignore[arg-type]


def test_a_gateway_reply_is_flagged_for_the_reply_tracker() -> None:
    decision = rules_with().decide(make_mail(sender="noreply@alphasms.com.ua"), MONDAY_NOON)
    assert decision.gateway_reply is True
    assert decision.rule == "guard:gateway_replies"
    assert decision.reason == (
        "guard 'gateway_replies': From 'noreply@alphasms.com.ua' is the gateway "
        "('*@alphasms.com.ua')"
    )
    other = rules_with().decide(make_mail(headers=[("X-Autoreply", "yes")]), MONDAY_NOON)
    assert other.gateway_reply is False


def test_gateway_reply_wins_over_the_other_guards() -> None:
    mail = make_mail(sender="noreply@alphasms.com.ua", headers=[("Auto-Submitted", "auto-replied")])
    assert stopped_by(mail) == "gateway_replies"


def test_reply_from_comes_from_the_context() -> None:
    context = GuardContext(reply_from=("sms-*@gw.example",))
    assert (
        stopped_by(make_mail(sender="sms-robot@gw.example"), context=context) == "gateway_replies"
    )
    assert stopped_by(make_mail(sender="noreply@alphasms.com.ua"), context=context) is None


def test_own_mail_needs_own_from_to_judge_requests() -> None:
    mail = make_mail(sender=OWN_FROM, to="380501234567@mail.alphasms.com.ua")
    assert stopped_by(mail, context=GuardContext(own_from="")) is None


def test_guards_are_all_on_by_default() -> None:
    assert rules_with().guards.enabled == GUARD_NAMES


def test_explain_shows_the_guards() -> None:
    ruleset = rules_with({"gateway_replies", "auto_replies"})
    decision = ruleset.decide(make_mail(subject="Automatic reply: hi"), MONDAY_NOON, explain=True)
    assert decision.trace == (
        "guard 'own_mail': turned off",
        "guard 'bounces': turned off",
        "guard 'gateway_replies': passed",
        "guard 'auto_replies': stopped the mail (out-of-office subject 'Automatic reply: hi')",
    )


# The project's own bounces (tests/fixtures/bounces): each way a DSN is recognised.
BOUNCES = {
    # multipart/report; report-type=delivery-status, Auto-Submitted: auto-replied
    "postfix-two-recipients.eml": "auto_replies",
    # plain text: From Mailer-Daemon with a bounce subject; auto-replied as well
    "exim-delivery-failed.eml": "auto_replies",
    # plain text, base64 UTF-8, an encoded Russian subject, no Auto-Submitted
    "exim-undelivered-ru.eml": "bounces",
    # auto-generated (warning-timeout) is not an auto-reply: the DSN itself must be caught
    "sendmail-delayed-warning.eml": "bounces",
    "sendmail-user-unknown.eml": "bounces",
    # From is not mailer-daemon or postmaster: only the multipart/report says it
    "exchange-undeliverable.eml": "bounces",
    # report-type="Delivery-Status", quoted and capitalised, two delivery-status parts
    "domino-multiple-status.eml": "bounces",
}


def fixture_mail(*parts: str) -> Mail:
    return Mail(raw=FIXTURES.joinpath(*parts).read_bytes())


def test_every_bounce_fixture_is_in_the_table() -> None:
    assert sorted(p.name for p in (FIXTURES / "bounces").glob("*.eml")) == sorted(BOUNCES)


@pytest.mark.parametrize(("name", "guard"), sorted(BOUNCES.items()))
def test_bounces_are_stopped(name: str, guard: str) -> None:
    mail = fixture_mail("bounces", name)
    assert stopped_by(mail) == guard
    assert stopped_by(mail, {"bounces"}) == "bounces"  # alone, the bounce guard stops each


# tests/fixtures/ordinary: like a bounce or an auto-reply in one respect, and still let through.
ORDINARY = [
    "grafana-mail-delivery-alert.eml",  # auto-generated, bulk, "MailDeliveryFailed"
    "person-forwards-a-bounce.eml",  # the bounce is an attachment; From is a person
    "postmaster-weekly-report.eml",  # From postmaster, not a bounce subject
    "list-reply-about-out-of-office.eml",  # Precedence: list, "Re: [ops] out of office"
    "person-on-vacation-next-week.eml",
    "bank-card-alert-ua.eml",
]


def test_every_ordinary_fixture_is_in_the_list() -> None:
    assert sorted(p.name for p in (FIXTURES / "ordinary").glob("*.eml")) == sorted(ORDINARY)


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_mail_passes_every_guard(name: str) -> None:
    assert stopped_by(fixture_mail("ordinary", name)) is None


# -- the shared corpus (../shared), when it is there --------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "multi_address_bounce1.eml",
        "multi_address_bounce2.eml",
        "multipart_report_multiple_status.eml",
        "report_422.eml",
        "report_530.eml",
    ],
)
def test_corpus_bounces_are_stopped(name: str) -> None:
    corpus = shared_dir() / "corpus" / "mikel-mail"
    mail = Mail(raw=(corpus / "multipart_report_emails" / name).read_bytes())
    assert stopped_by(mail) in {"auto_replies", "bounces"}  # postfix marks bounces auto-replied
    assert stopped_by(mail, {"bounces"}) == "bounces"


def test_no_ordinary_corpus_mail_is_stopped() -> None:
    corpus = shared_dir() / "corpus" / "mikel-mail"
    ordinary = [
        path
        for path in sorted(corpus.rglob("*.eml"))
        if path.parent.name != "multipart_report_emails"
        and path.name != "raw_email_with_mimepart_without_content_type.eml"  # a real DSN
    ]
    assert len(ordinary) > 80
    stopped = {path.name: stopped_by(Mail(raw=path.read_bytes())) for path in ordinary}
    assert {name: guard for name, guard in stopped.items() if guard} == {}
