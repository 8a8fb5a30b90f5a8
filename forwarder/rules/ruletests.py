"""Rule tests: example mails written in the config, each with the decision it must get.

Rules are code, and a change to one can quietly steal mail from another;
``tests:`` pins them the way unit tests pin code::

    tests:
      - name: bank alerts are forwarded
        mail: {from: "Bank <alerts@bank.com.ua>", subject: "Card payment", time: "2026-01-05 23:30"}
        expect: bank            # a rule name; or forward / skip / default / guard:<name>;
                                # or {rule: bank, action: forward, held: true}

The tests are read and checked (unknown rule names, bad fields) with the rest of
the config, so ``forwarder check`` reports them; ``run_rule_tests`` runs them
(``forwarder test``). Each mail is built with the stdlib ``EmailMessage``, so
it goes through the same parsing and header decoding as real mail; ``file:``
uses a real ``.eml`` instead.
"""

from __future__ import annotations

import difflib
import email.errors
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from forwarder.configfile.schema import Section, type_name
from forwarder.configfile.yamlsource import YList
from forwarder.mail import Mail
from forwarder.rules.guards import GUARD_NAMES
from forwarder.rules.patterns import wall_clock_to_aware
from forwarder.rules.ruleset import Decision, RuleSet

logger = logging.getLogger(__name__)

# A Monday noon: a test without time: must give the same answer on every run.
DEFAULT_TEST_TIME = datetime(2026, 1, 5, 12, 0)
TEST_MESSAGE_ID_DOMAIN = "ruletest.invalid"  # RFC 2606: .invalid never clashes with real mail
EXPECT_FORWARD = "forward"
EXPECT_SKIP = "skip"
EXPECT_DEFAULT = "default"  # no rule decided: the default did
GUARD_PREFIX = "guard:"
_ADDRESS_HEADERS = {"from": "From", "to": "To", "cc": "Cc", "reply_to": "Reply-To"}
# Fields that describe the message itself; file: brings its own, so it excludes them.
_MESSAGE_FIELDS = (*_ADDRESS_HEADERS, "subject", "body", "headers", "has_attachment")
_ATTACHMENT = (b"%PDF-1.4\n% rule test attachment\n", "application", "pdf", "attachment.pdf")


@dataclass(frozen=True)
class Expectation:
    """What a test wants of the decision; None fields are not checked."""

    rule: str | None = None  # a rule name or guard:<name>
    action: str | None = None  # forward or skip
    held: bool | None = None  # held to the end of quiet hours
    by_default: bool = False  # no rule decided

    def mismatch(self, decision: Decision) -> str | None:
        """Why ``decision`` is not what was expected, or None when it is."""
        if (
            (self.rule is not None and decision.rule != self.rule)
            or (self.by_default and decision.rule is not None)
            or (self.action is not None and decision.action != self.action)
            or (self.held is not None and (decision.hold_until is not None) != self.held)
        ):
            return f"expected {self}, got {describe_decision(decision)}"
        return None

    def __str__(self) -> str:
        parts = []
        if self.by_default:
            parts.append("the default")
        if self.rule is not None:
            parts.append(_who(self.rule))
        if self.action is not None:
            parts.append(f"action {self.action}")
        if self.held is not None:
            parts.append("held" if self.held else "not held")
        return ", ".join(parts)


def _who(rule: str | None) -> str:
    if rule is None:
        return "the default"
    if rule.startswith(GUARD_PREFIX):
        return f"guard {rule[len(GUARD_PREFIX) :]!r}"
    return f"rule {rule!r}"


def describe_decision(decision: Decision) -> str:
    held = f", held until {decision.hold_until:%Y-%m-%d %H:%M}" if decision.hold_until else ""
    return f"{decision.action} by {_who(decision.rule)}{held} ({decision.reason})"


@dataclass(frozen=True)
class RuleTest:
    name: str
    file: str
    line: int
    mail: Mail
    now: datetime  # aware
    expect: Expectation


@dataclass(frozen=True)
class RuleTestResult:
    test: RuleTest
    decision: Decision | None  # None when deciding raised
    failure: str | None  # None: passed

    @property
    def passed(self) -> bool:
        return self.failure is None

    def __str__(self) -> str:
        if self.passed:
            return f"PASS {self.test.name}"
        return f"FAIL {self.test.file}:{self.test.line}: {self.test.name}: {self.failure}"

    def details(self) -> tuple[str, ...]:
        """The explain trace of the decision, for printing under a failure."""
        return self.decision.trace if self.decision is not None else ()


def run_rule_tests(
    ruleset: RuleSet, tests: Iterable[RuleTest] | None = None
) -> list[RuleTestResult]:
    """Decide each test mail (with a trace) and compare; the config's own tests by default."""
    results = []
    for test in ruleset.tests if tests is None else tests:
        try:
            decision = ruleset.decide(test.mail, test.now, explain=True)
        except Exception as exc:  # one broken test must not hide the others
            logger.debug("rule test %r raised", test.name, exc_info=True)
            results.append(
                RuleTestResult(test, None, f"deciding raised {exc.__class__.__name__}: {exc}")
            )
            continue
        results.append(RuleTestResult(test, decision, test.expect.mismatch(decision)))
    return results


# -- reading tests: ---------------------------------------------------------------------------
def load_rule_tests(
    top: Section, rule_names: tuple[str, ...], zone: tzinfo | None
) -> tuple[RuleTest, ...]:
    """Read the top-level ``tests:``; problems go into ``top.problems``."""
    node = top.raw("tests")
    if node is None:
        return ()
    if not isinstance(node, list):
        top.error(
            "tests", f"tests must be a list of tests (each item '- name:'), not {type_name(node)}"
        )
        return ()
    base = Path(top.file).parent
    tests: list[RuleTest] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(node):
        line = node.line_of(index) if isinstance(node, YList) else top.line("tests")
        s = Section(item, f"tests[{index}]", top.problems, file=top.file, line=line)
        name = s.text("name", what="a short description of the case")
        if name is not None:
            if name in first_line:
                s.error(
                    "name",
                    f"{s.name('name')}: test name {name!r} is used twice, "
                    f"at line {first_line[name]} and line {s.line('name')}",
                )
            first_line.setdefault(name, s.line("name"))
        mail_section = s.section("mail")
        if not s.has("mail"):
            s.error(None, f"{s.name('mail')} is required (the example mail: from, subject, ...)")
        built = _mail(mail_section, index, zone, base)
        expect = _expectation(s, rule_names)
        s.finish()
        if name is not None and built is not None and expect is not None:
            mail, now = built
            tests.append(RuleTest(name, top.file, s.line(), mail, now, expect))
    return tuple(tests)


def _expectation(s: Section, rule_names: tuple[str, ...]) -> Expectation | None:
    node = s.raw("expect")
    if node is None:
        s.error(
            None if not s.has("expect") else "expect",
            f"{s.name('expect')} is required (a rule name, forward, skip, default, "
            "guard:<name>, or {rule: ..., action: ..., held: ...})",
        )
        return None
    if isinstance(node, Mapping):
        e = s.section("expect")
        rule = e.text("rule", None, what="a rule name")
        action = e.text("action", None, choices=(EXPECT_FORWARD, EXPECT_SKIP))
        held = e.boolean("held") if e.raw("held") is not None else None
        e.finish()
        if not node:
            s.error("expect", f"{s.name('expect')} names nothing to check (rule, action or held)")
        if rule is None and action is None and held is None:
            return None  # reported: empty, or every key had a problem
        if rule == EXPECT_DEFAULT:
            return Expectation(action=action, held=held, by_default=True)
        if rule is not None and not _known(rule, rule_names, e, "rule"):
            return None
        return Expectation(rule=rule, action=action, held=held)
    if isinstance(node, bool) or not isinstance(node, str):
        s.error(
            "expect", f"{s.name('expect')} must be a rule name or a mapping, not {type_name(node)}"
        )
        return None
    if node in (EXPECT_FORWARD, EXPECT_SKIP):
        return Expectation(action=node)
    if node == EXPECT_DEFAULT:
        return Expectation(by_default=True)
    return Expectation(rule=node) if _known(node, rule_names, s, "expect") else None


def _known(rule: str, rule_names: tuple[str, ...], s: Section, key: str) -> bool:
    """A rule test naming a rule that does not exist would fail forever: say so at load time."""
    if rule.startswith(GUARD_PREFIX):
        guard = rule[len(GUARD_PREFIX) :]
        if guard in GUARD_NAMES:
            return True
        known = [GUARD_PREFIX + name for name in GUARD_NAMES]
    elif rule in rule_names:
        return True
    else:
        known = [*rule_names, EXPECT_FORWARD, EXPECT_SKIP, EXPECT_DEFAULT]
    close = difflib.get_close_matches(rule, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known) or 'none'}"
    s.error(key, f"{s.name(key)}: there is no rule {rule!r} ({hint})")
    return False


def _mail(m: Section, index: int, zone: tzinfo | None, base: Path) -> tuple[Mail, datetime] | None:
    """The test's Mail and the moment it is decided at; None after reporting a problem."""
    now = _when(m, zone)
    folder = m.text("folder", "INBOX", what="a folder name")
    account = m.text("account", "default", what="an account name")
    size = m.size("size", None)
    file = m.text("file", None, what="a path to an .eml file")
    raw = _read_eml(m, base / file) if file is not None else _compose(m, index, now)
    if file is not None:
        for key in _MESSAGE_FIELDS:
            if m.has(key):
                m.raw(key)  # reported here, not again as an unknown key
                m.error(key, f"{m.name(key)}: give file: or the message's fields, not both")
    m.finish()
    if raw is None or now is None:
        return None
    return Mail(raw=raw, folder=folder, uid=index + 1, size=size, account=account), now


def _when(m: Section, zone: tzinfo | None) -> datetime | None:
    value: Any = m.raw("time", None)
    if value is None:
        return wall_clock_to_aware(DEFAULT_TEST_TIME, zone)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            value = None
    if not isinstance(value, datetime):
        m.error(
            "time",
            f"{m.name('time')} must be a date and time like '2026-01-05 23:30' "
            "(in the rules' timezone, or with an offset like '+02:00')",
        )
        return None
    return value if value.tzinfo is not None else wall_clock_to_aware(value, zone)


def _read_eml(m: Section, path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        m.error("file", f"{m.name('file')}: cannot read {path}: {exc.strerror or exc}")
        return None


def _compose(m: Section, index: int, now: datetime | None) -> bytes | None:
    """Build the test mail as a mail program would, so decoding is exercised for real."""
    message = EmailMessage()
    try:
        for key, header in _ADDRESS_HEADERS.items():
            addresses = m.str_list(key, [], what="addresses")
            if addresses:
                message[header] = ", ".join(addresses)
        subject = m.text("subject", None)
        if subject is not None:
            message["Subject"] = subject
        h = m.section("headers")
        for name in h.node:
            for value in h.str_list(name, what="header values"):
                message[str(name)] = value
        if "Date" not in message and now is not None:
            message["Date"] = format_datetime(now)
        if "Message-ID" not in message:
            message["Message-ID"] = f"<rule-test-{index + 1}@{TEST_MESSAGE_ID_DOMAIN}>"
        message.set_content(m.text("body", "", what="the body text"))
        if m.boolean("has_attachment", False):
            content, maintype, subtype, filename = _ATTACHMENT
            message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
            message.set_boundary(f"rule-test-{index + 1}")  # the same bytes on every run
        return message.as_bytes()
    except (ValueError, TypeError, email.errors.MessageError) as exc:
        m.error(None, f"{m.path}: cannot build this mail: {exc}")
        return None
