"""Rules: every condition, pattern kind and combinator, and the decisions they lead to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from forwarder.mail import Mail
from forwarder.rules.ruleset import Decision, RuleOptions, RuleSet
from tests.support.rules import GUARDS_OFF, KYIV, MONDAY_NOON, compiled, make_mail


def one_rule(match: str, *, timezone: str = "Europe/Kyiv") -> RuleSet:
    """A rule set whose only rule 'r' forwards what ``match`` (YAML flow text) matches."""
    return compiled(
        f"""
        timezone: {timezone}
        {GUARDS_OFF}
        rules:
          - name: r
            match: {match}
            action: forward
        default: skip
        """
    )


def matches(match: str, mail: Mail, now: datetime = MONDAY_NOON, **kwargs: Any) -> bool:
    decision = one_rule(match, **kwargs).decide(mail, now)
    return decision.rule == "r"


# -- conditions, one table --------------------------------------------------------------------
BANK = "Bank <alerts@bank.com.ua>"
CYRILLIC_SENDER = "=?utf-8?b?0J/RgNC40LLQsNGC?= <news@privat.example>"  # "Приват"

CONDITIONS = [
    # from: glob on address and display name, case-insensitive
    ("from glob on address", "{from: '*@bank.com.ua'}", {"sender": BANK}, True),
    ("from glob other address", "{from: '*@bank.com.ua'}", {}, False),
    ("from glob ignores case", "{from: '*@BANK.COM.UA'}", {"sender": BANK}, True),
    ("from glob on display name", "{from: 'Bank'}", {"sender": BANK}, True),
    ("from glob is whole value", "{from: 'bank.com.ua'}", {"sender": BANK}, False),
    ("from contains", "{from: {contains: '@bank.'}}", {"sender": BANK}, True),
    ("from equals", "{from: {equals: ALERTS@bank.com.ua}}", {"sender": BANK}, True),
    ("from equals is whole value", "{from: {equals: alerts@bank}}", {"sender": BANK}, False),
    ("from regex searches", "{from: {regex: 'ALERTS@'}}", {"sender": BANK}, True),
    ("from regex anchored", "{from: {regex: '^bank\\.com'}}", {"sender": BANK}, False),
    ("from list means any", "{from: ['*@x.org', '*@bank.com.ua']}", {"sender": BANK}, True),
    ("from list none", "{from: ['*@x.org', '*@y.org']}", {"sender": BANK}, False),
    ("from RFC 2047 name", "{from: {contains: приват}}", {"sender": CYRILLIC_SENDER}, True),
    ("from missing header", "{from: '*'}", {"sender": None}, False),
    ("from glob ? is one char", "{from: 'alerts@bank.com.u?'}", {"sender": BANK}, True),
    ("glob brackets are literal", "{subject: '[JIRA]*'}", {"subject": "[JIRA] blocker"}, True),
    ("glob brackets no class", "{subject: '[JIRA]*'}", {"subject": "J blocker"}, False),
    # to, cc, reply_to: any address of the header
    ("to any address", "{to: ops@example.com}", {"to": "Me <me@x.org>, ops@example.com"}, True),
    ("to none", "{to: ops@example.com}", {}, False),
    ("cc", "{cc: '*@bank.com.ua'}", {"cc": "x@y.org, Bank <b@bank.com.ua>"}, True),
    ("cc missing", "{cc: '*'}", {}, False),
    ("reply_to", "{reply_to: 'support@*'}", {"reply_to": "support@shop.example"}, True),
    # subject: glob is the whole value, contains is the common case
    ("subject contains", "{subject: {contains: urgent}}", {"subject": "URGENT: disk"}, True),
    ("subject glob whole", "{subject: urgent}", {"subject": "URGENT: disk"}, False),
    ("subject glob stars", "{subject: '*urgent*'}", {"subject": "An URGENT disk"}, True),
    ("subject casefold", "{subject: {contains: STRASSE}}", {"subject": "Große Straße"}, True),
    (
        "subject RFC 2047",
        "{subject: {contains: терміново}}",
        {"subject": "ТЕРМІНОВО: сервер"},
        True,
    ),
    ("subject regex ci", "{subject: {regex: 'disk (full|dead)'}}", {"subject": "Disk FULL"}, True),
    ("subject regex cs part", "{subject: {regex: '(?-i:Disk)'}}", {"subject": "disk full"}, False),
    ("subject equals", "{subject: {equals: 'hello'}}", {}, True),
    ("subject empty equals", "{subject: {equals: ''}}", {"subject": None}, True),
    # body
    ("body contains", "{body: {contains: invoice}}", {"body": "Your Invoice #42\n"}, True),
    ("body glob spans lines", "{body: '*first*second*'}", {"body": "first\nsecond\n"}, True),
    ("body no", "{body: {contains: invoice}}", {}, False),
    # header: any occurrence, absent never matches, names case-insensitive
    ("header", "{header: {X-Priority: '1'}}", {"headers": [("X-Priority", "1")]}, True),
    (
        "header glob whole",
        "{header: {X-Priority: '1'}}",
        {"headers": [("X-Priority", "1 (H)")]},
        False,
    ),
    (
        "header name case",
        "{header: {x-priority: '1*'}}",
        {"headers": [("X-Priority", "1 (H)")]},
        True,
    ),
    ("header absent", "{header: {X-Priority: '*'}}", {}, False),
    (
        "header any occurrence",
        "{header: {X-Tag: beta}}",
        {"headers": [("X-Tag", "alpha"), ("X-Tag", "beta")]},
        True,
    ),
    (
        "header mapping means all",
        "{header: {X-A: '1', X-B: '2'}}",
        {"headers": [("X-A", "1"), ("X-B", "3")]},
        False,
    ),
    (
        "header RFC 2047",
        "{header: {X-Note: {contains: день}}}",
        {"headers": [("X-Note", "Добрий день")]},
        True,
    ),
    # folder
    ("folder", "{folder: inbox}", {}, True),
    ("folder glob", "{folder: 'Alerts/*'}", {"folder": "Alerts/Prod"}, True),
    ("folder other", "{folder: 'Alerts/*'}", {}, False),
    # size
    ("size >", "{size: '> 1KB'}", {"size": 2048}, True),
    ("size > equal", "{size: '> 2KB'}", {"size": 2048}, False),
    ("size >=", "{size: '>= 2KB'}", {"size": 2048}, True),
    ("size <", "{size: '< 1MB'}", {"size": 2048}, True),
    ("size <=", "{size: '<=2047'}", {"size": 2048}, False),
    ("size from raw", "{size: '< 100KB'}", {}, True),
    # has_attachment
    ("attachment yes", "{has_attachment: true}", {"attachment": True}, True),
    ("attachment wanted, none", "{has_attachment: true}", {}, False),
    ("attachment no", "{has_attachment: false}", {}, True),
    # auto_submitted: the keyword, without parameters or comments
    (
        "auto_submitted",
        "{auto_submitted: auto-generated}",
        {"headers": [("Auto-Submitted", "auto-generated (warning-timeout)")]},
        True,
    ),
    ("auto_submitted absent", "{auto_submitted: '*'}", {}, False),
    # catch-all
    (
        "two keys: all",
        "{from: '*@bank.com.ua', subject: {contains: card}}",
        {"sender": BANK},
        False,
    ),
]


@pytest.mark.parametrize(
    ("match", "fields", "expected"),
    [pytest.param(m, f, e, id=name) for name, m, f, e in CONDITIONS],
)
def test_condition(match: str, fields: dict[str, Any], expected: bool) -> None:
    assert matches(match, make_mail(**fields)) is expected


TIMES = [
    # (match, local wall time in Kyiv, expected)
    ("{time: '08:00-22:00'}", "2026-01-05 12:00", True),
    ("{time: '08:00-22:00'}", "2026-01-05 08:00", True),  # start inclusive
    ("{time: '08:00-22:00'}", "2026-01-05 22:00", False),  # end exclusive
    ("{time: '08:00-22:00'}", "2026-01-05 21:59", True),
    ("{time: '22:00-07:00'}", "2026-01-05 23:30", True),  # wraps midnight
    ("{time: '22:00-07:00'}", "2026-01-06 06:59", True),
    ("{time: '22:00-07:00'}", "2026-01-06 07:00", False),
    ("{time: '22:00-07:00'}", "2026-01-05 12:00", False),
    ("{time: ['06:00-07:00', '12:00-13:00']}", "2026-01-05 12:30", True),
    ("{time: '00:00-24:00'}", "2026-01-05 23:59", True),
    ("{days: [mon]}", "2026-01-05 12:00", True),
    ("{days: [sat, sun]}", "2026-01-05 12:00", False),
    ("{days: [Saturday, sunday]}", "2026-01-10 12:00", True),
    ("{days: mon-fri}", "2026-01-09 12:00", True),
    ("{days: mon-fri}", "2026-01-10 12:00", False),
    ("{days: fri-mon}", "2026-01-11 12:00", True),  # a range may wrap the week
    ("{days: [mon], time: '22:00-07:00'}", "2026-01-06 01:00", False),  # Tuesday by the calendar
]


@pytest.mark.parametrize(("match", "wall", "expected"), TIMES)
def test_time_conditions(match: str, wall: str, expected: bool) -> None:
    now = datetime.fromisoformat(wall).replace(tzinfo=KYIV)
    assert matches(match, make_mail(), now) is expected


def test_time_is_judged_in_the_configured_timezone() -> None:
    now = datetime(2026, 1, 5, 21, 30, tzinfo=UTC)  # 23:30 in Kyiv (UTC+2 in winter)
    assert matches("{time: '22:00-07:00'}", make_mail(), now, timezone="Europe/Kyiv")
    assert not matches("{time: '22:00-07:00'}", make_mail(), now, timezone="UTC")


def test_time_follows_daylight_saving_time() -> None:
    summer = datetime(2026, 7, 6, 19, 30, tzinfo=UTC)  # 22:30 in Kyiv (UTC+3 in summer)
    assert matches("{time: '22:00-23:00'}", make_mail(), summer)


def test_timezone_defaults_to_the_system_zone() -> None:
    ruleset = compiled(
        "rules: [{name: r, match: {time: '00:00-24:00'}, action: forward}]\ndefault: skip"
    )
    assert ruleset.timezone is None
    assert ruleset.decide(make_mail(), datetime.now(UTC)).rule == "r"


# -- combinators -------------------------------------------------------------------------------
YES = "{subject: {contains: hello}}"
NO = "{subject: {contains: goodbye}}"

COMBINATORS = [
    (f"{{all: [{YES}, {YES}]}}", True),
    (f"{{all: [{YES}, {NO}]}}", False),
    (f"{{any: [{NO}, {YES}]}}", True),
    (f"{{any: [{NO}, {NO}]}}", False),
    (f"{{not: {YES}}}", False),
    (f"{{not: {NO}}}", True),
    (f"{{not: {{not: {YES}}}}}", True),
    (f"{{any: [{{all: [{YES}, {NO}]}}, {{not: {NO}}}]}}", True),
    (f"{{all: [{{any: [{NO}, {YES}]}}, {{not: {{any: [{NO}]}}}}]}}", True),
    ("{subject: {contains: hello}, not: {from: '*@example.com'}}", False),
]


@pytest.mark.parametrize(("match", "expected"), COMBINATORS)
def test_combinators(match: str, expected: bool) -> None:
    assert matches(match, make_mail(subject="Hello")) is expected


# -- decisions ---------------------------------------------------------------------------------
def test_first_matching_rule_decides() -> None:
    ruleset = compiled(
        """
        rules:
          - name: quiet-bank
            match: {from: '*@bank.com.ua', subject: {contains: ad}}
            action: skip
          - {name: bank, match: {from: '*@bank.com.ua'}, action: forward}
          - {name: urgent, match: {subject: {contains: urgent}}, action: forward}
        """
    )
    assert ruleset.names == ("quiet-bank", "bank", "urgent")
    ad = ruleset.decide(make_mail(sender=BANK, subject="New ad: URGENT"), MONDAY_NOON)
    assert (ad.action, ad.rule) == ("skip", "quiet-bank")
    card = ruleset.decide(make_mail(sender=BANK, subject="Card: urgent"), MONDAY_NOON)
    assert (card.action, card.rule) == ("forward", "bank")


@pytest.mark.parametrize(
    ("default", "action"), [("", "skip"), ("skip", "skip"), ("forward", "forward")]
)
def test_default_decides_the_rest(default: str, action: str) -> None:
    text = "rules: [{name: r, match: {subject: nothing}, action: forward}]\n"
    ruleset = compiled(text + (f"default: {default}\n" if default else ""))
    decision = ruleset.decide(make_mail(), MONDAY_NOON)
    assert decision == Decision(action, None, f"no rule matched; default: {action}")


def test_a_rule_without_match_catches_everything() -> None:
    ruleset = compiled("rules: [{name: everything, action: forward}]")
    decision = ruleset.decide(make_mail(), MONDAY_NOON)
    assert (decision.action, decision.rule) == ("forward", "everything")
    assert decision.reason == "rule 'everything': no match: it catches every mail"


def test_reason_names_the_rule_and_the_condition() -> None:
    ruleset = compiled(
        "rules: [{name: urgent, match: {subject: {contains: urgent}}, action: forward}]"
    )
    decision = ruleset.decide(make_mail(subject="URGENT"), MONDAY_NOON)
    assert decision.reason == "rule 'urgent': subject contains 'urgent'"
    assert decision.trace == ()


def test_rule_options_reach_the_decision() -> None:
    ruleset = compiled(
        """
        rules:
          - name: bank
            match: {from: '*@bank.com.ua'}
            action: forward
            template: "{from_name}: {subject}"
            max_length: 160
            sender: MyBank
            encoding: ucs2
            transliterate: uk
            max_segments: 2
            delay: 3m
            unless_read: true
          - {name: plain, action: forward}
        """
    )
    bank = ruleset.decide(make_mail(sender=BANK), MONDAY_NOON)
    assert bank.options == RuleOptions(
        template="{from_name}: {subject}",
        max_length=160,
        sender="MyBank",
        encoding="ucs2",
        transliterate="uk",
        max_segments=2,
        delay=180.0,
        unless_read=True,
    )
    assert ruleset.decide(make_mail(), MONDAY_NOON).options == RuleOptions()


# -- quiet hours -------------------------------------------------------------------------------
def quiet_rules(quiet: str, action: str = "forward") -> RuleSet:
    return compiled(
        f"""
        timezone: Europe/Kyiv
        rules:
          - name: bank
            match: {{from: '*@bank.com.ua'}}
            action: {action}
            quiet: {quiet}
        """
    )


def at(wall: str) -> datetime:
    return datetime.fromisoformat(wall).replace(tzinfo=KYIV)


def test_quiet_hold_holds_until_the_end_of_the_window() -> None:
    ruleset = quiet_rules("{time: '22:00-07:00', then: hold}")
    late = ruleset.decide(make_mail(sender=BANK), at("2026-01-05 23:30"))
    assert (late.action, late.rule) == ("forward", "bank")
    assert late.hold_until == at("2026-01-06 07:00")
    assert late.hold_until.utcoffset() == timedelta(hours=2)
    assert "quiet hours 22:00-07:00: held until 2026-01-06 07:00" in late.reason
    early = ruleset.decide(make_mail(sender=BANK), at("2026-01-06 03:00"))
    assert early.hold_until == at("2026-01-06 07:00")


def test_quiet_outside_the_window_forwards_at_once() -> None:
    decision = quiet_rules("{time: '22:00-07:00'}").decide(make_mail(sender=BANK), MONDAY_NOON)
    assert (decision.action, decision.hold_until) == ("forward", None)
    assert "quiet" not in decision.reason


def test_quiet_then_defaults_to_hold() -> None:
    decision = quiet_rules("{time: '22:00-07:00'}").decide(
        make_mail(sender=BANK), at("2026-01-05 23:00")
    )
    assert decision.hold_until == at("2026-01-06 07:00")


def test_quiet_drop_skips_and_says_why() -> None:
    ruleset = quiet_rules("{time: '22:00-07:00', then: drop}")
    decision = ruleset.decide(make_mail(sender=BANK), at("2026-01-05 23:30"))
    assert (decision.action, decision.rule, decision.hold_until) == ("skip", "bank", None)
    assert decision.reason.endswith("quiet hours 22:00-07:00: dropped")


def test_quiet_days_are_the_days_the_window_opens() -> None:
    ruleset = quiet_rules("{time: '22:00-07:00', days: [fri]}")
    friday_night = ruleset.decide(make_mail(sender=BANK), at("2026-01-10 03:00"))  # Saturday 03:00
    assert friday_night.hold_until == at("2026-01-10 07:00")
    saturday_night = ruleset.decide(make_mail(sender=BANK), at("2026-01-10 23:00"))
    assert saturday_night.hold_until is None
    thursday_night = ruleset.decide(make_mail(sender=BANK), at("2026-01-09 03:00"))  # Fri 03:00
    assert thursday_night.hold_until is None


def test_quiet_window_ending_at_midnight() -> None:
    decision = quiet_rules("{time: '20:00-24:00'}").decide(
        make_mail(sender=BANK), at("2026-01-05 21:00")
    )
    assert decision.hold_until == at("2026-01-06 00:00")


def test_quiet_hold_across_a_daylight_saving_change() -> None:
    # Kyiv moves to summer time on 2026-03-29 at 03:00: the hold ends at 07:00 local, UTC+3.
    decision = quiet_rules("{time: '22:00-07:00'}").decide(
        make_mail(sender=BANK), at("2026-03-28 23:00")
    )
    assert decision.hold_until == at("2026-03-29 07:00")
    assert decision.hold_until.astimezone(UTC) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)


def test_quiet_does_not_touch_a_skip_rule() -> None:
    decision = quiet_rules("{time: '22:00-07:00'}", action="skip").decide(
        make_mail(sender=BANK), at("2026-01-05 23:30")
    )
    assert (decision.action, decision.hold_until) == ("skip", None)


# -- explain -------------------------------------------------------------------------------------
def test_explain_traces_every_rule_tried() -> None:
    ruleset = compiled(
        """
        rules:
          - {name: bank, match: {from: '*@bank.com.ua'}, action: forward}
          - {name: urgent, match: {subject: {contains: urgent}}, action: forward}
          - {name: never, match: {subject: never}, action: forward}
        """
    )
    mail = make_mail(sender="alice@example.com", subject="Urgent!")
    decision = ruleset.decide(mail, MONDAY_NOON, explain=True)
    assert decision.trace[-2:] == (
        "rule 'bank': from '*@bank.com.ua' did not match 'alice@example.com'",
        "rule 'urgent': matched (subject contains 'urgent')",
    )
    assert decision.trace[0] == "guard 'gateway_replies': passed"
    plain = ruleset.decide(mail, MONDAY_NOON)
    assert plain == Decision(
        decision.action, decision.rule, decision.reason, decision.options, decision.hold_until
    )


def test_explain_shows_combinators_and_the_default() -> None:
    ruleset = compiled(
        """
        timezone: Europe/Kyiv
        rules:
          - name: night
            match:
              any: [{time: '22:00-07:00'}, {days: [sat, sun]}]
            action: forward
          - {name: big, match: {not: {size: '< 1MB'}}, action: forward}
        """
    )
    decision = ruleset.decide(make_mail(), MONDAY_NOON, explain=True)
    assert decision.trace[-3:] == (
        "rule 'night': none of any: matched "
        "(time 12:00 is outside 22:00-07:00; day mon is not in [sat, sun])",
        "rule 'big': not: excluded it (size " + str(make_mail().total_size) + " bytes < 1MB)",
        "default: skip (no rule matched)",
    )


def test_explain_shows_quiet_hours() -> None:
    ruleset = quiet_rules("{time: '22:00-07:00', then: drop}")
    decision = ruleset.decide(make_mail(sender=BANK), at("2026-01-05 23:30"), explain=True)
    assert decision.trace[-2:] == (
        "rule 'bank': matched (from matches '*@bank.com.ua')",
        "rule 'bank': quiet hours 22:00-07:00: dropped",
    )


# -- the address prefilter ----------------------------------------------------------------------
TRICKY_ADDRESSES = [
    ('"Smith, John" <john@bank.com.ua>', "*@bank.com.ua", True),
    ('"Smith, John" <john@bank.com.ua>', "smith, john", True),
    ('"John" Smith <j@x.org>', "john smith", True),  # the parser joins quoted and bare words
    ("john @ bank.com.ua", "john@bank.com.ua", True),  # spaces around @ are dropped
    ("a . b@bank.com.ua", "a.b@*", True),
    ("a(comment)@bank.com.ua", "a@bank.com.ua", True),  # comments move: no prefilter
    ('"a\\"b" <x@y.org>', 'a"b', True),  # quoted-pair: no prefilter
    ("Team: a@bank.com.ua, b@x.org;", "b@x.org", True),
    ("=?utf-8?q?Bank?= <=?utf-8?q?x?=@y.org>", "=?utf-8?q?x?=@y.org", True),
    ("=?utf-8?b?0J/RgNC40LLQsNGC?= <news@privat.example>", "приват", True),
    ("Alice <alice@example.com>", "*@bank.com.ua", False),
]


@pytest.mark.parametrize(("header", "pattern", "expected"), TRICKY_ADDRESSES)
def test_the_address_prefilter_never_hides_a_match(
    header: str, pattern: str, expected: bool
) -> None:
    raw = f"From: {header}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    assert matches(f"{{from: {pattern!r}}}", Mail(raw=raw)) is expected
