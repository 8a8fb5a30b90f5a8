"""Rule tests written in the config: reading them, checking them, running them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from forwarder.rules.ruleset import RuleSet
from forwarder.rules.ruletests import DEFAULT_TEST_TIME, run_rule_tests
from tests.support.rules import KYIV, load

FIXTURES = Path(__file__).resolve().parent / "fixtures"

RULES = """
timezone: Europe/Kyiv
rules:
  - name: bank
    match: {from: '*@bank.com.ua'}
    action: forward
    quiet: {time: '22:00-07:00', then: hold}
  - name: urgent
    match: {subject: {contains: urgent}}
    action: forward
  - name: newsletters
    match: {header: {List-Id: '*'}}
    action: skip
  - name: big
    match: {has_attachment: true, size: '> 1KB'}
    action: forward
default: skip
"""


def with_tests(tests: str) -> tuple[RuleSet, list[str]]:
    ruleset, problems = load(RULES + "tests:\n" + tests)
    return ruleset, [str(p) for p in problems]


def outcomes(tests: str) -> list[tuple[str, bool]]:
    ruleset, problems = with_tests(tests)
    assert not problems, problems
    return [(r.test.name, r.passed) for r in run_rule_tests(ruleset)]


def test_the_example_from_the_docs_passes() -> None:
    assert outcomes(
        """
  - name: bank alerts are forwarded
    mail: {from: "Bank <alerts@bank.com.ua>", subject: "Card payment", body: "...",
           headers: {X-Priority: "1"}, folder: INBOX, time: "2026-01-05 23:30"}
    expect: bank
"""
    ) == [("bank alerts are forwarded", True)]


@pytest.mark.parametrize(
    ("mail", "expect", "passed"),
    [
        ('{from: "alerts@bank.com.ua"}', "bank", True),
        ('{from: "alerts@bank.com.ua"}', "urgent", False),
        ('{subject: "URGENT: disk"}', "forward", True),
        ('{subject: "URGENT: disk"}', "skip", False),
        ('{subject: "hello"}', "skip", True),
        ('{subject: "hello"}', "default", True),
        ('{subject: "hello", headers: {List-Id: "<news.example.com>"}}', "default", False),
        ('{subject: "hello", headers: {List-Id: "<news.example.com>"}}', "newsletters", True),
        ('{subject: "Automatic reply: hi"}', "guard:auto_replies", True),
        ('{from: "noreply@alphasms.com.ua"}', "guard:gateway_replies", True),
        ('{from: "noreply@alphasms.com.ua"}', "skip", True),
        ('{from: "a@bank.com.ua", time: "2026-01-05 23:30"}', "{rule: bank, held: true}", True),
        ('{from: "a@bank.com.ua", time: "2026-01-05 12:00"}', "{rule: bank, held: true}", False),
        ('{from: "a@bank.com.ua"}', "{rule: bank, action: forward, held: false}", True),
        ('{from: "a@bank.com.ua"}', "{action: skip}", False),
        ('{subject: "hi"}', "{rule: default, action: skip}", True),
        ("{has_attachment: true, body: 'x', size: 2KB}", "big", True),
        ("{has_attachment: false, size: 2KB}", "big", False),
    ],
)
def test_expectations(mail: str, expect: str, passed: bool) -> None:
    assert outcomes(f"  - {{name: t, mail: {mail}, expect: {expect}}}\n") == [("t", passed)]


def test_a_failure_says_what_was_expected_and_what_happened() -> None:
    ruleset, _ = with_tests(
        """
  - name: hello is urgent
    mail: {subject: hello}
    expect: urgent
"""
    )
    [result] = run_rule_tests(ruleset)
    assert str(result) == (
        "FAIL rules.yaml:20: hello is urgent: expected rule 'urgent', "
        "got skip by the default (no rule matched; default: skip)"
    )
    assert result.details()[-2:] == (
        "rule 'big': has_attachment: true did not match (the mail has no attachment)",
        "default: skip (no rule matched)",
    )


def test_a_pass_is_one_short_line() -> None:
    ruleset, _ = with_tests("  - {name: fine, mail: {subject: urgent}, expect: urgent}\n")
    assert [str(r) for r in run_rule_tests(ruleset)] == ["PASS fine"]


def test_time_is_wall_clock_in_the_rules_timezone() -> None:
    ruleset, _ = with_tests(
        """
  - {name: kyiv, mail: {subject: x, time: "2026-01-05 23:30"}, expect: skip}
  - {name: offset, mail: {subject: x, time: "2026-01-05T21:30:00+00:00"}, expect: skip}
  - {name: no time, mail: {subject: x}, expect: skip}
  - {name: yaml timestamp, mail: {subject: x, time: 2026-01-05 23:30:00}, expect: skip}
  - {name: a date, mail: {subject: x, time: 2026-01-06}, expect: skip}
"""
    )
    moments = [test.now for test in ruleset.tests]
    late = datetime(2026, 1, 5, 23, 30, tzinfo=KYIV)
    assert moments[:2] == [late, late]
    assert moments[2] == DEFAULT_TEST_TIME.replace(tzinfo=KYIV)  # reproducible: a Monday noon
    assert moments[3] == late
    assert moments[4] == datetime(2026, 1, 6, tzinfo=KYIV)


def test_the_mail_is_built_like_real_mail() -> None:
    ruleset, problems = with_tests(
        """
  - name: every field
    mail:
      from: ["Банк <alerts@bank.com.ua>", boss@example.com]
      to: me@example.com
      cc: [a@example.com, b@example.com]
      reply_to: support@example.com
      subject: "Терміново: картка"
      body: "Оплата 100 грн"
      headers: {X-Priority: "1", Received: [hop1, hop2]}
      folder: Alerts
      has_attachment: true
    expect: bank
"""
    )
    assert not problems, problems
    mail = ruleset.tests[0].mail
    assert mail.addresses("From") == [("Банк", "alerts@bank.com.ua"), ("", "boss@example.com")]
    assert [a for _, a in mail.addresses("Cc")] == ["a@example.com", "b@example.com"]
    assert mail.addresses("Reply-To") == [("", "support@example.com")]
    assert mail.subject == "Терміново: картка"
    assert mail.headers("Received") == ["hop1", "hop2"]
    assert mail.header("X-Priority") == "1"
    assert "Оплата 100 грн" in mail.body
    assert mail.has_attachment
    assert mail.folder == "Alerts"
    assert mail.message_id == "<rule-test-1@ruletest.invalid>"


def test_a_real_mail_file(tmp_path: Path) -> None:
    eml = FIXTURES / "bounces" / "sendmail-delayed-warning.eml"
    (tmp_path / "bounce.eml").write_bytes(eml.read_bytes())
    config = tmp_path / "rules.yaml"
    ruleset, problems = load(
        RULES + "tests:\n  - {name: bounce, mail: {file: bounce.eml}, expect: guard:bounces}\n",
        file=str(config),
    )
    assert not problems, problems
    assert [r.passed for r in run_rule_tests(ruleset)] == [True]


def test_saved_mails_relative_to_the_rules_file() -> None:
    rules = FIXTURES / "ruletests" / "rules.yaml"
    ruleset, problems = load(rules.read_text(), file=str(rules))
    assert not problems, problems
    assert [(r.test.name, r.passed) for r in run_rule_tests(ruleset)] == [
        ("a card payment at night is held for the morning", True),
        ("the same payment at noon goes at once", True),
        ("a newsletter is skipped", True),
        ("an invoice with its PDF is forwarded", True),
        ("a bounce never becomes an SMS", True),
        ("an auto-replied bounce is stopped before the bounce guard looks", True),
    ]
    assert ruleset.tests[0].mail.message_id == "<tx-20260105-233012-4417@notify.bank.com.ua>"


def test_deciding_that_raises_fails_only_that_test(monkeypatch: pytest.MonkeyPatch) -> None:
    ruleset, _ = with_tests(
        """
  - {name: one, mail: {subject: urgent}, expect: urgent}
  - {name: two, mail: {subject: urgent}, expect: urgent}
"""
    )
    real = RuleSet.decide
    calls = iter([RuntimeError("boom"), None])

    def flaky(self: RuleSet, *args: object, **kwargs: object) -> object:
        error = next(calls)
        if error is not None:
            raise error
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RuleSet, "decide", flaky)
    one, two = run_rule_tests(ruleset)
    assert one.failure == "deciding raised RuntimeError: boom"
    assert one.details() == ()
    assert two.passed


def test_run_rule_tests_takes_other_tests() -> None:
    source, _ = with_tests("  - {name: other, mail: {subject: urgent}, expect: urgent}\n")
    ruleset, _ = load(RULES)
    assert ruleset.tests == ()
    assert [r.passed for r in run_rule_tests(ruleset, source.tests)] == [True]


# -- validation: each mistake at its line, with a hint ------------------------------------------
# RULES has 17 lines and "tests:" is line 18, so the first test item starts on line 19.
MISTAKES = [
    (
        "  - {name: t, mail: {subject: x}, expect: bnak}\n",
        19,
        "tests[0].expect: there is no rule 'bnak' (did you mean 'bank'?)",
    ),
    (
        "  - {name: t, mail: {subject: x}, expect: 'guard:bounce'}\n",
        19,
        "tests[0].expect: there is no rule 'guard:bounce' (did you mean 'guard:bounces'?)",
    ),
    (
        "  - {name: t, mail: {subject: x}, expect: {rule: urgnt}}\n",
        19,
        "tests[0].expect.rule: there is no rule 'urgnt' (did you mean 'urgent'?)",
    ),
    (
        "  - {name: t, mail: {subject: x}, expect: {action: maybe}}\n",
        19,
        "tests[0].expect.action must be one of forward, skip, not 'maybe'",
    ),
    (
        "  - {name: t, mail: {subject: x}, expect: {rul: bank}}\n",
        19,
        "unknown key 'tests[0].expect.rul' (did you mean 'rule'?)",
    ),
    (
        "  - {name: t, mail: {subject: x}, expect: {}}\n",
        19,
        "tests[0].expect names nothing to check (rule, action or held)",
    ),
    ("  - {name: t, mail: {subject: x}}\n", 19, "tests[0].expect is required"),
    ("  - {name: t, expect: bank}\n", 19, "tests[0].mail is required"),
    ("  - {mail: {subject: x}, expect: bank}\n", 19, "tests[0].name is required"),
    (
        "  - {name: t, mail: {subjct: x}, expect: bank}\n",
        19,
        "unknown key 'tests[0].mail.subjct' (did you mean 'subject'?)",
    ),
    (
        "  - name: t\n    mail:\n      time: tomorrow\n    expect: bank\n",
        21,
        "tests[0].mail.time must be a date and time like '2026-01-05 23:30'",
    ),
    (
        "  - {name: t, mail: {size: huge}, expect: bank}\n",
        19,
        "tests[0].mail.size must be a size like 4096",
    ),
    (
        "  - {name: t, mail: {file: missing.eml}, expect: bank}\n",
        19,
        "tests[0].mail.file: cannot read missing.eml: No such file or directory",
    ),
    (
        f"  - {{name: t, mail: {{file: '{FIXTURES}/ruletests/newsletter.eml', subject: x}}, "
        "expect: bank}\n",
        19,
        "tests[0].mail.subject: give file: or the message's fields, not both",
    ),
    (
        "  - {name: t, mail: {subject: x}, expect: bank}\n"
        "  - {name: t, mail: {subject: y}, expect: bank}\n",
        20,
        "tests[1].name: test name 't' is used twice, at line 19 and line 20",
    ),
    (
        '  - {name: t, mail: {headers: {X-A: "a\\nb"}}, expect: bank}\n',
        19,
        "tests[0].mail: cannot build this mail",
    ),
    ("  bank: {}\n", 18, "tests must be a list of tests"),
]


@pytest.mark.parametrize(("tests", "line", "fragment"), MISTAKES)
def test_each_mistake_in_tests_is_reported(tests: str, line: int, fragment: str) -> None:
    _, problems = with_tests(tests)
    found = [p for p in problems if fragment in p]
    assert found, f"no problem says {fragment!r}; got {problems}"
    assert found[0].startswith(f"rules.yaml:{line}: "), found
    assert len(problems) == 1, problems  # and nothing else: one mistake, one message


def test_the_line_numbers_above_hold() -> None:
    assert RULES.count("\n") == 17  # MISTAKES count on "tests:" being line 18
